import type { Server } from 'node:http';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { cli } from '../helpers/cli';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { captureLogs } from '../helpers/logCapture';
import { poolingWays, workerDatabase } from '../helpers/pgbouncer';
import { startTestWorker } from '../helpers/worker';

const SECRET = 'admin-jwt-secret-for-tests-0123456789abcdef';
const API_KEY = 'SG.CANARY-ADMIN-APIKEY-0000001234';

async function token(claims: Record<string, unknown>, opts: { secret?: string; exp?: string | number; iss?: string; aud?: string } = {}) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(opts.exp ?? '5m');
  if (opts.iss) jwt = jwt.setIssuer(opts.iss);
  if (opts.aud) jwt = jwt.setAudience(opts.aud);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

// Directly and through PgBouncer in transaction mode (issue 22): the admin API's transactions share server connections there.
describe.each(poolingWays())('admin API, %s', (_way, pooled) => {
  let db: TestDatabase;
  let through: Awaited<ReturnType<typeof workerDatabase>>;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  const logs = captureLogs();
  const bodies: string[] = [];
  let platform: string;
  let acmeAdmin: string;

  const call = async (method: string, path: string, auth: string | null, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), {
      method,
      headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    bodies.push(text);
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const settings = (over: Record<string, unknown> = {}) => ({ provider: 'sendgrid', api_key: API_KEY, from_email: 'noreply@acme.example', provider_settings: { base_url: mailbox.url }, daily_limit: 5, ...over });

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({ respond: (r) => (r.authorization === 'Bearer SG.bad-key-000000000000' ? { status: 401, body: { errors: [] } } : undefined) });
    through = await workerDatabase(db, pooled);
    worker = await startTestWorker(through, logs.logger, { ...through.env, ADMIN_JWT_SECRET: SECRET, ADMIN_JWT_ISSUER: 'https://auth.test', ADMIN_JWT_AUDIENCE: 'tenant-email' });
    platform = await token({ role: 'platform_admin', sub: 'ops' }, { iss: 'https://auth.test', aud: 'tenant-email' });
    acmeAdmin = await token({ role: 'tenant_admin', tenant_id: 'acme' }, { iss: 'https://auth.test', aud: 'tenant-email' });
  });
  afterAll(async () => {
    await worker.shutdown();
    await through.stop();
    await mailbox.close();
    await db.drop();
  });

  it.each([
    ['no token', async () => null, 401, 'unauthorized'],
    ['a bad signature', () => token({ role: 'platform_admin' }, { secret: 'x'.repeat(40), iss: 'https://auth.test', aud: 'tenant-email' }), 401, 'unauthorized'],
    ['an expired token', () => token({ role: 'platform_admin' }, { exp: Math.floor(Date.now() / 1000) - 3600, iss: 'https://auth.test', aud: 'tenant-email' }), 401, 'unauthorized'],
    ['another issuer', () => token({ role: 'platform_admin' }, { iss: 'https://evil.test', aud: 'tenant-email' }), 401, 'unauthorized'],
    ['another audience', () => token({ role: 'platform_admin' }, { iss: 'https://auth.test', aud: 'other' }), 401, 'unauthorized'],
    ['no role', () => token({ tenant_id: 'acme' }, { iss: 'https://auth.test', aud: 'tenant-email' }), 403, 'forbidden'],
    ['a tenant_admin of another tenant', () => token({ role: 'tenant_admin', tenant_id: 'other' }, { iss: 'https://auth.test', aud: 'tenant-email' }), 403, 'forbidden'],
    ['an unsigned token', async () => 'eyJhbGciOiJub25lIn0.eyJyb2xlIjoicGxhdGZvcm1fYWRtaW4ifQ.', 401, 'unauthorized'],
  ] as Array<[string, () => Promise<string | null>, number, string]>)('refuses %s', async (_n, make, status, code) => {
    const r = await call('GET', 'acme/email-settings', await make());
    expect([r.status, r.json.code]).toEqual([status, code]);
    const put = await call('PUT', 'acme/email-settings', await make(), settings());
    expect(put.status).toBe(status);
    const rows = await db.admin()`SELECT 1 FROM tenant_email_settings WHERE tenant_id = 'acme'`;
    expect(rows).toHaveLength(0);
  });

  it('lets a tenant_admin create, read, update and delete its own settings, with the key write-only', async () => {
    const created = await call('PUT', 'acme/email-settings', acmeAdmin, settings());
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ tenant_id: 'acme', provider: 'sendgrid', api_key_set: true, api_key_masked: 'SG.…1234', daily_limit: 5 });
    expect(JSON.stringify(created.json)).not.toContain('CANARY');
    const updated = await call('PUT', 'acme/email-settings', acmeAdmin, settings({ api_key: undefined, from_name: 'Acme' }));
    expect([updated.status, updated.json.from_name, updated.json.version]).toEqual([200, 'Acme', 2]);
    expect((await call('GET', 'acme/email-settings', acmeAdmin)).json).toMatchObject({ from_name: 'Acme', api_key_masked: 'SG.…1234' });
  });

  it('answers field-level errors and writes nothing', async () => {
    const r = await call('PUT', 'newco/email-settings', platform, { provider: 'smtp', from_email: 'nope', provider_settings: { port: 'x' }, extra: 1 });
    expect(r.status).toBe(400);
    expect(r.json.code).toBe('invalid_request');
    expect(r.json.issues.map((i: { path: string }) => i.path)).toEqual(expect.arrayContaining(['from_email', '(body)']));
    const bad = await call('PUT', 'newco/email-settings', platform, '{"provider":');
    expect([bad.status, bad.json.code]).toEqual([400, 'invalid_request']);
    const noKey = await call('PUT', 'newco/email-settings', platform, settings({ api_key: undefined }));
    expect([noKey.status, noKey.json.code]).toEqual([400, 'api_key_required']);
    const rows = await db.admin()`SELECT 1 FROM tenant_email_settings WHERE tenant_id = 'newco' UNION ALL SELECT 1 FROM tenants WHERE id = 'newco'`;
    expect(rows).toHaveLength(0);
  });

  it('verifies credentials against the provider without sending', async () => {
    const ok = await call('POST', 'acme/email-settings/verify', acmeAdmin);
    expect(ok.json).toEqual({ ok: true, primary: { provider: 'sendgrid', ok: true }, fallback: null });
    await call('PUT', 'badkey/email-settings', platform, settings({ api_key: 'SG.bad-key-000000000000' }));
    const bad = await call('POST', 'badkey/email-settings/verify', platform);
    expect(bad.json).toMatchObject({ ok: false, primary: { ok: false, code: 'provider_auth_failed' } });
    expect(mailbox.emails).toHaveLength(0);
  });

  it('sends a test email that counts against the quota, and reports it in the stats', async () => {
    const r = await call('POST', 'acme/email-settings/test', acmeAdmin, { to: 'me@acme.example' });
    expect(r.json).toMatchObject({ sent: true, provider: 'sendgrid' });
    expect(mailbox.emails.at(-1)!.body.personalizations[0]!.to[0]!.email).toBe('me@acme.example');
    const bad = await call('POST', 'acme/email-settings/test', acmeAdmin, { to: 'a@b.example\r\nBcc: x@y.example' });
    expect([bad.status, bad.json.code]).toEqual([400, 'invalid_request']);
    const stats = await call('GET', 'acme/email-stats?days=7', acmeAdmin);
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ tenant_id: 'acme', days: 7, today: { used: 1, daily_limit: 5 }, by_provider: { sendgrid: { sent: 1, failed: 0 } }, totals: { sent: 1 } });
    expect(stats.json.by_day).toHaveLength(1);
    const badDays = await call('GET', 'acme/email-stats?days=9999', acmeAdmin);
    expect([badDays.status, badDays.json.code]).toEqual([400, 'invalid_request']);
  });

  it('deletes settings and then answers 404 settings_not_found', async () => {
    expect((await call('DELETE', 'acme/email-settings', acmeAdmin)).status).toBe(204);
    const gone = await call('GET', 'acme/email-settings', acmeAdmin);
    expect([gone.status, gone.json.code]).toEqual([404, 'settings_not_found']);
  });

  it('never puts a key in an answer or a log line', () => {
    expect(bodies.join('\n')).not.toContain('CANARY');
    expect(logs.text()).not.toContain('CANARY');
    expect(logs.text()).not.toContain(SECRET);
  });
});

