import { SignJWT } from 'jose';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { Egress, classifyAddress, refusalReason } from '../../src/net/egress';
import { ProviderClients } from '../../src/providers/clients';
import type { OutgoingEmail } from '../../src/providers/types';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { startFakeSmtp, type FakeSmtp } from '../helpers/fakeSmtp';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const SECRET = 'admin-jwt-secret-for-ssrf-tests-0123456789';
const SMTP_PASS = 'CANARY-SMTP-PASSWORD-ssrf-000111';

/** A resolver that answers from a table, the way a hostile DNS zone would. */
const zone = (table: Record<string, string[] | (() => string[])>) => async (host: string) => {
  const entry = table[host];
  if (!entry) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return typeof entry === 'function' ? entry() : entry;
};

describe('classifyAddress', () => {
  it.each([
    ['127.0.0.1', 'private'], ['10.1.2.3', 'private'], ['172.20.0.1', 'private'], ['192.168.1.1', 'private'], ['100.64.0.1', 'private'],
    ['::1', 'private'], ['[::1]', 'private'], ['fd00::1', 'private'], ['::ffff:127.0.0.1', 'private'], ['::ffff:7f00:1', 'private'],
    // Every IPv6 form that carries an IPv4 address, dotted or hex (64:ff9b::a00:1 is 10.0.0.1).
    ['64:ff9b::a00:1', 'private'], ['64:ff9b::7f00:1', 'private'], ['64:ff9b::127.0.0.1', 'private'], ['::127.0.0.1', 'private'], ['::7f00:1', 'private'],
    ['::ffff:0:7f00:1', 'private'], ['::ffff:0:127.0.0.1', 'private'], ['0:0:0:0:0:ffff:7f00:1', 'private'], ['::FFFF:127.0.0.1', 'private'],
    ['2002:7f00:1::', 'private'], ['2002:a9fe:a9fe::1', 'forbidden'], ['64:ff9b::a9fe:a9fe', 'forbidden'], ['::169.254.169.254', 'forbidden'], ['64:ff9b:1::a00:1', 'private'],
    ['2002:808:808::1', 'public'],
    ['169.254.169.254', 'forbidden'], ['fd00:ec2::254', 'forbidden'], ['fe80::1%eth0', 'forbidden'], ['0.0.0.0', 'forbidden'], ['::', 'forbidden'],
    ['224.0.0.1', 'forbidden'], ['255.255.255.255', 'forbidden'], ['::ffff:169.254.169.254', 'forbidden'], ['not-an-ip', 'forbidden'],
    ['8.8.8.8', 'public'], ['172.32.0.1', 'public'], ['2001:4860:4860::8888', 'public'], ['64:ff9b::808:808', 'public'],
  ])('%s is %s', (ip, cls) => {
    expect(classifyAddress(ip)).toBe(cls);
  });
});

describe('Egress.check (after DNS resolution)', () => {
  const resolver = zone({
    'smtp.public.example': ['203.0.113.10'],
    'split.example': ['203.0.113.11', '10.0.0.5'],
    'metadata.example': ['169.254.169.254'],
    'relay.cluster.local': ['10.20.1.2'],
    'v6.example': ['::ffff:127.0.0.1'],
  });
  const refusal = async (e: Egress, host: string) => e.check(host).then(() => 'allowed', (err: unknown) => refusalReason(err));

  it('refuses any name with an internal address, by default', async () => {
    const e = new Egress({ allowPrivate: false, allowedHosts: [] }, resolver);
    const got = Object.fromEntries(
      await Promise.all(['smtp.public.example', 'split.example', 'metadata.example', 'relay.cluster.local', 'v6.example', 'localhost', 'a.localhost', '127.0.0.1', '[::1]', 'nowhere.example'].map(async (h) => [h, await refusal(e, h)])),
    );
    expect(got).toEqual({
      'smtp.public.example': 'allowed', 'split.example': 'internal', 'metadata.example': 'internal', 'relay.cluster.local': 'internal', 'v6.example': 'internal',
      localhost: 'internal', 'a.localhost': 'internal', '127.0.0.1': 'internal', '[::1]': 'internal', 'nowhere.example': 'unresolvable',
    });
  });

  it('ALLOW_PRIVATE_SMTP_HOSTS opens private ranges but never the metadata address', async () => {
    const e = new Egress({ allowPrivate: true, allowedHosts: [] }, resolver);
    expect(await refusal(e, 'relay.cluster.local')).toBe('allowed');
    expect(await refusal(e, 'localhost')).toBe('allowed');
    expect(await refusal(e, 'metadata.example')).toBe('internal');
    expect(await refusal(e, '169.254.169.254')).toBe('internal');
  });

  it('SMTP_ALLOWED_HOSTS allows exactly the names and ranges it lists', async () => {
    const e = new Egress({ allowPrivate: false, allowedHosts: ['relay.cluster.local', '127.0.0.1', '10.99.0.0/16'] }, zone({ 'relay.cluster.local': ['10.20.1.2'], 'other.cluster.local': ['10.20.1.3'], 'in-range.example': ['10.99.3.4'] }));
    expect(await refusal(e, 'relay.cluster.local')).toBe('allowed');
    expect(await refusal(e, 'RELAY.cluster.local.')).toBe('allowed');
    expect(await refusal(e, 'other.cluster.local')).toBe('internal');
    expect(await refusal(e, '127.0.0.1')).toBe('allowed');
    expect(await refusal(e, '127.0.0.2')).toBe('internal');
    expect(await refusal(e, 'in-range.example')).toBe('allowed');
  });

  it('an SMTP_ALLOWED_HOSTS entry is normalised like the host it is checked against', async () => {
    // Written fully qualified, with a trailing dot and in capitals: the same name.
    const e = new Egress({ allowPrivate: false, allowedHosts: ['Relay.Cluster.Local.', '[::1]', '[fd00:1::]/32'] }, zone({ 'relay.cluster.local': ['10.20.1.2'] }));
    expect(await refusal(e, 'relay.cluster.local')).toBe('allowed');
    expect(await refusal(e, 'relay.cluster.local.')).toBe('allowed');
    expect(await refusal(e, '::1')).toBe('allowed');
    expect(await refusal(e, 'fd00:1::5')).toBe('allowed');
    expect(await refusal(e, 'fd00:2::5')).toBe('internal');
    expect(await refusal(e, 'relay.cluster.locals')).toBe('unresolvable');
  });
});

