import { createHash } from 'node:crypto';
import { authenticateApiKey } from '../../src/db/apiKeys';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

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
});
