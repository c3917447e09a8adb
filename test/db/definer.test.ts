import { createHash, randomBytes } from 'node:crypto';
import { authenticateApiKey, createApiKey } from '../../src/db/apiKeys';
import { createSql } from '../../src/db/connect';
import { migrate } from '../../src/db/migrate';
import { roleUrl } from '../../dev/embeddedPostgres';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { captureLogs } from '../helpers/logCapture';
import { TEST_ROLES } from '../helpers/roles';
import { startTestWorker } from '../helpers/worker';

/**
 * A SECURITY DEFINER function whose search_path does not name pg_temp searches the caller's
 * temporary schema first: a temporary table called admin_api_keys would answer in place of ours.
 */
describe('SECURITY DEFINER functions and the caller’s temporary tables', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it("a worker-role session's own temporary admin_api_keys table does not make its key a platform admin", async () => {
    const key = `tew_${'a'.repeat(12)}_${'b'.repeat(43)}`;
    const sql = db.worker(1); // one connection: the temporary table lives in its session
    await sql.unsafe(`CREATE TEMP TABLE admin_api_keys (id uuid DEFAULT gen_random_uuid(), prefix text, key_hash bytea, tenant_id text, role text, revoked_at timestamptz, expires_at timestamptz)`);
    await sql`INSERT INTO admin_api_keys (prefix, key_hash, role) VALUES (${`tew_${'a'.repeat(12)}`}, ${createHash('sha256').update(key).digest()}, 'platform_admin')`;
    expect(await sql`SELECT count(*)::int AS n FROM admin_api_keys`).toEqual([{ n: 1 }]); // the session sees its own table
    expect(await authenticateApiKey(sql, key)).toBeNull();
    const fns = await db.admin()`
      SELECT p.proname, array_to_string(p.proconfig, ',') AS config FROM pg_proc p
      WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace ORDER BY 1`;
    for (const f of fns) expect({ fn: f.proname, config: f.config }).toEqual({ fn: f.proname, config: expect.stringMatching(/search_path=pg_catalog, public, pg_temp$/) });
    expect(fns.length).toBeGreaterThanOrEqual(4);
  });

  it('with an admin API role of its own (ADMIN_DB_ROLE), only that role may execute the admin key functions; the worker role loses them', async () => {
    // Roles belong to the cluster, not the database: a name of this run's own, dropped at the end.
    const adminRole = `email_admin_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    const su = db.admin();
    await su.unsafe(`CREATE ROLE ${adminRole} LOGIN PASSWORD '${password}' NOSUPERUSER NOBYPASSRLS`);
    const owner = createSql(db.ownerUrl, { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 30_000, applicationName: 'test-migrate' });
    const adminSql = createSql(roleUrl(db.superuserUrl, adminRole, password, db.name), { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 30_000, applicationName: 'test-admin' });
    try {
      const key = await createApiKey(su, { role: 'platform_admin', tenantId: null });
      const worker = db.worker(1);
      // One role for both (the default): the worker role looks keys up, as the admin API it also serves.
      expect(await authenticateApiKey(worker, key.key)).toMatchObject({ role: 'platform_admin' });

      await migrate(owner, { workerRole: TEST_ROLES.workerRole, adminRole });
      const denied = await worker`SELECT * FROM admin_api_key_lookup(${key.prefix})`.then(() => 'allowed', (e: { code?: string }) => e.code);
      expect(denied).toBe('42501');
      await expect(worker`SELECT admin_api_key_touch(${key.id}::uuid)`).rejects.toMatchObject({ code: '42501' });
      // The admin API's role does, and has the worker's grants too (its test send claims like the worker).
      expect(await authenticateApiKey(adminSql, key.key)).toMatchObject({ role: 'platform_admin' });
      const [claim] = await adminSql`SELECT outcome FROM email_claim_event('no-such-tenant', 's', 'e1', 't', 'task', true, 60, NULL, 'k', 'secret', NULL, NULL)`;
      expect(claim).toEqual({ outcome: 'unknown_tenant' });
      const fns = await su`
        SELECT p.proname, r.rolname, has_function_privilege(r.oid, p.oid, 'EXECUTE') AS can
        FROM pg_proc p CROSS JOIN pg_roles r
        WHERE p.proname IN ('admin_api_key_lookup', 'admin_api_key_touch') AND r.rolname IN (${TEST_ROLES.workerRole}, ${adminRole}) ORDER BY 1, 2`;
      expect(fns.map((f) => `${f.proname} ${f.rolname === adminRole ? 'admin' : 'worker'} ${f.can}`).sort()).toEqual([
        'admin_api_key_lookup admin true', 'admin_api_key_lookup worker false', 'admin_api_key_touch admin true', 'admin_api_key_touch worker false',
      ]);
      // The admin API refuses to start as a role without them, and starts as the admin role.
      const adminEnv = { ADMIN_API_ENABLED: 'true', ADMIN_JWT_SECRET: 'x'.repeat(40) };
      await expect(startTestWorker(db, captureLogs().logger, adminEnv)).rejects.toThrow(/refusing to start the admin API: role "email_worker" may not execute the admin API.s functions \(admin_api_key_lookup/);
      const w = await startTestWorker({ workerUrl: roleUrl(db.superuserUrl, adminRole, password, db.name) }, captureLogs().logger, adminEnv);
      const res = await fetch(new URL('/api/v1/admin/tenants/acme/email-settings', w.url), { headers: { authorization: `Bearer ${key.key}` } });
      await w.shutdown();
      expect(res.status).toBe(404); // authenticated (a platform key), and acme has no settings
    } finally {
      await adminSql.end({ timeout: 5 });
      await owner.end({ timeout: 5 });
      await su.unsafe(`DROP OWNED BY ${adminRole}`);
      await su.unsafe(`DROP ROLE ${adminRole}`);
    }
  });
});
