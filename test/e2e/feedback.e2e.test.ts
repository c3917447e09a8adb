import { generateKeyPairSync, randomUUID, sign as signData } from 'node:crypto';
import { SignJWT } from 'jose';
import { Webhook } from 'svix';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { testSpanProcessors } from '../helpers/canarySetup';

const spans = new InMemorySpanExporter();
testSpanProcessors.push(new SimpleSpanProcessor(spans));

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const JWT_SECRET = 'feedback-jwt-secret-for-tests-0123456789abcdef';
const RESEND_SECRET = `whsec_${Buffer.from('resend-signing-secret-CANARY-0001').toString('base64')}`;

/** An ECDSA P-256 key pair as SendGrid's signed Event Webhook uses: the public key as base64 DER. */
function sendgridKeys() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), privateKey };
}
type SgKeys = ReturnType<typeof sendgridKeys>;

function signSendgrid(keys: SgKeys, body: string, timestamp = Math.floor(Date.now() / 1000)) {
  const signature = signData('sha256', Buffer.from(`${timestamp}${body}`), keys.privateKey).toString('base64');
  return { 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': String(timestamp), 'content-type': 'application/json' };
}

describe('delivery feedback: provider webhooks, suppression on the hot path, one-click unsubscribe', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let postmark: FakeApi;
  let resend: FakeApi;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let su: Sql;
  let admin: string;
  const logs = captureLogs();
  const acmeKeys = sendgridKeys();
  const otherKeys = sendgridKeys();

  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const hook = (provider: string, tenant: string, body: string, headers: Record<string, string>) =>
    fetch(new URL(`/api/v1/webhooks/${provider}/${tenant}`, worker.url), { method: 'POST', headers, body });
  const ledger = async (tenant: string, eventId: string) =>
    (await su`SELECT status, message_id, delivery_status, bounce_type, delivery_raw_type, error_code, quota_day FROM email_deliveries WHERE tenant_id = ${tenant} AND event_id = ${eventId}`)[0];
  const suppressed = async (tenant: string, address: string) => (await su`SELECT reason, source FROM email_suppressions WHERE tenant_id = ${tenant} AND address = ${address}`)[0];
  const usage = async (tenant: string) => (await su`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = ${tenant}`)[0]!.n as number;
  const send = async (tenant: string, to: string, id = `evt-${randomUUID()}`) => {
    const res = await post(worker.url, binaryEvent({ tenant, id, data: taskData({ notify_email: to }) }));
    return { status: res.status, id, text: res.text, type: res.headers.get('ce-type') };
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    su = db.admin();
    mailbox = await startMailbox();
    postmark = await startFakeApi(PROVIDER_ROUTES.postmark);
    resend = await startFakeApi(PROVIDER_ROUTES.resend);
    const sql = db.worker(2);
    const base = { from_email: 'noreply@acme.example', enabled: true, daily_limit: 1000 };
    await putSettings(sql, { current: KEY }, 'acme', { ...base, provider: 'sendgrid', api_key: 'SG.CANARY-acme-0000000000', provider_settings: { base_url: mailbox.url } });
    await putSettings(sql, { current: KEY }, 'other', { ...base, provider: 'sendgrid', api_key: 'SG.CANARY-other-000000000', provider_settings: { base_url: mailbox.url } });
    await putSettings(sql, { current: KEY }, 'pm', { ...base, provider: 'postmark', api_key: 'CANARY-postmark-token-0000', provider_settings: { base_url: postmark.url } });
    await putSettings(sql, { current: KEY }, 'rs', { ...base, provider: 'resend', api_key: 're_CANARY_resend_key_00000', provider_settings: { base_url: resend.url } });
    worker = await startTestWorker(db, logs.logger, {
      ADMIN_JWT_SECRET: JWT_SECRET,
      PUBLIC_BASE_URL: 'https://email.platform.example',
      REPLY_EVENTS: 'true',
      EMAIL_TENANT_FROM_PATTERN: 'noreply@{tenant}.mail.platform.example',
    });
    admin = await new SignJWT({ role: 'platform_admin', sub: 'ops@test' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
    expect((await adminCall('PUT', 'acme/email-webhooks/sendgrid', { public_key: acmeKeys.publicKey })).status).toBe(201);
    expect((await adminCall('PUT', 'other/email-webhooks/sendgrid', { public_key: otherKeys.publicKey })).status).toBe(201);
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([mailbox.close(), postmark.close(), resend.close()]);
    await db.drop();
  });

  describe('SendGrid (ECDSA-signed Event Webhook)', () => {
    it('marks a bounced delivery and suppresses the address; the next event to it is answered 202, reaches no provider and spends no quota', async () => {
      const sent = await send('acme', 'Gone@Dead.example');
      expect(sent.status).toBe(202);
      const row = await ledger('acme', sent.id);
      expect(row?.status).toBe('sent');
      const body = JSON.stringify([
        { email: 'gone@dead.example', event: 'processed', sg_event_id: `p-${sent.id}`, sg_message_id: `${row!.message_id}.filterdrecv-1`, timestamp: 1 },
        { email: 'gone@dead.example', event: 'bounce', type: 'bounce', reason: '550 5.1.1 no such user', sg_event_id: `b-${sent.id}`, sg_message_id: `${row!.message_id}.filterdrecv-1`, timestamp: Math.floor(Date.now() / 1000) },
      ]);
      const res = await hook('sendgrid', 'acme', body, signSendgrid(acmeKeys, body));
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ applied: 1, ignored: 1, suppressed: 1 });
      expect(await ledger('acme', sent.id)).toMatchObject({ status: 'sent', delivery_status: 'bounced', bounce_type: 'hard', delivery_raw_type: 'bounce/bounce' });
      expect(await suppressed('acme', 'gone@dead.example')).toEqual({ reason: 'hard_bounce', source: 'webhook' });

      const emailsBefore = mailbox.emails.length;
      const usedBefore = await usage('acme');
      const again = await send('acme', 'GONE@dead.example');
      // With REPLY_EVENTS on, the 202 says so: codetether.email.skipped, reason recipient_suppressed (no address).
      expect([again.status, again.type]).toEqual([202, 'codetether.email.skipped']);
      expect(JSON.parse(again.text)).toMatchObject({ reason: 'recipient_suppressed', suppression_reason: 'hard_bounce', event_id: again.id });
      expect(again.text.toLowerCase()).not.toContain('gone@dead.example');
      expect(mailbox.emails.length).toBe(emailsBefore);
      expect(await usage('acme')).toBe(usedBefore);
      expect(await ledger('acme', again.id)).toMatchObject({ status: 'suppressed', error_code: 'recipient_suppressed', quota_day: null });
      // Another tenant's list is its own.
      expect((await send('other', 'gone@dead.example')).status).toBe(202);
      expect(mailbox.emails.length).toBe(emailsBefore + 1);
    });

    it.each([
      ['a tampered body', (body: string) => ({ body: body.replace('delivered', 'spamreport'), headers: signSendgrid(acmeKeys, body) })],
      ['a timestamp older than WEBHOOK_MAX_AGE_SECONDS', (body: string) => ({ body, headers: signSendgrid(acmeKeys, body, Math.floor(Date.now() / 1000) - 3600) })],
      ["another tenant's key", (body: string) => ({ body, headers: signSendgrid(otherKeys, body) })],
      ['no signature', (body: string) => ({ body, headers: { 'content-type': 'application/json' } })],
    ])('refuses %s with 401 and changes nothing', async (_name, make) => {
      const sent = await send('acme', `someone-${randomUUID().slice(0, 6)}@example.com`);
      const row = await ledger('acme', sent.id);
      const body = JSON.stringify([{ email: 'x@example.com', event: 'delivered', sg_event_id: `d-${sent.id}`, sg_message_id: `${row!.message_id}.f`, timestamp: 1 }]);
      const { body: b, headers } = make(body);
      const res = await hook('sendgrid', 'acme', b, headers);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe('webhook_unauthorized');
      expect((await ledger('acme', sent.id))?.delivery_status).toBeNull();
      expect(await su`SELECT 1 FROM email_webhook_receipts WHERE provider_event_id = ${`d-${sent.id}`}`).toHaveLength(0);
    });

    it('refuses a tenant with no webhook set up, and an unknown provider path', async () => {
      const body = '[]';
      expect((await hook('sendgrid', 'pm', body, signSendgrid(acmeKeys, body))).status).toBe(401);
      expect((await hook('smtp', 'acme', body, signSendgrid(acmeKeys, body))).status).toBe(404);
    });

    it('never lets a deferral overwrite a final status, and lets a later complaint beat a delivery', async () => {
      const sent = await send('acme', 'later@example.com');
      const mid = `${(await ledger('acme', sent.id))!.message_id}.f`;
      const events = (type: string, n: number, extra: Record<string, unknown> = {}) => ({ email: 'later@example.com', event: type, sg_event_id: `${type}-${n}-${sent.id}`, sg_message_id: mid, timestamp: n, ...extra });
      for (const batch of [[events('delivered', 2)], [events('deferred', 1)], [events('spamreport', 3)], [events('delivered', 2)]]) {
        const body = JSON.stringify(batch);
        expect((await hook('sendgrid', 'acme', body, signSendgrid(acmeKeys, body))).status).toBe(200);
      }
      expect(await ledger('acme', sent.id)).toMatchObject({ delivery_status: 'complained' });
      expect(await suppressed('acme', 'later@example.com')).toEqual({ reason: 'complaint', source: 'webhook' });
    });
  });

  describe('Postmark (generated basic-auth credentials)', () => {
    it('generates credentials shown once, accepts a bounce with them and refuses a wrong password', async () => {
      const put = await adminCall('PUT', 'pm/email-webhooks/postmark', {});
      expect(put.status).toBe(201);
      const { username, password } = put.json.basic_auth as { username: string; password: string };
      expect(put.json.webhook_url_with_credentials).toBe(`https://${username}:${password}@email.platform.example/api/v1/webhooks/postmark/pm`);
      const got = await adminCall('GET', 'pm/email-webhooks/postmark');
      expect(JSON.stringify(got.json)).not.toContain(password);
      expect(got.json).toMatchObject({ basic_username: username, basic_password_set: true });

      const sent = await send('pm', 'bounced@pm.example');
      expect(sent.status).toBe(202);
      const row = await ledger('pm', sent.id);
      const body = JSON.stringify({ RecordType: 'Bounce', ID: 4323372036, Type: 'HardBounce', TypeCode: 1, MessageID: row!.message_id, Email: 'bounced@pm.example', BouncedAt: new Date().toISOString(), Description: 'The server was unable to deliver your message' });
      const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`, 'content-type': 'application/json' });
      expect((await hook('postmark', 'pm', body, basic(username, `${password}x`))).status).toBe(401);
      expect((await ledger('pm', sent.id))?.delivery_status).toBeNull();
      expect((await hook('postmark', 'pm', body, basic(username, password))).status).toBe(200);
      expect(await ledger('pm', sent.id)).toMatchObject({ delivery_status: 'bounced', bounce_type: 'hard' });
      expect(await suppressed('pm', 'bounced@pm.example')).toEqual({ reason: 'hard_bounce', source: 'webhook' });
      const sendsBefore = postmark.accepted.length;
      expect((await send('pm', 'bounced@pm.example')).status).toBe(202);
      expect(postmark.accepted.length).toBe(sendsBefore);
    });
  });

  describe('Resend (Svix signatures)', () => {
    it('accepts a signed complaint, refuses an old timestamp and a wrong secret, and never returns the secret', async () => {
      const put = await adminCall('PUT', 'rs/email-webhooks/resend', { signing_secret: RESEND_SECRET });
      expect(put.status).toBe(201);
      expect(JSON.stringify(put.json)).not.toContain(RESEND_SECRET);
      expect(put.json).toMatchObject({ signing_secret_set: true, webhook_url: 'https://email.platform.example/api/v1/webhooks/resend/rs' });

      const sent = await send('rs', 'annoyed@rs.example');
      const row = await ledger('rs', sent.id);
      const payload = JSON.stringify({ type: 'email.complained', created_at: new Date().toISOString(), data: { email_id: row!.message_id, to: ['annoyed@rs.example'], created_at: new Date().toISOString() } });
      const signed = (secret: string, at: Date, id = `msg_${randomUUID()}`) => ({ 'svix-id': id, 'svix-timestamp': String(Math.floor(at.getTime() / 1000)), 'svix-signature': new Webhook(secret).sign(id, at, payload), 'content-type': 'application/json' });
      expect((await hook('resend', 'rs', payload, signed(RESEND_SECRET, new Date(Date.now() - 10 * 60_000)))).status).toBe(401);
      expect((await hook('resend', 'rs', payload, signed(`whsec_${Buffer.from('another-secret-000000000').toString('base64')}`, new Date()))).status).toBe(401);
      expect((await ledger('rs', sent.id))?.delivery_status).toBeNull();
      const ok = signed(RESEND_SECRET, new Date());
      expect((await hook('resend', 'rs', payload, ok)).status).toBe(200);
      // The same Svix message again (a provider retry) changes nothing and is counted as a duplicate.
      const again = await hook('resend', 'rs', payload, ok);
      expect(await again.json()).toMatchObject({ applied: 0, duplicates: 1 });
      expect(await ledger('rs', sent.id)).toMatchObject({ delivery_status: 'complained' });
      expect(await suppressed('rs', 'annoyed@rs.example')).toEqual({ reason: 'complaint', source: 'webhook' });
    });
  });

  describe('one-click unsubscribe (RFC 8058)', () => {
    it("puts a one-line List-Unsubscribe on the platform tier's emails; GET changes nothing, POST suppresses, a forged or altered token is refused", async () => {
      // A tenant with no from_email of its own sends on the platform tier.
      await putSettings(db.worker(1), { current: KEY }, 'tier', { provider: 'sendgrid', api_key: 'SG.CANARY-tier-00000000000', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100 });
      const sent = await send('tier', 'reader@tier.example');
      expect(sent.status).toBe(202);
      const email = mailbox.emails.at(-1)!;
      const header = email.body.headers?.['List-Unsubscribe'] ?? '';
      expect(header).toMatch(/^<https:\/\/email\.platform\.example\/api\/v1\/unsubscribe\/[A-Za-z0-9_.-]+>$/);
      expect(header).not.toMatch(/[\r\n]/);
      expect(header.toLowerCase()).not.toContain('reader');
      expect(email.body.headers?.['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
      const path = header.slice('<https://email.platform.example'.length, -1);
      const at = (p: string) => new URL(p, worker.url);

      const page = await fetch(at(path));
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<form method="post">');
      expect(await suppressed('tier', 'reader@tier.example')).toBeUndefined();

      const token = path.split('/').pop()!;
      const altered = `${token.slice(0, -3)}${token.slice(-3) === 'AAA' ? 'BBB' : 'AAA'}`;
      for (const bad of [altered, 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA', 'not-a-token']) {
        const r = await fetch(at(`/api/v1/unsubscribe/${bad}`), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
        expect(r.status).toBe(400);
      }
      expect(await suppressed('tier', 'reader@tier.example')).toBeUndefined();

      const one = await fetch(at(path), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(one.status).toBe(200);
      expect(await suppressed('tier', 'reader@tier.example')).toEqual({ reason: 'unsubscribe', source: 'unsubscribe' });
      const before = mailbox.emails.length;
      expect((await send('tier', 'reader@tier.example')).status).toBe(202);
      expect(mailbox.emails.length).toBe(before);
    });

    it("keeps the tenant's own List-Unsubscribe when it set one", async () => {
      await putSettings(db.worker(1), { current: KEY }, 'own', { provider: 'sendgrid', api_key: 'SG.CANARY-own-000000000000', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100, list_unsubscribe: 'https://own.example/unsub' });
      expect((await send('own', 'reader@own.example')).status).toBe(202);
      expect(mailbox.emails.at(-1)!.body.headers?.['List-Unsubscribe']).toBe('<https://own.example/unsub>');
    });
  });

  describe('suppression list through the admin API', () => {
    it('adds, looks up, lists by reason with a cursor, and removes with who and why', async () => {
      for (const a of ['a@list.example', 'b@list.example', 'c@list.example']) {
        expect((await adminCall('PUT', `acme/suppressions/${a}`, { note: 'asked by phone' })).status).toBe(201);
      }
      expect((await adminCall('PUT', 'acme/suppressions/a@list.example', {})).status).toBe(200);
      expect((await adminCall('GET', 'acme/suppressions/A@list.example')).json).toMatchObject({ address: 'a@list.example', reason: 'manual', source: 'admin', created_by: 'ops@test' });
      const page1 = await adminCall('GET', 'acme/suppressions?reason=manual&limit=2');
      expect(page1.json.items.map((s: { address: string }) => s.address)).toEqual(['a@list.example', 'b@list.example']);
      const page2 = await adminCall('GET', `acme/suppressions?reason=manual&limit=2&cursor=${encodeURIComponent(page1.json.next_cursor)}`);
      expect(page2.json).toEqual({ items: [expect.objectContaining({ address: 'c@list.example' })], next_cursor: null });
      expect((await adminCall('GET', 'acme/suppressions?reason=bogus')).json.code).toBe('invalid_request');
      expect((await adminCall('DELETE', 'acme/suppressions/b@list.example?note=customer%20fixed%20mailbox')).status).toBe(204);
      expect((await adminCall('GET', 'acme/suppressions/b@list.example')).status).toBe(404);
      expect(await su`SELECT action, actor, note FROM email_suppression_log WHERE tenant_id = 'acme' AND address = 'b@list.example' ORDER BY id`).toEqual([
        { action: 'added', actor: 'ops@test', note: 'asked by phone' },
        { action: 'removed', actor: 'ops@test', note: 'customer fixed mailbox' },
      ]);
      // A removed address is mailed again.
      const before = mailbox.emails.length;
      expect((await send('acme', 'b@list.example')).status).toBe(202);
      expect(mailbox.emails.length).toBe(before + 1);
    });
  });

  it('traces each webhook request (provider, tenant, result, counts) and puts no address in any span', () => {
    const hooks = spans.getFinishedSpans().filter((sp) => sp.name.startsWith('webhook '));
    expect(hooks.length).toBeGreaterThan(5);
    expect(hooks.find((sp) => sp.attributes['http.response.status_code'] === 200 && sp.attributes['email.webhook.applied'] === 1)?.attributes).toMatchObject({ 'email.provider': 'sendgrid', 'tenant.id': 'acme' });
    expect(hooks.some((sp) => sp.attributes['error.type'] === 'webhook_unauthorized')).toBe(true);
    expect(spans.getFinishedSpans().some((sp) => sp.name === 'email_apply_feedback')).toBe(true);
    const all = JSON.stringify(spans.getFinishedSpans().map((sp) => ({ n: sp.name, a: sp.attributes, e: sp.events })));
    for (const address of ['gone@dead.example', 'bounced@pm.example', 'annoyed@rs.example', 'reader@tier.example']) expect(all).not.toContain(address);
  });

  it('writes no key, signing secret or password to the log', () => {
    const text = logs.text();
    for (const secret of [CANARY_DB_KEY, RESEND_SECRET, 'CANARY-postmark-token', 'SG.CANARY']) expect(text).not.toContain(secret);
    expect(text).not.toContain('gone@dead.example');
  });
});
