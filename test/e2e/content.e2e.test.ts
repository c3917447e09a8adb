import { Egress } from '../../src/net/egress';
import { SignJWT } from 'jose';
import { makeApp } from '../../src/app';
import { keyId } from '../../src/config';
import { createDeliveryStore } from '../../src/db/deliveries';
import { getTemplate, putTemplate } from '../../src/db/templates';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { ProviderClients } from '../../src/providers/clients';
import { createEventProcessor } from '../../src/worker/processEvent';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import type { RecordedRequest } from '../helpers/fakeApi';
import { POSTMARK_ACCOUNT_TOKEN, startDomainFake, type DomainFake } from '../helpers/fakeDomains';
import { startFakeSmtp, type FakeSmtp } from '../helpers/fakeSmtp';
import { captureLogs } from '../helpers/logCapture';
import { poolingWays, workerDatabase } from '../helpers/pgbouncer';
import { CANARY_DB_KEY, startTestWorker, testConfig } from '../helpers/worker';

const SECRET = 'admin-jwt-secret-for-content-tests-0123456789';
const PATTERN = 'noreply@{tenant}.mail.platform.example';

/**
 * Email content end to end: templates, preview, sender tiers and domains through the admin API, and
 * what the worker then sends, against the real SDKs and local fakes of each provider.
 */
