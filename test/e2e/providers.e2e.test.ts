import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type FakeResponse, type Mailbox } from '../../dev/mailbox';
import { freePort } from '../../dev/embeddedPostgres';
import type { SettingsInput } from '../../src/settings/input';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { startFakeSmtp, type FakeSmtp } from '../helpers/fakeSmtp';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const SES_SECRET = 'CANARY-SES-SECRET-wJalrXUtnFEMI/K7MDENG';
const PM_TOKEN = 'CANARY-POSTMARK-TOKEN-1111-2222';
const RS_KEY = 're_CANARY_RESEND_KEY_abcdefgh';
const SMTP_PASS = 'CANARY-SMTP-PASSWORD-s3cret';

describe('every provider, end to end through the worker', () => {
  let db: TestDatabase;
  let sendgrid: Mailbox;
  let ses: FakeApi;
  let postmark: FakeApi;
  let resend: FakeApi;
  let smtp: FakeSmtp;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  const logs = captureLogs();
  const common = { from_email: 'noreply@acme.example', from_name: 'Acme Agents', reply_to_domain: 'replies.acme.example', enabled: true, daily_limit: 1000 };
  let settingsFor: Record<string, SettingsInput>;

  beforeAll(async () => {
    db = await createTestDatabase();
    [sendgrid, ses, postmark, resend, smtp] = await Promise.all([
      startMailbox(), startFakeApi(PROVIDER_ROUTES.ses), startFakeApi(PROVIDER_ROUTES.postmark), startFakeApi(PROVIDER_ROUTES.resend), startFakeSmtp({ mailer: SMTP_PASS }),
    ]);
    settingsFor = {
      'on-sendgrid': { ...common, provider: 'sendgrid', api_key: 'SG.CANARY-sendgrid-key-0000', provider_settings: { base_url: sendgrid.url } },
      'on-ses': { ...common, provider: 'ses', api_key: SES_SECRET, provider_settings: { region: 'eu-west-1', access_key_id: 'AKIDTESTEXAMPLE00000', configuration_set: 'tenant-set', tenant_name: 'acme-ses-tenant', endpoint: ses.url } },
      'on-postmark': { ...common, provider: 'postmark', api_key: PM_TOKEN, provider_settings: { message_stream: 'notifications', base_url: postmark.url } },
      'on-resend': { ...common, provider: 'resend', api_key: RS_KEY, provider_settings: { base_url: resend.url } },
      'on-smtp': { ...common, provider: 'smtp', api_key: SMTP_PASS, provider_settings: { host: '127.0.0.1', port: smtp.port, username: 'mailer', require_tls: false } },
    };
    const sql = db.worker(2);
    for (const [tenant, s] of Object.entries(settingsFor)) await putSettings(sql, { current: KEY }, tenant, s);
    worker = await startTestWorker(db, logs.logger);
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([sendgrid.close(), ses.close(), postmark.close(), resend.close(), smtp.close()]);
    await db.drop();
  });
  beforeEach(() => {
    ses.respond = postmark.respond = resend.respond = undefined;
    smtp.rejectRecipient = undefined;
  });

  const send = (tenant: string, id: string, data = taskData({ task_id: `task-${id}` })) => post(worker.url, binaryEvent({ tenant, id, data }));

  it('SES v2: From, To, Reply-To, subject, bodies, tags, configuration set, SES tenant and the signed access key', async () => {
    expect((await send('on-ses', 'ses-1')).status).toBe(202);
    const r = ses.accepted.at(-1)!;
    const b = r.body as any;
    expect(b.FromEmailAddress).toBe('Acme Agents <noreply@acme.example>');
    expect(b.Destination.ToAddresses).toEqual(['owner@customer.example']);
    expect(b.ReplyToAddresses).toEqual(['reply+task-ses-1@replies.acme.example']);
    expect(b.Content.Simple.Subject.Data).toBe('Task completed: Summarise the quarterly report');
    expect(b.Content.Simple.Body.Text.Data).toContain('Revenue grew <b>12%</b>.');
    expect(b.Content.Simple.Body.Html.Data).toContain('Revenue grew &lt;b&gt;12%&lt;/b&gt;.');
    expect(b.Content.Simple.Headers).toEqual(expect.arrayContaining([{ Name: 'X-Tenant-ID', Value: 'on-ses' }]));
    expect(b.EmailTags).toEqual([{ Name: 'tenant_id', Value: 'on-ses' }, { Name: 'event_id', Value: 'ses-1' }]);
    expect(b.ConfigurationSetName).toBe('tenant-set');
    expect(b.TenantName).toBe('acme-ses-tenant');
    expect(String(r.headers.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDTESTEXAMPLE00000\/\d{8}\/eu-west-1\/ses\/aws4_request/);
    const [row] = await db.admin()`SELECT provider, message_id, status FROM email_deliveries WHERE event_id = 'ses-1'`;
    expect(row).toMatchObject({ provider: 'ses', status: 'sent' });
    expect(row!.message_id).toMatch(/^ses-/);
  });

  it('Postmark: server token, From, To, Reply-To, subject, bodies, metadata, tag and message stream', async () => {
    expect((await send('on-postmark', 'pm-1')).status).toBe(202);
    const r = postmark.accepted.at(-1)!;
    const b = r.body as any;
    expect(r.headers['x-postmark-server-token']).toBe(PM_TOKEN);
    expect(b).toMatchObject({ From: 'Acme Agents <noreply@acme.example>', To: 'owner@customer.example', ReplyTo: 'reply+task-pm-1@replies.acme.example', Subject: 'Task completed: Summarise the quarterly report', Tag: 'tenant-email-worker', MessageStream: 'notifications', Metadata: { tenant_id: 'on-postmark', event_id: 'pm-1' } });
    expect(b.TextBody).toContain('Revenue grew <b>12%</b>.');
    expect(b.HtmlBody).toContain('&lt;b&gt;12%');
    expect(b.Headers).toEqual(expect.arrayContaining([{ Name: 'X-Tenant-ID', Value: 'on-postmark' }]));
  });

  it('Resend: bearer key, Idempotency-Key from the ledger key, From, To, Reply-To, subject, bodies and tags', async () => {
    expect((await send('on-resend', 'rs-1')).status).toBe(202);
    const r = resend.accepted.at(-1)!;
    const b = r.body as any;
    expect(r.headers.authorization).toBe(`Bearer ${RS_KEY}`);
    expect(r.headers['idempotency-key']).toBe('on-resend//codetether/a2a/rs-1');
    expect(b).toMatchObject({ from: 'Acme Agents <noreply@acme.example>', to: ['owner@customer.example'], reply_to: 'reply+task-rs-1@replies.acme.example', subject: 'Task completed: Summarise the quarterly report' });
    expect(b.text).toContain('Revenue grew <b>12%</b>.');
    expect(b.tags).toEqual([{ name: 'tenant_id', value: 'on-resend' }, { name: 'event_id', value: 'rs-1' }]);
    expect(b.headers).toMatchObject({ 'X-Tenant-ID': 'on-resend' });
  });

  it('SMTP: authenticates as the tenant user and delivers From, To, Reply-To, subject, both parts and X-Tenant-ID', async () => {
    expect((await send('on-smtp', 'smtp-1')).status).toBe(202);
    const m = smtp.received.at(-1)!;
    expect(m.username).toBe('mailer');
    expect(m.envelope).toEqual({ from: 'noreply@acme.example', to: ['owner@customer.example'] });
    expect(m.parsed.from?.value).toEqual([{ address: 'noreply@acme.example', name: 'Acme Agents' }]);
    expect(m.parsed.replyTo?.value[0]?.address).toBe('reply+task-smtp-1@replies.acme.example');
    expect(m.parsed.subject).toBe('Task completed: Summarise the quarterly report');
    expect(m.parsed.text).toContain('Revenue grew <b>12%</b>.');
    expect(m.parsed.html).toContain('&lt;b&gt;12%');
    expect(m.parsed.headers.get('x-tenant-id')).toBe('on-smtp');
    expect(m.parsed.headers.get('x-event-id')).toBe('smtp-1');
  });

  it('two events whose (source, id) joined with "/" look alike get two keys: two Resend Idempotency-Keys, two SMTP Message-IDs', async () => {
    const pair = [{ source: '/svc', id: 'a/b' }, { source: '/svc/a', id: 'b' }];
    for (const tenant of ['on-resend', 'on-smtp']) {
      for (const p of pair) expect((await post(worker.url, binaryEvent({ tenant, id: p.id, source: p.source, data: taskData({ task_id: `task-${tenant}-${p.source}` }) }))).status).toBe(202);
    }
    const keys = resend.accepted.slice(-2).map((r) => r.headers['idempotency-key']);
    expect(new Set(keys).size).toBe(2);
    const ids = smtp.received.slice(-2).map((m) => m.parsed.messageId);
    expect(ids.every(Boolean)).toBe(true);
    expect(new Set(ids).size).toBe(2);
  });

  it('SendGrid keeps working', async () => {
    expect((await send('on-sendgrid', 'sg-1')).status).toBe(202);
    expect(sendgrid.emails.at(-1)!.body.custom_args).toEqual({ tenant_id: 'on-sendgrid', event_id: 'sg-1' });
  });

  const awsError = (status: number, type: string): FakeResponse => ({ status, headers: { 'x-amzn-ErrorType': `${type}:http://internal.amazon.com/` }, body: { message: 'from the fake' } });
  const pmError = (status: number, code: number): FakeResponse => ({ status, body: { ErrorCode: code, Message: 'from the fake' } });
  const rsError = (status: number, name: string, headers: Record<string, string> = {}): FakeResponse => ({ status, headers, body: { statusCode: status, name, message: 'from the fake' } });

  type Row = [string, string, FakeResponse | number, number, string, number?];
  const rows: Row[] = [
    ['ses', 'MessageRejected', awsError(400, 'MessageRejected'), 422, 'provider_rejected'],
    ['ses', 'BadRequestException', awsError(400, 'BadRequestException'), 422, 'provider_rejected'],
    ['ses', 'NotFoundException', awsError(404, 'NotFoundException'), 422, 'provider_rejected'],
    ['ses', 'MailFromDomainNotVerifiedException', awsError(400, 'MailFromDomainNotVerifiedException'), 422, 'provider_forbidden'],
    ['ses', 'AccountSuspendedException', awsError(400, 'AccountSuspendedException'), 422, 'provider_forbidden'],
    ['ses', 'SendingPausedException', awsError(400, 'SendingPausedException'), 422, 'provider_forbidden'],
    ['ses', 'TooManyRequestsException', awsError(429, 'TooManyRequestsException'), 429, 'provider_rate_limited'],
    ['ses', 'LimitExceededException', awsError(400, 'LimitExceededException'), 429, 'provider_rate_limited'],
    ['ses', 'a 500', awsError(500, 'InternalFailure'), 503, 'provider_unavailable'],
    ['ses', 'a signature error', awsError(403, 'UnrecognizedClientException'), 422, 'provider_auth_failed'],
    ['ses', 'a dropped connection', { reset: true }, 503, 'provider_network'],
    ['postmark', 'ErrorCode 10 (bad token)', pmError(401, 10), 422, 'provider_auth_failed'],
    ['postmark', 'ErrorCode 300 (invalid request)', pmError(422, 300), 422, 'provider_rejected'],
    ['postmark', 'ErrorCode 406 (inactive recipient)', pmError(422, 406), 422, 'provider_rejected'],
    ['postmark', 'ErrorCode 400 (sender signature missing)', pmError(422, 400), 422, 'provider_forbidden'],
    ['postmark', 'a 429', pmError(429, 0), 429, 'provider_rate_limited'],
    ['postmark', 'a 500', pmError(500, 0), 503, 'provider_unavailable'],
    ['postmark', 'ErrorCode 100 (maintenance)', pmError(503, 100), 503, 'provider_unavailable'],
    ['postmark', 'a dropped connection', { reset: true }, 503, 'provider_network'],
    ['resend', 'a validation error', rsError(422, 'validation_error'), 422, 'provider_rejected'],
    ['resend', 'an invalid key', rsError(403, 'invalid_api_key'), 422, 'provider_auth_failed'],
    ['resend', 'a missing key', rsError(401, 'missing_api_key'), 422, 'provider_auth_failed'],
    ['resend', 'a 429 with retry-after', rsError(429, 'rate_limit_exceeded', { 'retry-after': '7' }), 429, 'provider_rate_limited', 7],
    ['resend', 'a 500', rsError(500, 'application_error'), 503, 'provider_unavailable'],
    ['resend', 'a dropped connection (null status)', { reset: true }, 503, 'provider_network'],
    ['smtp', 'a 550 recipient rejection', 550, 422, 'provider_rejected'],
    ['smtp', 'a 451 deferral', 451, 503, 'provider_deferred', 60],
  ];

  // Every row padded to six entries: jest would take a missing sixth argument for a done callback.
  it.each(rows.map((r) => [r[0], r[1], r[2], r[3], r[4], r[5]] as Row))('%s %s → %#: status, code, ledger and quota refund', async (provider, _name, fake, status, code, retryAfter) => {
    const tenant = `on-${provider}`;
    const fakes: Record<string, FakeApi> = { ses, postmark, resend };
    if (provider === 'smtp') smtp.rejectRecipient = fake as number;
    else fakes[provider]!.respond = () => fake as FakeResponse;
    const id = `err-${provider}-${_name.replace(/\W+/g, '-')}`;
    const [u0] = await db.admin()`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = ${tenant}`;
    const res = await send(tenant, id);
    expect({ status: res.status, code: JSON.parse(res.text || '{}').code }).toEqual({ status, code });
    if (retryAfter !== undefined) expect(res.headers.get('retry-after')).toBe(String(retryAfter));
    const [row] = await db.admin()`SELECT status, error_code, provider FROM email_deliveries WHERE tenant_id = ${tenant} AND event_id = ${id}`;
    expect(row).toEqual({ status: 'failed', error_code: code, provider });
    const [u1] = await db.admin()`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = ${tenant}`;
    expect(u1!.n).toBe(u0!.n);
  });

  it('SMTP: a wrong password is provider_auth_failed, and an unreachable server provider_network', async () => {
    const sql = db.worker(1);
    await putSettings(sql, { current: KEY }, 'smtp-badpass', { ...settingsFor['on-smtp']!, api_key: 'wrong-password' });
    const bad = await send('smtp-badpass', 'smtp-badpass-1');
    expect([bad.status, JSON.parse(bad.text).code]).toEqual([422, 'provider_auth_failed']);
    await putSettings(sql, { current: KEY }, 'smtp-down', { ...settingsFor['on-smtp']!, provider_settings: { host: '127.0.0.1', port: await freePort(), username: 'mailer', require_tls: false } });
    const down = await send('smtp-down', 'smtp-down-1');
    expect([down.status, JSON.parse(down.text).code]).toEqual([503, 'provider_network']);
  });

  describe('fallback across providers', () => {
    beforeAll(async () => {
      await putSettings(db.worker(1), { current: KEY }, 'pm-then-rs', { ...settingsFor['on-postmark']!, fallback: { provider: 'resend', api_key: RS_KEY, provider_settings: { base_url: resend.url } } });
    });

    it.each([
      ['a 503 from Postmark', pmError(503, 0)],
      ['a bad token at Postmark', pmError(401, 10)],
    ] as Array<[string, FakeResponse]>)('sends through Resend exactly once on %s, and the ledger says so', async (name, fake) => {
      postmark.respond = () => fake;
      const id = `fo-${name.replace(/\W+/g, '-')}`;
      const before = resend.accepted.length;
      expect((await send('pm-then-rs', id)).status).toBe(202);
      expect((await send('pm-then-rs', id)).status).toBe(202);
      expect(resend.accepted.length - before).toBe(1);
      const [row] = await db.admin()`SELECT provider, status FROM email_deliveries WHERE event_id = ${id}`;
      expect(row).toEqual({ provider: 'resend', status: 'sent' });
    });

    it('does not fail over when Postmark rejects the recipient', async () => {
      postmark.respond = () => pmError(422, 406);
      const before = resend.accepted.length;
      const res = await send('pm-then-rs', 'fo-recipient');
      expect([res.status, JSON.parse(res.text).code]).toEqual([422, 'provider_rejected']);
      expect(resend.accepted.length).toBe(before);
    });
  });

  it('uses a changed credential on the next event', async () => {
    const sql = db.worker(1);
    await putSettings(sql, { current: KEY }, 'rotating', { ...settingsFor['on-resend']!, api_key: 're_first_key_000000000000' });
    await send('rotating', 'rot-a');
    expect(resend.accepted.at(-1)!.headers.authorization).toBe('Bearer re_first_key_000000000000');
    await putSettings(sql, { current: KEY }, 'rotating', { ...settingsFor['on-resend']!, api_key: 're_second_key_00000000000' });
    await send('rotating', 'rot-b');
    expect(resend.accepted.at(-1)!.headers.authorization).toBe('Bearer re_second_key_00000000000');
  });

  it('keeps every provider credential out of answers and logs', () => {
    const text = logs.text();
    for (const secret of [SES_SECRET, PM_TOKEN, RS_KEY, SMTP_PASS, 'CANARY-sendgrid', CANARY_DB_KEY]) expect(text).not.toContain(secret);
  });
});
