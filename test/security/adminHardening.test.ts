import { SignJWT } from 'jose';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { captureLogs } from '../helpers/logCapture';
import { startTestWorker } from '../helpers/worker';

const SECRET = 'admin-jwt-secret-for-hardening-0123456789';

describe('admin API hardening', () => {
  let db: TestDatabase;
  const logs = captureLogs();
  let good: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    good = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(SECRET));
  });
  afterAll(() => db.drop());

  const get = (url: string, token: string, headers: Record<string, string> = {}) =>
    fetch(new URL('/api/v1/admin/tenants/acme/email-settings', url), { headers: { authorization: `Bearer ${token}`, ...headers } });

  it('answers 429 too_many_auth_failures after ADMIN_AUTH_FAILURE_LIMIT failed authentications a minute', async () => {
    const w = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: SECRET, ADMIN_AUTH_FAILURE_LIMIT: '5' });
    try {
      // Successful requests do not count against the limit.
      for (let i = 0; i < 10; i++) expect((await get(w.url, good)).status).toBe(404);
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) statuses.push((await get(w.url, `guess${i}.x.y`)).status);
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
      const blocked = await get(w.url, 'guess.x.y');
      expect(blocked.headers.get('retry-after')).toBe('60');
      expect(await blocked.json()).toMatchObject({ code: 'too_many_auth_failures' });
      // The address is locked out for the window, valid token or not: a guesser cannot tell which guess would have worked.
      expect((await get(w.url, good)).status).toBe(429);
      // X-Forwarded-For is not trusted unless TRUST_PROXY says so: it cannot be used to dodge the limit.
      expect((await get(w.url, 'guess.x.y', { 'x-forwarded-for': '203.0.113.9' })).status).toBe(429);
      expect(logs.text()).toContain('too many failed authentications');
    } finally {
      await w.shutdown();
    }
  });

  it('keys the limit on the client behind a trusted proxy (TRUST_PROXY=1)', async () => {
    const w = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: SECRET, ADMIN_AUTH_FAILURE_LIMIT: '2', TRUST_PROXY: '1' });
    try {
      const from = (ip: string) => ({ 'x-forwarded-for': ip });
      const a = [];
      for (let i = 0; i < 3; i++) a.push((await get(w.url, 'bad.x.y', from('203.0.113.1'))).status);
      expect(a).toEqual([401, 401, 429]);
      expect((await get(w.url, good, from('203.0.113.2'))).status).toBe(404);
      expect((await get(w.url, 'bad.x.y', from('203.0.113.2'))).status).toBe(401);
    } finally {
      await w.shutdown();
    }
  });

  it('sends security headers on every admin answer', async () => {
    const w = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: SECRET });
    try {
      for (const res of [await get(w.url, good), await get(w.url, 'bad.x.y'), await fetch(new URL('/api/v1/admin/openapi.json', w.url))]) {
        expect(Object.fromEntries([...res.headers].filter(([k]) => /content-security|x-content-type|x-frame|strict-transport|referrer-policy|cross-origin-resource|x-powered-by/.test(k)))).toEqual({
          'content-security-policy': "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
          'cross-origin-resource-policy': 'same-origin',
          'referrer-policy': 'no-referrer',
          'strict-transport-security': expect.stringMatching(/^max-age=\d+/),
          'x-content-type-options': 'nosniff',
          'x-frame-options': 'SAMEORIGIN',
        });
      }
      expect((await get(w.url, good)).headers.get('cache-control')).toBe('no-store');
    } finally {
      await w.shutdown();
    }
  });

  it('refuses an oversized or undecodable body with a stable code and writes nothing', async () => {
    const w = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: SECRET });
    try {
      const put = (body: string | Buffer, headers: Record<string, string> = {}) =>
        fetch(new URL('/api/v1/admin/tenants/big/email-settings', w.url), { method: 'PUT', headers: { authorization: `Bearer ${good}`, 'content-type': 'application/json', ...headers }, body });
      const huge = await put(JSON.stringify({ provider: 'sendgrid', api_key: 'SG.x', from_name: 'x'.repeat(600 * 1024) }));
      expect([huge.status, ((await huge.json()) as { code: string }).code]).toEqual([413, 'body_too_large']);
      const charset = await put('{}', { 'content-type': 'application/json; charset=klingon' });
      expect([charset.status, ((await charset.json()) as { code: string }).code]).toEqual([415, 'unsupported_media_type']);
      const gzip = await put('not gzip', { 'content-encoding': 'gzip' });
      expect(gzip.status).toBeGreaterThanOrEqual(400);
      expect(gzip.status).toBeLessThan(500);
      const rows = await db.admin()`SELECT 1 FROM tenant_email_settings WHERE tenant_id = 'big' UNION ALL SELECT 1 FROM tenants WHERE id = 'big'`;
      expect(rows).toHaveLength(0);
    } finally {
      await w.shutdown();
    }
  });
});