// Directly and through PgBouncer in transaction mode (issue 22): templates, senders and the admin API behind a pooler.
describe.each(poolingWays())('email content and sender identity, end to end, %s', (_way, pooled) => {
  let db: TestDatabase;
  let through: Awaited<ReturnType<typeof workerDatabase>>;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let platform: string;
  let acmeAdmin: string;
  const logs = captureLogs();
  const bodies: string[] = [];

  const call = async (method: string, path: string, body?: unknown, opts: { auth?: string; accept?: string } = {}) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), {
      method,
      headers: {
        authorization: `Bearer ${opts.auth ?? platform}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(opts.accept ? { accept: opts.accept } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    bodies.push(text);
    const isJson = (res.headers.get('content-type') ?? '').includes('json');
    return { status: res.status, headers: res.headers, text, json: isJson && text ? JSON.parse(text) : null };
  };
  const send = async (tenant: string, id: string, data: Record<string, unknown> = taskData()) => {
    const r = await post(worker.url, binaryEvent({ tenant, id, data }));
    bodies.push(r.text);
    return r;
  };
  const ledger = async (eventId: string) => {
    const [row] = await db.admin()`
      SELECT status, error_code, provider, template_source, template_version, sender_tier, sender_note
      FROM email_deliveries WHERE event_id = ${eventId}`;
    return row;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox();
    through = await workerDatabase(db, pooled);
    worker = await startTestWorker(through, logs.logger, {
      ...through.env,
      ADMIN_JWT_SECRET: SECRET,
      EMAIL_TENANT_FROM_PATTERN: PATTERN,
      SENDER_DOMAIN_POLICY: 'verified',
    });
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
    platform = await sign({ role: 'platform_admin', sub: 'ops' });
    acmeAdmin = await sign({ role: 'tenant_admin', tenant_id: 'acme' });
    const sg = (from: string | undefined, extra: Record<string, unknown> = {}) => ({
      provider: 'sendgrid', api_key: 'SG.CANARY-content-key-000000', ...(from ? { from_email: from } : {}), provider_settings: { base_url: mailbox.url }, daily_limit: 100, ...extra,
    });
    expect((await call('PUT', 'acme/email-settings', sg(undefined, { from_name: 'Acme', list_unsubscribe: 'https://acme.example/unsubscribe?u=1', extra_headers: { 'X-Campaign': 'tasks', 'Auto-Submitted': 'auto-generated' } }))).status).toBe(201);
    expect((await call('PUT', 'globex/email-settings', sg(undefined))).status).toBe(201);
  });
  afterAll(async () => {
    await worker.shutdown();
    await through.stop();
    await mailbox.close();
    await db.drop();
  });

  describe('templates', () => {
    it('refuses a template that does not compile, with the part, line and reason, and stores nothing', async () => {
      const r = await call('PUT', 'acme/email-templates/codetether.task.created', { subject: 'ok', html: '<h1>{{task_id}}</h1>\n{{#if output}}\n{{{output_html}}}\n' });
      expect(r.status).toBe(400);
      expect(r.json.code).toBe('invalid_request');
      expect(r.json.issues).toEqual([{ path: 'html', line: 2, column: 1, message: '{{#if}} is not closed (expected {{/if}})' }]);
      const bad = await call('PUT', 'acme/email-templates/codetether.task.created', { html: '<p>{{{prompt}}}</p>' });
      expect([bad.status, bad.json.issues[0].path, bad.json.issues[0].line]).toEqual([400, 'html', 1]);
      const rows = await db.admin()`SELECT 1 FROM tenant_email_templates`;
      expect(rows).toHaveLength(0);
    });

    it.each([
      ['no part', {}],
      ['an unknown field', { subject: 'x', body: 'y' }],
      ['a part that is not a string', { subject: 7 }],
    ])('refuses a body with %s', async (_n, body) => {
      const r = await call('PUT', 'acme/email-templates/codetether.task.created', body);
      expect([r.status, r.json.code]).toEqual([400, 'invalid_request']);
    });

    it('refuses an event type the worker does not handle', async () => {
      const r = await call('PUT', 'acme/email-templates/other.type', { subject: 'x' });
      expect(r.status).toBe(400);
      expect(r.json.issues[0]).toMatchObject({ path: 'event_type', message: expect.stringContaining('EVENT_TYPES') });
    });

    it("sends the tenant's template to that tenant's recipients only; others get the built-in one", async () => {
      const put = await call('PUT', 'acme/email-templates/codetether.task.created', {
        subject: 'Acme: {{task_id}} {{status}}',
        html: '<div class="acme">{{prompt}}</div>{{{output_html}}}',
      }, { auth: acmeAdmin });
      expect(put.status).toBe(201);
      expect(put.json).toMatchObject({ tenant_id: 'acme', event_type: 'codetether.task.created', text: null, version: expect.any(Number) });

      // globex cannot see it (another tenant's admin is refused before RLS, and RLS hides it anyway).
      expect((await call('GET', 'acme/email-templates/codetether.task.created', undefined, { auth: acmeAdmin })).status).toBe(200);
      expect((await call('GET', 'globex/email-templates/codetether.task.created', undefined, { auth: acmeAdmin })).status).toBe(403);
      expect((await call('GET', 'globex/email-templates/codetether.task.created')).json.code).toBe('template_not_found');

      expect((await send('acme', 'tpl-acme', taskData({ task_id: 'task-a1', prompt: 'Fix <the> bug' }))).status).toBe(202);
      expect((await send('globex', 'tpl-globex', taskData({ task_id: 'task-g1', prompt: 'Fix the bug' }))).status).toBe(202);
      const [acme, globex] = ['tpl-acme', 'tpl-globex'].map((id) => mailbox.emails.find((e) => e.body.custom_args?.event_id === id)!.body);
      expect(acme!.subject).toBe('Acme: task-a1 completed');
      expect(acme!.content.find((c) => c.type === 'text/html')!.value).toBe('<div class="acme">Fix &lt;the&gt; bug</div><h2>Summary</h2>\n<p>Revenue grew &lt;b&gt;12%&lt;/b&gt;.</p>\n');
      // The text part was not overridden: the built-in one.
      expect(acme!.content.find((c) => c.type === 'text/plain')!.value).toContain('Task: task-a1');
      expect(globex!.subject).toBe('Task completed: Fix the bug');
      expect(await ledger('tpl-acme')).toMatchObject({ status: 'sent', template_source: 'tenant', template_version: String(put.json.version) });
      expect(await ledger('tpl-globex')).toMatchObject({ status: 'sent', template_source: 'builtin', template_version: null });
    });

    it('picks up a new version at once, and the built-in one after DELETE', async () => {
      const v2 = await call('PUT', 'acme/email-templates/codetether.task.created', { subject: 'v2 {{task_id}}' });
      expect(v2.status).toBe(200);
      await send('acme', 'tpl-v2', taskData({ task_id: 'task-v2' }));
      expect(mailbox.emails.at(-1)!.body.subject).toBe('v2 task-v2');
      expect((await ledger('tpl-v2'))!.template_version).toBe(String(v2.json.version));

      const list = await call('GET', 'acme/email-templates');
      expect(list.json.templates).toEqual([{ event_type: 'codetether.task.created', version: v2.json.version, updated_at: expect.any(String) }]);
      expect((await call('DELETE', 'acme/email-templates/codetether.task.created')).status).toBe(204);
      expect((await call('DELETE', 'acme/email-templates/codetether.task.created')).json.code).toBe('template_not_found');
      await send('acme', 'tpl-deleted', taskData({ task_id: 'task-d', prompt: 'Deleted' }));
      expect(mailbox.emails.at(-1)!.body.subject).toBe('Task completed: Deleted');
      expect(await ledger('tpl-deleted')).toMatchObject({ template_source: 'builtin' });
    });

    it('falls back to the built-in template when the tenant template fails at render time, and the ledger says so', async () => {
      // Compiles, but this event has no `reviewer`: the subject renders empty.
      expect((await call('PUT', 'acme/email-templates/codetether.task.created', { subject: '{{reviewer}}', text: 'custom text' })).status).toBe(201);
      const r = await send('acme', 'tpl-fallback', taskData({ task_id: 'task-f', prompt: 'Render me' }));
      expect(r.status).toBe(202);
      const email = mailbox.emails.at(-1)!.body;
      expect(email.subject).toBe('Task completed: Render me');
      expect(email.content.find((c) => c.type === 'text/plain')!.value).toContain('Task: task-f');
      expect(await ledger('tpl-fallback')).toMatchObject({ status: 'sent', template_source: 'builtin_fallback' });
      expect(logs.lines.some((l) => l.includes('"template failed') || l.includes("tenant's template failed"))).toBe(true);
      await call('DELETE', 'acme/email-templates/codetether.task.created');
    });
  });

  it("one tenant's template that would render 900 MB is not rendered: that event goes out with the built-in template, and the worker stays responsive", async () => {
    expect((await call('PUT', 'globex/email-templates/codetether.task.created', { html: '{{output}}'.repeat(9000) })).status).toBe(201);
    const r = await send('globex', 'budget-1', taskData({ task_id: 'task-budget', metadata: { output: 'o'.repeat(100_000) } }));
    expect(r.status).toBe(202);
    expect(await ledger('budget-1')).toMatchObject({ status: 'sent', template_source: 'builtin_fallback' });
    expect(logs.text()).toMatch(/html: could render to \d+ characters with this event's data/);
    expect((await fetch(new URL('/healthz', worker.url))).status).toBe(200);
    expect((await call('DELETE', 'globex/email-templates/codetether.task.created')).status).toBe(204);
  });

  it('compiles a template once per version: the text is read on a cache miss only', async () => {
    const sql = db.worker(2);
    const config = testConfig(db, { EMAIL_TENANT_FROM_PATTERN: PATTERN });
    const loads: number[] = [];
    const processEvent = createEventProcessor({
      config,
      deliveries: createDeliveryStore(sql, { keys: { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, leaseSeconds: 60, globalDailyLimit: null }),
      providers: new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: true, egress: new Egress({ allowPrivate: true, allowedHosts: [] }) }),
      loadTemplate: async (t, type) => {
        const stored = await getTemplate(sql, t, type);
        loads.push(stored?.version ?? -1);
        return stored;
      },
    });
    const app = makeApp({ config, logger: logs.logger, state: { draining: false, inFlight: 0 }, processEvent, checkReady: async () => true });
    const server = app.listen(0);
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    try {
      const v1 = (await putTemplate(sql, 'globex', 'codetether.task.created', { subject: 'cached v1 {{task_id}}' })).template.version;
      for (let i = 0; i < 3; i++) expect((await post(url, binaryEvent({ tenant: 'globex', id: `cache-1-${i}` }))).status).toBe(202);
      const v2 = (await putTemplate(sql, 'globex', 'codetether.task.created', { subject: 'cached v2 {{task_id}}' })).template.version;
      for (let i = 0; i < 3; i++) expect((await post(url, binaryEvent({ tenant: 'globex', id: `cache-2-${i}` }))).status).toBe(202);
      expect(loads).toEqual([v1, v2]);
      expect(mailbox.emails.at(-1)!.body.subject).toMatch(/^cached v2 /);
    } finally {
      server.close();
      await db.admin()`DELETE FROM tenant_email_templates WHERE tenant_id = 'globex'`;
    }
  });

  describe('preview', () => {
    it('renders a proposed template with sample data, sending nothing', async () => {
      const before = mailbox.emails.length;
      const r = await call('POST', 'acme/email-templates/codetether.task.created/preview', { template: { subject: 'Preview {{task_id}}', html: '<main>{{{output_html}}}</main>' } });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ template: 'body', version: null, subject: 'Preview task-preview-0001' });
      expect(r.json.html).toMatch(/^<main><h2>Summary<\/h2>/);
      expect(r.json.text).toContain('Task: task-preview-0001');
      expect(r.json.from).toEqual({ email: 'noreply@acme.mail.platform.example', name: 'Acme', tier: 'platform', note: null });
      expect(mailbox.emails.length).toBe(before);
      expect(await db.admin()`SELECT 1 FROM email_deliveries WHERE event_id = 'preview'`).toHaveLength(0);
    });

    it('renders the saved template with given data, or the built-in one', async () => {
      expect((await call('POST', 'acme/email-templates/codetether.task.created/preview', { data: { task_id: 't-9', prompt: 'Given' } })).json).toMatchObject({ template: 'builtin', subject: 'Task completed: Given' });
      const saved = await call('PUT', 'acme/email-templates/codetether.task.created', { subject: 'Saved {{task_id}}' });
      const r = await call('POST', 'acme/email-templates/codetether.task.created/preview', { data: { task_id: 't-9' } });
      expect(r.json).toMatchObject({ template: 'tenant', version: saved.json.version, subject: 'Saved t-9' });
      await call('DELETE', 'acme/email-templates/codetether.task.created');
    });

    it('answers the HTML alone, under a sandboxing CSP, for Accept: text/html', async () => {
      const r = await call('POST', 'acme/email-templates/codetether.task.created/preview', { data: { task_id: 't-1', metadata: { output: 'hi <script>alert(1)</script> [x](javascript:alert(1))' } } }, { accept: 'text/html' });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^text\/html/);
      expect(r.headers.get('content-security-policy')).toMatch(/^sandbox; default-src 'none'/);
      expect(r.text).toContain('hi');
      expect(r.text).toContain('hi &lt;script&gt;alert(1)&lt;/script&gt;');
      expect(r.text).not.toMatch(/<script|href="javascript:/i);
    });

    it('reports a template that fails on the data, and bad data', async () => {
      const fail = await call('POST', 'acme/email-templates/codetether.task.created/preview', { template: { text: '{{date prompt}}' } });
      expect([fail.status, fail.json.code]).toEqual([422, 'template_render_failed']);
      expect(fail.json.message).toMatch(/date: the value is not a date/);
      const bad = await call('POST', 'acme/email-templates/codetether.task.created/preview', { data: { prompt: 'no task id' } });
      expect([bad.status, bad.json.code, bad.json.issues[0].path]).toEqual([400, 'invalid_request', 'data.task_id']);
    });
  });

  describe('headers', () => {
    it('carries X-Tenant-ID, a stable reference, List-Unsubscribe and the allowed extra headers', async () => {
      await send('acme', 'hdr-1', taskData({ task_id: 'task-h' }));
      const h = mailbox.emails.at(-1)!.body.headers!;
      expect(h).toMatchObject({
        'X-Tenant-ID': 'acme',
        'X-Event-ID': 'hdr-1',
        'X-Entity-Ref-ID': expect.stringMatching(/^<[0-9a-f]{32}@acme\.mail\.platform\.example>$/),
        'List-Unsubscribe': '<https://acme.example/unsubscribe?u=1>',
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
        'X-Campaign': 'tasks',
        'Auto-Submitted': 'auto-generated',
      });
      // globex configured no List-Unsubscribe: none is sent.
      await send('globex', 'hdr-2');
      expect(Object.keys(mailbox.emails.at(-1)!.body.headers!)).not.toContain('List-Unsubscribe');
    });

    it.each([
      ['a From header', { extra_headers: { From: 'ceo@bank.example' } }, 'extra_headers.From'],
      ['a Bcc header', { extra_headers: { bcc: 'all@example.com' } }, 'extra_headers.bcc'],
      ['our own X-Tenant-ID', { extra_headers: { 'x-tenant-id': 'globex' } }, 'extra_headers.x-tenant-id'],
      ['CR/LF in a value', { extra_headers: { 'X-Note': 'a\r\nBcc: all@example.com' } }, 'extra_headers.X-Note'],
      ['a colon in a name', { extra_headers: { 'X-A: b\r\nBcc': 'x' } }, 'extra_headers.X-A: b\r\nBcc'],
      ['CR/LF in List-Unsubscribe', { list_unsubscribe: 'https://a.example/u\r\nBcc: x@y.example' }, 'list_unsubscribe'],
      ['a javascript: List-Unsubscribe', { list_unsubscribe: 'javascript:alert(1)' }, 'list_unsubscribe'],
    ])('refuses %s and keeps the stored settings', async (_n, extra, path) => {
      const before = await call('GET', 'globex/email-settings');
      const r = await call('PUT', 'globex/email-settings', { provider: 'sendgrid', provider_settings: { base_url: mailbox.url }, daily_limit: 100, ...extra });
      expect([r.status, r.json.code]).toEqual([400, 'invalid_request']);
      expect(r.json.issues.map((i: { path: string }) => i.path)).toContain(path);
      expect((await call('GET', 'globex/email-settings')).json).toEqual(before.json);
    });
  });

  describe('sender domains, against each provider', () => {
    const fakes: Record<string, DomainFake> = {};
    let smtp: FakeSmtp;
    beforeAll(async () => {
      for (const p of ['sendgrid', 'resend', 'ses', 'postmark'] as const) fakes[p] = await startDomainFake(p);
      smtp = await startFakeSmtp({ mailer: 'CANARY-SMTP-PASS-content' });
    });
    afterAll(async () => {
      await Promise.all([...Object.values(fakes).map((f) => f.close()), smtp.close()]);
    });

    const settingsFor = (p: string, url: string) =>
      p === 'ses'
        ? { provider: 'ses', api_key: 'CANARY-SES-SECRET-content', provider_settings: { region: 'eu-west-1', access_key_id: 'AKIDCONTENTTEST00000', endpoint: url } }
        : p === 'postmark'
          ? { provider: 'postmark', api_key: 'CANARY-PM-SERVER-TOKEN-content', provider_settings: { base_url: url } }
          : p === 'resend'
            ? { provider: 'resend', api_key: 're_CANARY_content_key_0000', provider_settings: { base_url: url } }
            : { provider: 'sendgrid', api_key: 'SG.CANARY-content-domains-000', provider_settings: { base_url: url } };
    const sentFrom = (p: string, r: RecordedRequest): string => {
      const b = r.body as Record<string, any>;
      if (p === 'sendgrid') return b.from.email;
      if (p === 'resend') return b.from;
      if (p === 'ses') return b.FromEmailAddress;
      return b.From;
    };
    const sendPath: Record<string, string> = { sendgrid: '/v3/mail/send', resend: '/emails', ses: '/v2/email/outbound-emails', postmark: '/email' };
    const lastFrom = (p: string) => sentFrom(p, fakes[p]!.api.accepted.filter((r) => r.path === sendPath[p]).at(-1)!);

    it.each(['sendgrid', 'resend', 'ses', 'postmark'])('%s: register → DNS records → verify → sends from the custom domain; platform tier until then', async (p) => {
      const tenant = `brand-${p}`;
      const domain = `mail.${p}-brand.example`;
      const fake = fakes[p]!;
      const token = p === 'postmark' ? { account_token: POSTMARK_ACCOUNT_TOKEN } : {};
      expect((await call('PUT', `${tenant}/email-settings`, { ...settingsFor(p, fake.url), from_email: `hello@${domain}`, from_name: 'Brand', daily_limit: 100 })).status).toBe(201);

      // Not registered: the platform tier sends, and the ledger says why.
      expect((await send(tenant, `${p}-d1`)).status).toBe(202);
      expect(lastFrom(p)).toContain(`noreply@${tenant}.mail.platform.example`);
      expect(await ledger(`${p}-d1`)).toMatchObject({ status: 'sent', sender_tier: 'platform', sender_note: 'domain_not_registered' });

      const reg = await call('POST', `${tenant}/email-domains`, { domain: domain.toUpperCase(), ...token });
      expect(reg.status).toBe(201);
      expect(reg.json).toMatchObject({ domain, provider: p, status: 'pending', verified_at: null });
      expect(reg.json.dns_records.length).toBeGreaterThanOrEqual(1);
      for (const rec of reg.json.dns_records) {
        expect(rec).toMatchObject({ type: expect.stringMatching(/^(CNAME|TXT|MX)$/), name: expect.stringContaining(domain), value: expect.any(String) });
      }
      expect(fake.domains()).toEqual([domain]);
      // Registering again is not an error: the provider's existing domain is used.
      expect((await call('POST', `${tenant}/email-domains`, { domain, ...token })).status).toBe(200);
      expect(fake.domains()).toEqual([domain]);

      // Registered but DNS not published: still the platform tier.
      expect((await call('POST', `${tenant}/email-domains/${domain}/verify`, token)).json.status).toBe('pending');
      await send(tenant, `${p}-d2`);
      expect(await ledger(`${p}-d2`)).toMatchObject({ sender_tier: 'platform', sender_note: 'domain_pending' });

      fake.publish(domain);
      const verified = await call('POST', `${tenant}/email-domains/${domain}/verify`, token);
      expect(verified.status).toBe(200);
      expect(verified.json).toMatchObject({ domain, status: 'verified', verified_at: expect.any(String), checked_at: expect.any(String) });
      expect((await call('GET', `${tenant}/email-domains`)).json.domains).toEqual([verified.json]);

      // Verified: the worker sends from the tenant's own address.
      await send(tenant, `${p}-d3`);
      expect(lastFrom(p)).toContain(`hello@${domain}`);
      expect(await ledger(`${p}-d3`)).toMatchObject({ status: 'sent', sender_tier: 'custom', sender_note: null });
      const preview = await call('POST', `${tenant}/email-templates/codetether.task.created/preview`, {});
      expect(preview.json.from).toEqual({ email: `hello@${domain}`, name: 'Brand', tier: 'custom', note: null });

      // Forgotten here: back to the platform tier.
      expect((await call('DELETE', `${tenant}/email-domains/${domain}`)).status).toBe(204);
      await send(tenant, `${p}-d4`);
      expect(await ledger(`${p}-d4`)).toMatchObject({ sender_tier: 'platform', sender_note: 'domain_not_registered' });
    });

    it('Postmark needs the account token for domains, and never keeps it', async () => {
      const r = await call('POST', 'brand-postmark/email-domains', { domain: 'other.example' });
      expect([r.status, r.json.code]).toEqual([400, 'account_token_required']);
      const wrong = await call('POST', 'brand-postmark/email-domains', { domain: 'other.example', account_token: 'not-the-token' });
      expect(wrong.json.code).toBe('provider_auth_failed');
      const dump = JSON.stringify(await db.admin()`SELECT * FROM tenant_email_domains`) + JSON.stringify(await db.admin()`SELECT * FROM tenant_email_settings`);
      expect(dump).not.toContain(POSTMARK_ACCOUNT_TOKEN);
    });

    it('says that SMTP has no domain API, and sends an SMTP tenant from its from_email', async () => {
      expect((await call('PUT', 'on-smtp/email-settings', {
        provider: 'smtp', api_key: 'CANARY-SMTP-PASS-content', from_email: 'ops@relay-brand.example', daily_limit: 10,
        provider_settings: { host: '127.0.0.1', port: smtp.port, username: 'mailer', require_tls: false },
      })).status).toBe(201);
      const r = await call('POST', 'on-smtp/email-domains', { domain: 'relay-brand.example' });
      expect([r.status, r.json.code]).toEqual([422, 'domain_api_unsupported']);
      expect((await send('on-smtp', 'smtp-d1')).status).toBe(202);
      expect(await ledger('smtp-d1')).toMatchObject({ status: 'sent', sender_tier: 'custom' });
      const msg = smtp.received.at(-1)!.parsed;
      expect(msg.from?.value[0]?.address).toBe('ops@relay-brand.example');
      // The Message-ID is the stable reference of the delivery (the same on a redelivery after a crash).
      expect(msg.messageId).toMatch(/^<[0-9a-f]{32}@relay-brand\.example>$/);
      expect(msg.headers.get('x-entity-ref-id')).toBe(msg.messageId);
    });

    it.each([
      ['no domain', {}, 'domain'],
      ['a bare word', { domain: 'localhost' }, 'domain'],
      ['an address', { domain: 'a@b.example' }, 'domain'],
      ['CR/LF', { domain: 'a.example\r\nx' }, 'domain'],
      ['an unknown field', { domain: 'a.example', dns: 1 }, '(body)'],
    ])('refuses a domain body with %s', async (_n, body, path) => {
      const r = await call('POST', 'brand-sendgrid/email-domains', body);
      expect([r.status, r.json.code]).toEqual([400, 'invalid_request']);
      expect(r.json.issues[0].path).toBe(path);
    });

    it('answers domain_not_found and settings_not_found', async () => {
      expect((await call('POST', 'brand-sendgrid/email-domains/nope.example/verify', {})).json.code).toBe('domain_not_found');
      expect((await call('GET', 'brand-sendgrid/email-domains/nope.example')).json.code).toBe('domain_not_found');
      expect((await call('POST', 'nobody/email-domains', { domain: 'x.example' })).json.code).toBe('settings_not_found');
    });
  });

  it('never shows a key, a password, the account token or DB_ENCRYPTION_KEY in logs or answers', () => {
    const all = logs.lines.join('\n') + bodies.join('\n');
    for (const canary of ['CANARY', POSTMARK_ACCOUNT_TOKEN, CANARY_DB_KEY]) expect(all).not.toContain(canary);
  });
});
