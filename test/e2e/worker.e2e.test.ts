import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type FakeResponse, type Mailbox } from '../../dev/mailbox';
import type { Sql } from '../../src/db/connect';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, structuredEvent, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const API_KEY = 'SG.CANARY-APIKEY-e2e-9d8c7b6a5f4e3d2c1b0a';

/** When the fake provider's rate limit resets: an hour after the suite loads, so Retry-After is never clamped. */
const RESET_AT = Math.floor(Date.now() / 1000) + 3600;

describe('worker end to end: CloudEvent in, email out through @sendgrid/mail', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let respond: ((path: string) => FakeResponse | undefined) | undefined;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let admin: Sql;
  const logs = captureLogs();

  const settings = (over: Record<string, unknown> = {}) => ({
    provider: 'sendgrid' as const,
    api_key: API_KEY,
    from_email: 'noreply@acme.example',
    from_name: 'Acme Agents',
    reply_to_domain: 'replies.acme.example',
    provider_settings: { base_url: mailbox.url },
    enabled: true,
    daily_limit: 1000,
    ...over,
  });

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({ respond: (r) => respond?.(r.path) });
    const sql = db.worker(2);
    await putSettings(sql, { current: KEY }, 'acme', settings());
    await putSettings(sql, { current: KEY }, 'limited', settings({ daily_limit: 20 }));
    await putSettings(sql, { current: KEY }, 'disabled', settings({ enabled: false }));
    worker = await startTestWorker(db, logs.logger);
    admin = db.admin();
  });
  afterAll(async () => {
    await worker.shutdown();
    await mailbox.close();
    await db.drop();
  });
  beforeEach(() => {
    respond = undefined;
  });

  const emailsFor = (taskId: string) => mailbox.emails.filter((e) => e.body.custom_args?.event_id && e.body.content?.some((c) => c.value.includes(taskId)));

  it('sends a binary-mode event with the right From, To, Reply-To, subject, bearer and tags; answers 202 with an empty body', async () => {
    const data = taskData({ task_id: 'task-e2e-1', prompt: 'Fix the <login> bug\nsecond line' });
    const ev = binaryEvent({ tenant: 'acme', data, id: 'evt-1' });
    const res = await post(worker.url, ev);
    expect(res.status).toBe(202);
    expect(res.text).toBe('');
    const [m] = emailsFor('task-e2e-1');
    expect(m).toBeDefined();
    expect(m!.authorization).toBe(`Bearer ${API_KEY}`);
    expect(m!.body.from).toEqual({ email: 'noreply@acme.example', name: 'Acme Agents' });
    expect(m!.body.personalizations[0]!.to).toEqual([{ email: 'owner@customer.example' }]);
    expect(m!.body.reply_to).toEqual({ email: 'reply+task-e2e-1@replies.acme.example' });
    expect(m!.body.subject).toBe('Task completed: Fix the <login> bug');
    expect(m!.body.custom_args).toEqual({ tenant_id: 'acme', event_id: 'evt-1' });
    expect(m!.body.headers).toMatchObject({ 'X-Tenant-ID': 'acme', 'X-Event-ID': 'evt-1' });
    const html = m!.body.content.find((c) => c.type === 'text/html')!.value;
    const text = m!.body.content.find((c) => c.type === 'text/plain')!.value;
    expect(html).toContain('Fix the &lt;login&gt; bug');
    expect(html).toContain('Revenue grew &lt;b&gt;12%&lt;/b&gt;.');
    expect(html).not.toContain('<b>12%');
    expect(text).toContain('Revenue grew <b>12%</b>.');
    const [row] = await admin`SELECT status, provider, message_id, settings_source FROM email_deliveries WHERE tenant_id = 'acme' AND event_id = 'evt-1'`;
    expect(row).toMatchObject({ status: 'sent', provider: 'sendgrid', settings_source: 'tenant' });
    expect(row!.message_id).toBe(m!.id);
  });

  it('takes structured mode, with the tenant from data.tenant_id', async () => {
    const res = await post(worker.url, structuredEvent({ data: taskData({ task_id: 'task-structured', tenant_id: 'acme' }) }));
    expect(res.status).toBe(202);
    expect(emailsFor('task-structured')).toHaveLength(1);
  });

  it('answers a redelivery of a sent event 202 and sends nothing more', async () => {
    const ev = binaryEvent({ tenant: 'acme', id: 'evt-redeliver', data: taskData({ task_id: 'task-redeliver' }) });
    expect((await post(worker.url, ev)).status).toBe(202);
    expect((await post(worker.url, ev)).status).toBe(202);
    expect(emailsFor('task-redeliver')).toHaveLength(1);
  });

  it('sends exactly one email for one event delivered 20 times concurrently (others 202 or 409)', async () => {
    const ev = binaryEvent({ tenant: 'acme', id: 'evt-storm', data: taskData({ task_id: 'task-storm' }) });
    const answers = await Promise.all(Array.from({ length: 20 }, () => post(worker.url, ev)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 202 || s === 409)).toBe(true);
    expect(statuses).toContain(202);
    expect(emailsFor('task-storm')).toHaveLength(1);
  });

  it('sends exactly daily_limit emails for 50 concurrent distinct events; the rest 422 quota_exceeded', async () => {
    const before = mailbox.emails.length;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post(worker.url, binaryEvent({ tenant: 'limited', data: taskData({ task_id: `task-limit-${i}` }) }))),
    );
    expect(answers.filter((a) => a.status === 202)).toHaveLength(20);
    const rejected = answers.filter((a) => a.status === 422);
    expect(rejected).toHaveLength(30);
    expect(JSON.parse(rejected[0]!.text).code).toBe('quota_exceeded');
    expect(mailbox.emails.length - before).toBe(20);
  });

  it('skips an event without notify_email and a disabled tenant with 202 and no email', async () => {
    const before = mailbox.emails.length;
    const noRecipient = await post(worker.url, binaryEvent({ tenant: 'acme', data: taskData({ notify_email: undefined }) }));
    const disabled = await post(worker.url, binaryEvent({ tenant: 'disabled' }));
    expect([noRecipient.status, noRecipient.text, disabled.status, disabled.text]).toEqual([202, '', 202, '']);
    expect(mailbox.emails.length).toBe(before);
  });

  it('answers 422 unknown_tenant (never 404) when a tenant has no settings and there is no global configuration', async () => {
    const res = await post(worker.url, binaryEvent({ tenant: 'nobody' }));
    expect(res.status).toBe(422);
    expect(JSON.parse(res.text)).toMatchObject({ code: 'unknown_tenant' });
    const rows = await admin`SELECT 1 FROM email_deliveries WHERE tenant_id = 'nobody'`;
    expect(rows).toHaveLength(0);
  });

  it.each([
    ['400 tenant mismatch', binaryEvent({ tenant: 'acme', data: taskData({ tenant_id: 'other' }) }), 400, 'tenant_mismatch'],
    ['400 bad tenant id', binaryEvent({ tenant: "x'; DROP TABLE tenants;--" }), 400, 'invalid_tenant_id'],
    ['400 missing task_id', binaryEvent({ tenant: 'acme', data: { notify_email: 'a@b.example' } }), 400, 'invalid_data'],
    ['400 two recipients', binaryEvent({ tenant: 'acme', data: taskData({ notify_email: 'a@b.example, c@d.example' }) }), 400, 'invalid_data'],
    ['400 CR/LF in the recipient', binaryEvent({ tenant: 'acme', data: taskData({ notify_email: 'a@b.example\r\nBcc: x@y.example' }) }), 400, 'invalid_data'],
    ['400 unsupported type', binaryEvent({ tenant: 'acme', type: 'something.else' }), 400, 'unsupported_event_type'],
    ['400 invalid JSON', { headers: binaryEvent().headers, body: '{"task_id":' }, 400, 'invalid_json'],
    ['400 missing ce-source', (() => { const e = binaryEvent({ tenant: 'acme' }); delete e.headers['ce-source']; return e; })(), 400, 'invalid_event'],
    ['400 structured without id', (() => { const e = structuredEvent(); const b = JSON.parse(e.body); delete b.id; return { ...e, body: JSON.stringify(b) }; })(), 400, 'missing_event_id'],
    ['415 batch', { headers: { 'content-type': 'application/cloudevents-batch+json' }, body: '[]' }, 415, 'batch_not_supported'],
    ['415 text/plain', { headers: { ...binaryEvent().headers, 'content-type': 'text/plain' }, body: 'hi' }, 415, 'unsupported_media_type'],
    ['413 too large', binaryEvent({ tenant: 'acme', data: taskData({ prompt: 'x'.repeat(300 * 1024) }) }), 413, 'body_too_large'],
  ])('answers %s', async (_name, ev, status, code) => {
    const before = mailbox.emails.length;
    const res = await post(worker.url, ev);
    expect(res.status).toBe(status);
    expect(JSON.parse(res.text)).toMatchObject({ code });
    expect(Buffer.byteLength(res.text)).toBeLessThan(700);
    expect(mailbox.emails.length).toBe(before);
  });

  it('accepts application/json; charset=utf-8 in binary mode', async () => {
    const ev = binaryEvent({ tenant: 'acme', data: taskData({ task_id: 'task-charset' }) });
    ev.headers['content-type'] = 'application/json; charset=UTF-8';
    expect((await post(worker.url, ev)).status).toBe(202);
  });

  it.each([
    ['429 with Retry-After from X-RateLimit-Reset', { status: 429, headers: { 'X-RateLimit-Reset': String(RESET_AT) }, body: { errors: [] } }, 429, 'provider_rate_limited'],
    ['503 on a provider 500', { status: 500, body: { errors: [] } }, 503, 'provider_unavailable'],
    ['422 on a provider 401', { status: 401, body: { errors: [{ message: 'bad key' }] } }, 422, 'provider_auth_failed'],
    ['422 on a provider 403', { status: 403, body: { errors: [] } }, 422, 'provider_forbidden'],
    ['422 on a provider 400', { status: 400, body: { errors: [] } }, 422, 'provider_rejected'],
    ['422 on a provider 413', { status: 413, body: { errors: [] } }, 422, 'provider_payload_too_large'],
    ['503 on a dropped connection', { reset: true }, 503, 'provider_network'],
    ['503 on a provider that hangs past the timeout', { hang: true }, 503, 'provider_timeout'],
  ] as Array<[string, FakeResponse, number, string]>)('answers %s, records the failure and gives the quota unit back', async (_n, fake, status, code) => {
    const id = `evt-fail-${code}-${status}`;
    respond = (path) => (path === '/v3/mail/send' ? fake : undefined);
    const [u0] = await admin`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = 'acme'`;
    const before = Date.now();
    const res = await post(worker.url, binaryEvent({ tenant: 'acme', id }));
    const after = Date.now();
    expect(res.status).toBe(status);
    expect(JSON.parse(res.text)).toMatchObject({ code });
    // The seconds from the moment the worker read the 429 (between before and after) to the reset,
    // rounded up: bounded by the two instants, however long the machine took.
    if (status === 429) {
      const secondsTo = (t: number) => Math.max(1, Math.ceil(RESET_AT - t / 1000));
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(secondsTo(after));
      expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(secondsTo(before));
    }
    const [row] = await admin`SELECT status, error_code FROM email_deliveries WHERE tenant_id = 'acme' AND event_id = ${id}`;
    expect(row).toEqual({ status: 'failed', error_code: code });
    const [u1] = await admin`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = 'acme'`;
    expect(u1!.n).toBe(u0!.n);
    // Once the provider recovers, the broker's retry sends it.
    respond = undefined;
    expect((await post(worker.url, binaryEvent({ tenant: 'acme', id }))).status).toBe(202);
  });

  it('answers /healthz and /readyz', async () => {
    expect((await fetch(new URL('/healthz', worker.url))).status).toBe(200);
    expect((await fetch(new URL('/readyz', worker.url))).status).toBe(200);
    const r = await fetch(new URL('/nope', worker.url));
    expect(r.status).toBe(404);
  });

  it('logs event id, source, tenant, task id and outcome for every event', () => {
    const handled = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'event handled' && l.event_id === 'evt-1');
    expect(handled).toHaveLength(1);
    expect(handled[0]).toMatchObject({ event_id: 'evt-1', event_source: '/codetether/a2a', tenant: 'acme', task_id: 'task-e2e-1', outcome: 'sent', status: 202 });
  });

  it('never writes the API key or DB_ENCRYPTION_KEY to a log line', () => {
    expect(logs.lines.length).toBeGreaterThan(50);
    expect(logs.text()).not.toContain('CANARY-APIKEY');
    expect(logs.text()).not.toContain('CANARY-DBKEY');
  });
});
