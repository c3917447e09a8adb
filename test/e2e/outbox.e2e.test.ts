import { generateKeyPairSync, randomUUID, sign as signData } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { UnsubscribeTokens } from '../../src/feedback/unsubscribe';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const JWT_SECRET = 'outbox-jwt-secret-for-tests-0123456789abcdef';

interface Received {
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** Poll until `check` holds; the assertion after it says what was expected, so a timeout fails with that. */
async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check()) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
}

describe('events out: delivery statuses published to K_SINK through the outbox, at least once', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let su: Sql;
  let sink: Server | undefined;
  let sinkPort: number;
  const received: Received[] = [];
  const logs = captureLogs();
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

  // "Down" drops every connection unanswered, as a stopped broker ingress would; the port stays
  // ours, so no other process can take it while the sink is down.
  let sinkDown = false;
  const startSink = async () => {
    sink = createServer((req, res) => {
      if (sinkDown) {
        req.socket.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> });
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => sink!.listen(0, '127.0.0.1', () => r()));
    return (sink.address() as AddressInfo).port;
  };
  const stopSink = async () => {
    await new Promise((r) => sink!.close(r));
    sink!.closeAllConnections();
  };
  const hook = (events: unknown[]) => {
    const body = JSON.stringify(events);
    const ts = Math.floor(Date.now() / 1000);
    return fetch(new URL('/api/v1/webhooks/sendgrid/acme', worker.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-timestamp': String(ts), 'x-twilio-email-event-webhook-signature': signData('sha256', Buffer.from(`${ts}${body}`), privateKey).toString('base64') },
      body,
    });
  };
  const sendOne = async (to: string) => {
    const id = `evt-${randomUUID()}`;
    expect((await post(worker.url, binaryEvent({ tenant: 'acme', id, data: taskData({ notify_email: to }) }))).status).toBe(202);
    const [row] = await su`SELECT message_id, task_id FROM email_deliveries WHERE tenant_id = 'acme' AND event_id = ${id}`;
    return { id, messageId: row!.message_id as string, taskId: row!.task_id as string };
  };
  const outboxRows = async () => (await su`SELECT count(*)::int AS n FROM email_outbox`)[0]!.n as number;

  beforeAll(async () => {
    sinkPort = await startSink();
    db = await createTestDatabase();
    su = db.admin();
    mailbox = await startMailbox();
    await putSettings(db.worker(1), { current: KEY }, 'acme', { provider: 'sendgrid', api_key: 'SG.CANARY-outbox-0000000000', from_email: 'noreply@acme.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100 });
    worker = await startTestWorker(db, logs.logger, {
      ADMIN_JWT_SECRET: JWT_SECRET,
      K_SINK: `http://127.0.0.1:${sinkPort}/`,
      K_CE_OVERRIDES: JSON.stringify({ extensions: { platform: 'test' } }),
    });
    const admin = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
    const put = await fetch(new URL('/api/v1/admin/tenants/acme/email-webhooks/sendgrid', worker.url), {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ public_key: publicKey.export({ format: 'der', type: 'spki' }).toString('base64') }),
    });
    expect(put.status).toBe(201);
  });
  afterAll(async () => {
    await worker.shutdown();
    if (sink?.listening) await stopSink();
    await mailbox.close();
    await db.drop();
  });

  it('publishes a bounce as a binary-mode codetether.email.bounced event naming the tenant, task and provider, never the address', async () => {
    const d = await sendOne('gone@out.example');
    expect((await hook([{ email: 'gone@out.example', event: 'bounce', type: 'bounce', sg_event_id: `b-${d.id}`, sg_message_id: `${d.messageId}.f`, timestamp: 1 }])).status).toBe(200);
    await eventually(() => received.length >= 1);
    expect(received).toHaveLength(1);
    const e = received[0]!;
    expect(e.headers).toMatchObject({ 'ce-type': 'codetether.email.bounced', 'ce-tenant': 'acme', 'ce-subject': d.taskId, 'ce-source': '/tenant-email-worker', 'ce-platform': 'test', 'content-type': 'application/json' });
    expect(e.body).toMatchObject({ tenant_id: 'acme', event_id: d.id, task_id: d.taskId, provider: 'sendgrid', message_id: d.messageId, status: 'bounced', bounce_type: 'hard' });
    expect(JSON.stringify(e)).not.toContain('gone@out.example');
    await eventually(async () => (await outboxRows()) === 0);
    expect(await outboxRows()).toBe(0);
  });

  it('keeps a status committed while the sink drops every request and publishes it, once, when the sink is back', async () => {
    sinkDown = true;
    const d = await sendOne('annoyed@out.example');
    expect((await hook([{ email: 'annoyed@out.example', event: 'spamreport', sg_event_id: `c-${d.id}`, sg_message_id: `${d.messageId}.f`, timestamp: 2 }])).status).toBe(200);
    // The publisher tries, fails, and keeps the row for its backoff.
    await eventually(() => logs.text().includes('the event sink refused or did not answer'));
    expect(logs.text()).toContain('the event sink refused or did not answer');
    expect(await outboxRows()).toBe(1);
    const before = received.length;

    sinkDown = false;
    await eventually(() => received.length > before);
    await eventually(async () => (await outboxRows()) === 0);
    expect(await outboxRows()).toBe(0);
    const complaints = received.filter((r) => r.headers['ce-type'] === 'codetether.email.complained');
    expect(complaints).toHaveLength(1);
    expect(complaints[0]!.body).toMatchObject({ event_id: d.id, status: 'complained' });
  });

  it('publishes a one-click unsubscribe as codetether.email.unsubscribed, without the address', async () => {
    const token = await new UnsubscribeTokens({ current: KEY }).create({ tenantId: 'acme', recipient: 'leaver@out.example', eventType: 'codetether.task.created' });
    const before = received.length;
    const res = await fetch(new URL(`/api/v1/unsubscribe/${token}`, worker.url), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect(res.status).toBe(200);
    await eventually(() => received.length > before);
    const e = received.at(-1)!;
    expect(e.headers).toMatchObject({ 'ce-type': 'codetether.email.unsubscribed', 'ce-tenant': 'acme' });
    expect(e.body).toMatchObject({ tenant_id: 'acme', status: 'unsubscribed', via: 'one_click', event_type: 'codetether.task.created' });
    expect(JSON.stringify(e)).not.toContain('leaver');
    // A second click changes nothing and publishes nothing more.
    await fetch(new URL(`/api/v1/unsubscribe/${token}`, worker.url), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    await eventually(async () => (await outboxRows()) === 0);
    expect(received.filter((r) => r.headers['ce-type'] === 'codetether.email.unsubscribed')).toHaveLength(1);
  });
});
