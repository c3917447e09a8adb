import { generateKeyPairSync, randomUUID, sign as signData } from 'node:crypto';
import { SignJWT } from 'jose';
import { Webhook } from 'svix';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const JWT_SECRET = 'register-jwt-secret-for-tests-0123456789abcd';
const BASE = 'https://email.platform.example';
const RESEND_SECRET = `whsec_${Buffer.from('resend-registered-secret-CANARY').toString('base64')}`;

/**
 * POST …/email-webhooks/{provider}/register through each provider's SDK against a local fake of
 * its API: what the provider answers (SendGrid's verification key, Resend's signing secret) and
 * what the worker generates (Postmark's basic auth) is stored, and a webhook signed with it is
 * then accepted.
 */
describe('registering the delivery webhook at the provider with the tenant’s own credentials', () => {
  let db: TestDatabase;
  let su: Sql;
  let sendgrid: FakeApi;
  let postmark: FakeApi;
  let resend: FakeApi;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let admin: string;
  const logs = captureLogs();
  const sg = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const sgPublic = sg.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');

  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const hook = (provider: string, tenant: string, body: string, headers: Record<string, string>) =>
    fetch(new URL(`/api/v1/webhooks/${provider}/${tenant}`, worker.url), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const send = async (tenant: string, to: string) => {
    const id = `evt-${randomUUID()}`;
    expect((await post(worker.url, binaryEvent({ tenant, id, data: taskData({ notify_email: to }) }))).status).toBe(202);
    return (await su`SELECT message_id FROM email_deliveries WHERE tenant_id = ${tenant} AND event_id = ${id}`)[0]!.message_id as string;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    su = db.admin();
    sendgrid = await startFakeApi({
      'POST /v3/mail/send': () => ({ status: 202, headers: { 'x-message-id': `sg-${randomUUID()}` }, body: '' }),
      'PATCH /v3/user/webhooks/event/settings': (r) => ({ status: 200, body: r.body }),
      'PATCH /v3/user/webhooks/event/settings/signed': () => ({ status: 200, body: { public_key: sgPublic } }),
    });
    postmark = await startFakeApi({
      ...PROVIDER_ROUTES.postmark,
      'POST /webhooks': (r) => ({ status: 200, body: { ID: 1234567, ...(r.body as object) } }),
      'PUT /webhooks/:id': (r) => ({ status: 200, body: { ID: Number(r.params.id), ...(r.body as object) } }),
    });
    resend = await startFakeApi({
      ...PROVIDER_ROUTES.resend,
      'POST /webhooks': () => ({ status: 201, body: { object: 'webhook', id: 'wh_abc123', signing_secret: RESEND_SECRET } }),
      'PATCH /webhooks/:id': (r) => ({ status: 200, body: { object: 'webhook', id: r.params.id } }),
    });
    const sql = db.worker(1);
    const base = { from_email: 'noreply@acme.example', enabled: true, daily_limit: 100 };
    await putSettings(sql, { current: KEY }, 'sg-t', { ...base, provider: 'sendgrid', api_key: 'SG.CANARY-register-0000000', provider_settings: { base_url: sendgrid.url } });
    await putSettings(sql, { current: KEY }, 'pm-t', { ...base, provider: 'postmark', api_key: 'CANARY-pm-register-token-0', provider_settings: { base_url: postmark.url } });
    await putSettings(sql, { current: KEY }, 'rs-t', { ...base, provider: 'resend', api_key: 're_CANARY_register_key_000', provider_settings: { base_url: resend.url } });
    await putSettings(sql, { current: KEY }, 'ses-t', { ...base, provider: 'ses', api_key: 'CANARY-ses-register-secret', provider_settings: { region: 'eu-west-1', access_key_id: 'AKIACANARY000001', endpoint: sendgrid.url } });
    worker = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: JWT_SECRET, PUBLIC_BASE_URL: BASE });
    admin = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([sendgrid.close(), postmark.close(), resend.close()]);
    await db.drop();
  });

  it('SendGrid: sets the Event Webhook with the delivery events and signing on, and stores the verification key it answers', async () => {
    const r = await adminCall('POST', 'sg-t/email-webhooks/sendgrid/register');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ provider: 'sendgrid', public_key: sgPublic, webhook_url: `${BASE}/api/v1/webhooks/sendgrid/sg-t`, registered_at: expect.any(String) });
    expect(r.json.events).toEqual(expect.arrayContaining(['bounce', 'delivered', 'spam_report', 'unsubscribe', 'dropped', 'deferred']));
    const settings = sendgrid.requests.find((q) => q.path === '/v3/user/webhooks/event/settings')!;
    expect(settings.body).toMatchObject({ enabled: true, url: `${BASE}/api/v1/webhooks/sendgrid/sg-t`, bounce: true, open: false, click: false });
    expect(settings.headers.authorization).toBe('Bearer SG.CANARY-register-0000000');

    const messageId = await send('sg-t', 'x@sg.example');
    const body = JSON.stringify([{ email: 'x@sg.example', event: 'delivered', sg_event_id: `d-${messageId}`, sg_message_id: `${messageId}.f`, timestamp: 1 }]);
    const ts = Math.floor(Date.now() / 1000);
    const signature = signData('sha256', Buffer.from(`${ts}${body}`), sg.privateKey).toString('base64');
    expect((await hook('sendgrid', 'sg-t', body, { 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': String(ts) })).status).toBe(200);
    expect((await su`SELECT delivery_status FROM email_deliveries WHERE message_id = ${messageId}`)[0]!.delivery_status).toBe('delivered');
  });

  it('Postmark: creates a server webhook with generated basic auth (then updates the same one), and requests with those credentials are accepted', async () => {
    const first = await adminCall('POST', 'pm-t/email-webhooks/postmark/register');
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ provider_webhook_id: '1234567', basic_password_set: true });
    const created = postmark.requests.find((q) => q.method === 'POST' && q.path === '/webhooks')!.body as { Url: string; HttpAuth: { Username: string; Password: string }; Triggers: Record<string, { Enabled: boolean }> };
    expect(created.Url).toBe(`${BASE}/api/v1/webhooks/postmark/pm-t`);
    expect(created.Triggers).toMatchObject({ Bounce: { Enabled: true }, SpamComplaint: { Enabled: true }, Delivery: { Enabled: true }, Open: { Enabled: false } });
    expect(JSON.stringify(first.json)).not.toContain(created.HttpAuth.Password);

    // Registering again edits the webhook it made, with new credentials; the old ones stop working.
    expect((await adminCall('POST', 'pm-t/email-webhooks/postmark/register')).status).toBe(200);
    const edited = postmark.requests.find((q) => q.method === 'PUT' && q.path === '/webhooks/1234567')!.body as { HttpAuth: { Username: string; Password: string } };
    const messageId = await send('pm-t', 'y@pm.example');
    const body = JSON.stringify({ RecordType: 'Delivery', MessageID: messageId, Recipient: 'y@pm.example', DeliveredAt: new Date().toISOString() });
    const basic = (a: { Username: string; Password: string }) => ({ authorization: `Basic ${Buffer.from(`${a.Username}:${a.Password}`).toString('base64')}` });
    expect((await hook('postmark', 'pm-t', body, basic(created.HttpAuth))).status).toBe(401);
    expect((await hook('postmark', 'pm-t', body, basic(edited.HttpAuth))).status).toBe(200);
  });

  it('Resend: creates a webhook and stores its signing secret encrypted; registering again updates it and keeps the secret', async () => {
    const r = await adminCall('POST', 'rs-t/email-webhooks/resend/register');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ provider_webhook_id: 'wh_abc123', signing_secret_set: true });
    expect(JSON.stringify(r.json)).not.toContain(RESEND_SECRET);
    expect(resend.requests.find((q) => q.method === 'POST' && q.path === '/webhooks')!.body).toMatchObject({ endpoint: `${BASE}/api/v1/webhooks/resend/rs-t`, events: expect.arrayContaining(['email.bounced', 'email.complained']) });
    expect((await adminCall('POST', 'rs-t/email-webhooks/resend/register')).status).toBe(200);
    expect(resend.requests.filter((q) => q.method === 'PATCH' && q.path === '/webhooks/wh_abc123')).toHaveLength(1);

    const messageId = await send('rs-t', 'z@rs.example');
    const payload = JSON.stringify({ type: 'email.delivered', created_at: new Date().toISOString(), data: { email_id: messageId, to: ['z@rs.example'] } });
    const id = `msg_${randomUUID()}`;
    const now = new Date();
    const headers = { 'svix-id': id, 'svix-timestamp': String(Math.floor(now.getTime() / 1000)), 'svix-signature': new Webhook(RESEND_SECRET).sign(id, now, payload) };
    expect((await hook('resend', 'rs-t', payload, headers)).status).toBe(200);
  });

  it('SES cannot be registered through its API (SNS subscriptions are set up there), and a tenant without that provider is told so', async () => {
    expect((await adminCall('POST', 'ses-t/email-webhooks/ses/register')).json.code).toBe('webhook_registration_unsupported');
    const other = await adminCall('POST', 'sg-t/email-webhooks/resend/register');
    expect([other.status, other.json.code]).toEqual([400, 'invalid_request']);
    expect(logs.text()).not.toContain('CANARY-pm-register-token');
    expect(logs.text()).not.toContain(RESEND_SECRET);
  });
});