describe('SSRF guard in the worker and the admin API', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let smtp: FakeSmtp;
  const logs = captureLogs();
  let token: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox();
    smtp = await startFakeSmtp({ mailer: SMTP_PASS });
    token = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
  });
  afterAll(async () => {
    await mailbox.close();
    await smtp.close();
    await db.drop();
  });

  const locked = { ALLOW_PRIVATE_SMTP_HOSTS: 'false', ADMIN_JWT_SECRET: SECRET };
  const put = (url: string, tenant: string, body: unknown) =>
    fetch(new URL(`/api/v1/admin/tenants/${tenant}/email-settings`, url), { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, json: (await r.json()) as { code: string; issues?: Array<{ path: string; message: string }> } }));
  const smtpSettings = (host: string) => ({ provider: 'smtp', api_key: SMTP_PASS, from_email: 'a@ssrf.example', provider_settings: { host, port: smtp.port, username: 'mailer', require_tls: false } });

  it.each(['127.0.0.1', 'localhost', '169.254.169.254', '[::ffff:127.0.0.1]', '::1', '10.0.0.1', 'metadata.localhost', '64:ff9b::7f00:1', '::127.0.0.1', '::ffff:0:7f00:1', '[2002:7f00:1::]'])('refuses SMTP host %s at save and writes nothing', async (host) => {
    const w = await startTestWorker(db, logs.logger, locked);
    try {
      const r = await put(w.url, 'ssrf-save', smtpSettings(host));
      expect([r.status, r.json.code]).toEqual([400, 'invalid_request']);
      expect(r.json.issues).toEqual([{ path: 'provider_settings.host', message: expect.stringMatching(/resolves to a loopback, private, link-local or metadata address/) }]);
      const rows = await db.admin()`SELECT 1 FROM tenant_email_settings WHERE tenant_id = 'ssrf-save' UNION ALL SELECT 1 FROM tenants WHERE id = 'ssrf-save'`;
      expect(rows).toHaveLength(0);
    } finally {
      await w.shutdown();
    }
  });

  it('refuses an endpoint override on loopback at save, in the primary and in the fallback', async () => {
    const w = await startTestWorker(db, logs.logger, locked);
    try {
      const r = await put(w.url, 'ssrf-save', {
        provider: 'sendgrid', api_key: 'SG.ssrf-key-0000000000', from_email: 'a@ssrf.example', provider_settings: { base_url: 'http://127.0.0.1:9/' },
        fallback: { provider: 'resend', api_key: 're_ssrf_key_00000000', provider_settings: { base_url: 'http://[::1]:9' } },
      });
      expect(r.status).toBe(400);
      expect(r.json.issues!.map((i) => i.path)).toEqual(['provider_settings.base_url', 'fallback.provider_settings.base_url']);
    } finally {
      await w.shutdown();
    }
  });

  it('accepts a host the platform listed in SMTP_ALLOWED_HOSTS, and sends through it', async () => {
    const w = await startTestWorker(db, logs.logger, { ...locked, SMTP_ALLOWED_HOSTS: '127.0.0.1' });
    try {
      const r = await put(w.url, 'ssrf-allowed', smtpSettings('127.0.0.1'));
      expect(r.status).toBe(201);
      const before = smtp.received.length;
      const sent = await post(w.url, binaryEvent({ tenant: 'ssrf-allowed', data: taskData({ notify_email: 'x@ssrf.example' }) }));
      expect(sent.status).toBe(202);
      expect(smtp.received.length - before).toBe(1);
    } finally {
      await w.shutdown();
    }
  });

  it('refuses at connect time a stored SMTP host that is internal (saved before the policy, or re-resolved inward)', async () => {
    await putSettings(db.worker(1), { current: KEY }, 'ssrf-stored', { ...smtpSettings('127.0.0.1'), enabled: true, daily_limit: 10 } as never);
    const w = await startTestWorker(db, logs.logger, locked);
    try {
      const connections = smtp.connections;
      const r = await post(w.url, binaryEvent({ tenant: 'ssrf-stored', id: 'ssrf-stored-1' }));
      expect([r.status, JSON.parse(r.text).code]).toEqual([422, 'destination_forbidden']);
      expect(smtp.connections).toBe(connections);
      const [row] = await db.admin()`SELECT status, error_code FROM email_deliveries WHERE tenant_id = 'ssrf-stored'`;
      expect(row).toEqual({ status: 'failed', error_code: 'destination_forbidden' });
    } finally {
      await w.shutdown();
    }
  });

  it('refuses at connect time a stored endpoint override on loopback, and the fallback takes over', async () => {
    await putSettings(db.worker(1), { current: KEY }, 'ssrf-override', {
      provider: 'sendgrid', api_key: 'SG.ssrf-stored-key-000000', from_email: 'a@ssrf.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 10,
      fallback: { provider: 'smtp', api_key: SMTP_PASS, provider_settings: { host: 'relay.allowed', port: smtp.port, username: 'mailer', require_tls: false } },
    } as never);
    const w = await startTestWorker(db, logs.logger, { ...locked, SMTP_ALLOWED_HOSTS: 'relay.allowed' });
    try {
      const requests = mailbox.requests;
      const r = await post(w.url, binaryEvent({ tenant: 'ssrf-override', id: 'ssrf-override-1' }));
      // relay.allowed is listed by name but does not resolve here: the fallback fails on DNS (retryable).
      expect([r.status, JSON.parse(r.text).code]).toEqual([503, 'provider_network']);
      expect(mailbox.requests).toBe(requests);
    } finally {
      await w.shutdown();
    }
  });

  it('connects SMTP to the address it checked (no DNS rebinding between check and connect)', async () => {
    let calls = 0;
    // The first answer is public (what a save-time check would see); every later one points inward.
    const rebinding = zone({ 'rebind.example': () => (calls++ === 0 ? ['203.0.113.7'] : ['127.0.0.1']) });
    const egress = new Egress({ allowPrivate: false, allowedHosts: [] }, rebinding);
    expect(await egress.check('rebind.example')).toEqual(['203.0.113.7']);
    const clients = new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: false, egress });
    const client = clients.get('t', { provider: 'smtp', apiKey: SMTP_PASS, settings: { host: 'rebind.example', port: smtp.port, username: 'mailer', require_tls: false } });
    const connections = smtp.connections;
    await expect(client.send(email())).rejects.toMatchObject({ code: 'destination_forbidden' });
    expect(smtp.connections).toBe(connections);

    // The same path, allowed: a name only our resolver knows reaches the server, so the socket used it.
    const pinned = new Egress({ allowPrivate: false, allowedHosts: ['127.0.0.1'] }, zone({ 'only-in-our-zone.example': ['127.0.0.1'] }));
    const ok = new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: false, egress: pinned }).get('t', { provider: 'smtp', apiKey: SMTP_PASS, settings: { host: 'only-in-our-zone.example', port: smtp.port, username: 'mailer', require_tls: false } });
    const before = smtp.received.length;
    await ok.send(email());
    expect(smtp.received.length - before).toBe(1);
    await ok.close?.();
    await clients.closeAll();
  });

  it('keeps the canary out of every log line', () => {
    const all = logs.lines.join('\n');
    expect(all).not.toContain('CANARY');
  });
});

function email(): OutgoingEmail {
  return {
    from: { email: 'a@ssrf.example', name: null }, to: 'x@ssrf.example', replyTo: null, subject: 's', text: 't', html: '<p>t</p>',
    headers: {}, reference: '<r@ssrf.example>', tags: { tenantId: 't', eventId: 'e' }, idempotencyKey: 'k',
  };
}
