import { generateKeyPairSync, randomUUID, sign as signData } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';
import { mulberry32 } from '../helpers/faultyProvider';
import { until } from '../helpers/until';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const JWT_SECRET = 'reputation-jwt-secret-for-tests-0123456789abc';

describe('delivery feedback at volume, and the reputation guard', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let su: Sql;
  let admin: string;
  // A stand-in for the broker's ingress: forwards each event to the worker, as a Trigger would.
  let broker: Server;
  const logs = captureLogs();
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const publicKeyB64 = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');

  const sendgridHook = (tenant: string, events: unknown[]) => {
    const body = JSON.stringify(events);
    const ts = Math.floor(Date.now() / 1000);
    return fetch(new URL(`/api/v1/webhooks/sendgrid/${tenant}`, worker.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-timestamp': String(ts), 'x-twilio-email-event-webhook-signature': signData('sha256', Buffer.from(`${ts}${body}`), privateKey).toString('base64') },
      body,
    });
  };
  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const send = async (tenant: string, id = `evt-${randomUUID()}`, to = `r-${randomUUID().slice(0, 8)}@example.com`) => {
    const res = await post(worker.url, binaryEvent({ tenant, id, data: taskData({ notify_email: to }) }));
    return { status: res.status, id, body: res.text, to };
  };
  const messageId = async (tenant: string, eventId: string) => (await su`SELECT message_id FROM email_deliveries WHERE tenant_id = ${tenant} AND event_id = ${eventId}`)[0]!.message_id as string;

  beforeAll(async () => {
    db = await createTestDatabase();
    su = db.admin();
    mailbox = await startMailbox();
    const sql = db.worker(2);
    for (const t of ['bulk', 'noisy']) {
      await putSettings(sql, { current: KEY }, t, { provider: 'sendgrid', api_key: 'SG.CANARY-rep-000000000000', from_email: `noreply@${t}.example`, provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100_000 });
    }
    broker = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('ce-') || k === 'content-type')) as Record<string, string>;
        const answer = await fetch(worker.url, { method: 'POST', headers, body: Buffer.concat(chunks) });
        await answer.arrayBuffer();
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => broker.listen(0, '127.0.0.1', () => r()));
    worker = await startTestWorker(db, logs.logger, {
      ADMIN_JWT_SECRET: JWT_SECRET, REPUTATION_MIN_VOLUME: '20',
      // One process for the test: the dead-letter store beside the admin API, replays to the "broker".
      DEAD_LETTER_STORE: 'true', BROKER_URL: `http://127.0.0.1:${(broker.address() as AddressInfo).port}/`,
    });
    admin = await new SignJWT({ role: 'platform_admin', sub: 'ops@test' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
    for (const t of ['bulk', 'noisy']) expect((await adminCall('PUT', `${t}/email-webhooks/sendgrid`, { public_key: publicKeyB64 })).status).toBe(201);
  });
  afterAll(async () => {
    await worker.shutdown();
    await new Promise((r) => broker.close(r));
    await mailbox.close();
    await db.drop();
  });

  it('applies 1,000 SendGrid events, each delivered three times in shuffled batches of 1,000: the final statuses are right and nothing is counted twice', async () => {
    const seed = Number(process.env.FEEDBACK_SEED ?? Math.floor(Math.random() * 2 ** 31));
    // eslint-disable-next-line no-console
    console.log(`feedback shuffle seed ${seed} (run again with FEEDBACK_SEED=${seed})`);
    const random = mulberry32(seed);
    // 500 deliveries the worker sent (ledger rows as email_record_outcome leaves them).
    const n = 500;
    await su`INSERT INTO email_deliveries (tenant_id, event_source, event_id, event_type, status, provider, message_id, quota_day)
             SELECT 'bulk', '/bulk', 'e' || g, 'codetether.task.created', 'sent', 'sendgrid', 'm' || g, (now() AT TIME ZONE 'UTC')::date FROM generate_series(1, ${n}) g`;
    // Per delivery: delivered for all; then 150 hard bounces, 50 complaints, 300 deferrals (1,000 events).
    const events: Array<Record<string, unknown>> = [];
    const expected = new Map<number, string>();
    const ev = (i: number, type: string, extra: Record<string, unknown> = {}) =>
      events.push({ email: `u${i}@bulk.example`, event: type, sg_event_id: `${type}-${i}`, sg_message_id: `m${i}.filterdrecv-x`, timestamp: 1_700_000_000 + i, ...extra });
    for (let i = 1; i <= n; i++) {
      ev(i, 'delivered');
      expected.set(i, 'delivered');
    }
    for (let i = 1; i <= 150; i++) {
      ev(i, 'bounce', { type: 'bounce', reason: '550 5.1.1 unknown user' });
      expected.set(i, 'bounced');
    }
    for (let i = 151; i <= 200; i++) {
      ev(i, 'spamreport');
      expected.set(i, 'complained');
    }
    for (let i = 201; i <= 500; i++) ev(i, 'deferred');
    expect(events).toHaveLength(1000);
    const copies = [...events, ...events, ...events];
    for (let i = copies.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [copies[i], copies[j]] = [copies[j]!, copies[i]!];
    }
    let applied = 0;
    let duplicates = 0;
    for (let b = 0; b < 3; b++) {
      const res = await sendgridHook('bulk', copies.slice(b * 1000, (b + 1) * 1000));
      expect(res.status).toBe(200);
      const r = (await res.json()) as { applied: number; duplicates: number };
      applied += r.applied;
      duplicates += r.duplicates;
    }
    expect(duplicates).toBe(2000);
    // A figure, not an assertion (no timing in tests): how long each request of 1,000 took to apply.
    const applyMs = logs.lines.filter((l) => l.includes('"msg":"webhook applied"') && l.includes('"received":1000')).map((l) => (JSON.parse(l) as { ms: number }).ms);
    // eslint-disable-next-line no-console
    console.log(`1,000-event SendGrid requests applied in ${applyMs.join(', ')} ms (verify + one transaction + answer)`);
    const rows = await su`SELECT event_id, delivery_status, bounce_type FROM email_deliveries WHERE tenant_id = 'bulk' ORDER BY event_id`;
    const wrong = rows.filter((r) => r.delivery_status !== expected.get(Number(String(r.event_id).slice(1))));
    expect(wrong).toEqual([]);
    const [daily] = await su`SELECT sum(delivered)::int AS delivered, sum(deferred)::int AS deferred, sum(bounced_hard)::int AS bounced_hard, sum(complained)::int AS complained
                             FROM email_feedback_daily WHERE tenant_id = 'bulk'`;
    expect(daily).toEqual({ delivered: 300, deferred: 0, bounced_hard: 150, complained: 50 });
    const [sup] = await su`SELECT count(*)::int AS n FROM email_suppressions WHERE tenant_id = 'bulk'`;
    expect(sup!.n).toBe(200);
    // Each change applied once; how many there were depends on the order (a delivery seen after its bounce is no change).
    expect(applied).toBeGreaterThanOrEqual(500);
    expect(applied).toBeLessThanOrEqual(1000);
  });

  it('pauses a tenant past its complaint threshold, not before the minimum volume; paused events are answered 422 and sent after resume', async () => {
    const first = [];
    for (let i = 0; i < 10; i++) first.push(await send('noisy'));
    expect(first.every((s) => s.status === 202)).toBe(true);
    // One complaint in 10 sends is 10%, far past 0.3%, but below REPUTATION_MIN_VOLUME=20: no pause.
    let res = await sendgridHook('noisy', [{ email: first[0]!.to, event: 'spamreport', sg_event_id: 'c-1', sg_message_id: `${await messageId('noisy', first[0]!.id)}.f`, timestamp: 1 }]);
    expect(res.status).toBe(200);
    expect((await adminCall('GET', 'noisy/reputation')).json).toMatchObject({ paused: false, complaint_threshold: 0.003, bounce_threshold: 0.05 });
    const more = [];
    for (let i = 0; i < 10; i++) more.push(await send('noisy'));
    expect(more.every((s) => s.status === 202)).toBe(true);
    res = await sendgridHook('noisy', [{ email: more[0]!.to, event: 'spamreport', sg_event_id: 'c-2', sg_message_id: `${await messageId('noisy', more[0]!.id)}.f`, timestamp: 2 }]);
    expect(res.status).toBe(200);
    const rep = (await adminCall('GET', 'noisy/reputation')).json;
    expect(rep).toMatchObject({ paused: true, paused_reason: 'complaint_rate', paused_detail: expect.objectContaining({ sent: 20, complaints: 2 }) });
    expect(logs.text()).toContain('tenant paused by the reputation guard');

    const emails = mailbox.emails.length;
    const paused = await send('noisy', 'evt-while-paused');
    expect(paused.status).toBe(422);
    expect(JSON.parse(paused.body).code).toBe('tenant_paused');
    expect(mailbox.emails.length).toBe(emails);
    expect((await su`SELECT status, quota_day FROM email_deliveries WHERE tenant_id = 'noisy' AND event_id = 'evt-while-paused'`)[0]).toEqual({ status: 'paused', quota_day: null });

    // A tenant may lower its thresholds, not raise them past the platform's.
    expect((await adminCall('PUT', 'noisy/reputation', { complaint_threshold: 0.01, bounce_threshold: null })).json.code).toBe('invalid_request');
    expect((await adminCall('PUT', 'noisy/reputation', { complaint_threshold: 0.001, bounce_threshold: null })).json).toMatchObject({ complaint_threshold: 0.001 });

    // The broker dead-letters the 422 to the worker's store.
    const paused2 = binaryEvent({ tenant: 'noisy', id: 'evt-while-paused', data: taskData({ notify_email: paused.to }) });
    const dl = { headers: { ...paused2.headers, 'ce-knativeerrorcode': '422', 'ce-knativeerrordata': Buffer.from(paused.body).toString('base64') }, body: paused2.body };
    expect((await post(new URL('/dead-letters', worker.url).toString(), dl)).status).toBe(202);

    // Resuming replays the tenant_paused dead letters through the broker: the email goes out once.
    const resumed = await adminCall('POST', 'noisy/resume');
    expect(resumed.json).toMatchObject({ resumed: true, paused: false, resumed_by: 'ops@test', replaying_dead_letters: true });
    // The provider has the email before the worker records it as sent, and both before the
    // replay's answer is stored: each is waited for, not assumed.
    await until(() => mailbox.emails.length >= emails + 1);
    await until(async () => (await su`SELECT status FROM email_deliveries WHERE tenant_id = 'noisy' AND event_id = 'evt-while-paused'`)[0]!.status === 'sent');
    await until(async () => (await su`SELECT replay_status FROM email_dead_letters WHERE event_id = 'evt-while-paused'`)[0]!.replay_status !== null);
    expect(mailbox.emails.length).toBe(emails + 1);
    expect((await su`SELECT replays, replay_status FROM email_dead_letters WHERE event_id = 'evt-while-paused'`)[0]).toEqual({ replays: 1, replay_status: 202 });
    // The admin API lists the tenant's dead letters.
    expect((await adminCall('GET', 'noisy/dead-letters?code=tenant_paused')).json).toMatchObject({ total: 1, counts: { tenant_paused: 1 } });
    // A replay of it now is a duplicate: nothing more is sent.
    const again = await adminCall('POST', 'noisy/dead-letters/replay', { code: 'tenant_paused', rate: 100 });
    expect(again.json).toMatchObject({ selected: 1, replayed: 1, answers: { '202': 1 } });
    expect(mailbox.emails.length).toBe(emails + 1);
  });
});