describe('admin API with a JWKS', () => {
  it('accepts an RS256 token signed by a key of ADMIN_JWT_JWKS_URL, and refuses HS256 ones', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const app = express();
    app.get('/jwks.json', (_req, res) => res.json({ keys: [jwk] }));
    const server: Server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)); });
    const db = await createTestDatabase();
    const w = await startTestWorker(db, captureLogs().logger, { ADMIN_JWT_JWKS_URL: `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks.json` });
    try {
      const rs = await new SignJWT({ role: 'platform_admin' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setExpirationTime('5m').sign(privateKey);
      const ok = await fetch(new URL('/api/v1/admin/tenants/x/email-settings', w.url), { headers: { authorization: `Bearer ${rs}` } });
      expect(ok.status).toBe(404);
      const hs = await token({ role: 'platform_admin' });
      const no = await fetch(new URL('/api/v1/admin/tenants/x/email-settings', w.url), { headers: { authorization: `Bearer ${hs}` } });
      expect(no.status).toBe(401);
    } finally {
      await w.shutdown();
      await db.drop();
      server.close();
    }
  });
});

describe.each(poolingWays())('admin API keys (machine clients), %s', (_way, pooled) => {
  let db: TestDatabase;
  let through: Awaited<ReturnType<typeof workerDatabase>>;
  let w: Awaited<ReturnType<typeof startTestWorker>>;
  const env = () => ({ MAINTENANCE_DATABASE_URL: db.superuserUrl });
  const run = (args: string[]) => cli(args, env());
  const get = (key: string, tenant = 'machine-t') =>
    fetch(new URL(`/api/v1/admin/tenants/${tenant}/email-settings`, w.url), { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);

  beforeAll(async () => {
    db = await createTestDatabase();
    // No JWT configuration at all: the admin API takes API keys only.
    through = await workerDatabase(db, pooled);
    w = await startTestWorker(through, captureLogs().logger, through.env);
  });
  afterAll(async () => {
    await w.shutdown();
    await through.stop();
    await db.drop();
  });

  it('accepts a created key, scoped to its tenant, until it is revoked; stores only a hash', async () => {
    const created = await run(['apikeys', 'create', '--role', 'tenant_admin', '--tenant', 'machine-t', '--expires', '90d']);
    expect(created.code).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^tew_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(await get(key)).toBe(404); // authenticated, authorized, no settings yet
    expect(await get(key, 'other-t')).toBe(403);
    expect(await get(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`)).toBe(401);
    expect(await get('tew_000000000000_' + 'x'.repeat(43))).toBe(401);
    const stored = await db.admin()`SELECT prefix, encode(key_hash, 'hex') AS h, last_used_at FROM admin_api_keys`;
    expect(stored).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain(key.slice(17));
    expect(stored[0]!.last_used_at).not.toBeNull();
    const list = await run(['apikeys', 'list', '--tenant', 'machine-t']);
    expect(list.stdout).not.toContain(key.slice(17));
    expect(JSON.parse(list.stdout)[0]).toMatchObject({ prefix: key.slice(0, 16), role: 'tenant_admin', tenant_id: 'machine-t' });
    expect((await run(['apikeys', 'revoke', key.slice(0, 16)])).code).toBe(0);
    expect(await get(key)).toBe(401);
  });

  it('refuses an expired key and keeps the worker role out of the table', async () => {
    const key = (await run(['apikeys', 'create', '--role', 'platform_admin'])).stdout.trim();
    expect(await get(key, 'any-tenant')).toBe(404);
    await db.admin()`UPDATE admin_api_keys SET expires_at = now() - interval '1 second' WHERE prefix = ${key.slice(0, 16)}`;
    expect(await get(key, 'any-tenant')).toBe(401);
    await expect(db.worker(1)`SELECT * FROM admin_api_keys`).rejects.toMatchObject({ code: '42501' });
  });

  it('refuses a JWT when none is configured, and a tenant_admin key without a tenant', async () => {
    expect(await get(await token({ role: 'platform_admin' }))).toBe(401);
    const r = await run(['apikeys', 'create', '--role', 'tenant_admin']);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/needs --tenant/)]);
  });
});
