import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { createSql } from '../../src/db/connect';
import { roleUrl } from '../../dev/embeddedPostgres';
import { quoteIdent } from '../../src/db/connect';
import { SQL_DIR, loadMigrations, migrate } from '../../src/db/migrate';
import { TENANT_TABLES } from '../../src/db/roleCheck';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { TEST_ROLES } from '../helpers/roles';

describe('migrations', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('records every numbered migration exactly once', async () => {
    const owner = db.owner();
    const rows = await owner`SELECT id, name FROM email_worker_migrations ORDER BY id`;
    expect(rows.map((r) => r.name)).toEqual(loadMigrations().map((m) => m.name));
  });

  it('lets two concurrent migrators run on an empty database: one applies, the other finds nothing to do', async () => {
    const name = `empty_${Date.now()}`;
    const su = postgres(db.superuserUrl, { max: 1, onnotice: () => {} });
    await su.unsafe(`CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(TEST_ROLES.ownerRole)}`);
    const url = roleUrl(db.superuserUrl, TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, name);
    const a = createSql(url, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'a' });
    const b = createSql(url, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'b' });
    try {
      const [ra, rb] = await Promise.all([migrate(a, { workerRole: TEST_ROLES.workerRole }), migrate(b, { workerRole: TEST_ROLES.workerRole })]);
      const counts = [ra.applied.length, rb.applied.length].sort();
      expect(counts).toEqual([0, loadMigrations().length]);
      const [{ n }] = (await a`SELECT count(*)::int AS n FROM email_worker_migrations`) as unknown as [{ n: number }];
      expect(n).toBe(loadMigrations().length);
    } finally {
      await Promise.all([a.end(), b.end()]);
      await su.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await su.end();
    }
  });

  /** A fresh empty database (`ownedByMigrator`: owned by the migrating role), its superuser and the migrating role's pools. */
  async function withEmptyDatabase(prefix: string, ownedByMigrator: boolean, fn: (name: string, dbSu: postgres.Sql, owner: ReturnType<typeof createSql>) => Promise<void>) {
    const name = `${prefix}_${Date.now()}`;
    const su = postgres(db.superuserUrl, { max: 1, onnotice: () => {} });
    await su.unsafe(`CREATE DATABASE ${quoteIdent(name)}${ownedByMigrator ? ` OWNER ${quoteIdent(TEST_ROLES.ownerRole)}` : ''}`);
    const dbSu = postgres(roleUrl(db.superuserUrl, 'postgres', new URL(db.superuserUrl).password, name), { max: 1, onnotice: () => {} });
    const owner = createSql(roleUrl(db.superuserUrl, TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, name), { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'x' });
    try {
      await fn(name, dbSu, owner);
    } finally {
      await owner.end();
      await dbSu.end();
      await su.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await su.end();
    }
  }

  it('on a database the migrating role does not own, names each missing grant with its SQL, then migrates once they are given', () =>
    withEmptyDatabase('not_owned', false, async (name, dbSu, owner) => {
      await dbSu.unsafe('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
      const first = await migrate(owner, { workerRole: TEST_ROLES.workerRole }).catch((e: Error) => e);
      expect((first as Error).message).toContain(`may not create objects in schema public. As the database owner or a superuser, run:\n  GRANT USAGE, CREATE ON SCHEMA public TO "${TEST_ROLES.ownerRole}";`);
      expect((first as Error).message).toContain('CREATE EXTENSION IF NOT EXISTS pgcrypto;');
      expect((first as Error).message).toContain(`GRANT CREATE ON DATABASE "${name}" TO "${TEST_ROLES.ownerRole}";`);
      // Nothing half-written: the failed attempt rolled back.
      expect(await dbSu`SELECT to_regclass('email_worker_migrations') AS t`).toEqual([{ t: null }]);

      await dbSu.unsafe(`GRANT USAGE, CREATE ON SCHEMA public TO ${quoteIdent(TEST_ROLES.ownerRole)}`);
      const second = await migrate(owner, { workerRole: TEST_ROLES.workerRole }).catch((e: Error) => e);
      expect((second as Error).message).not.toContain('schema public');
      expect((second as Error).message).toContain('CREATE EXTENSION IF NOT EXISTS pgcrypto;');

      await dbSu.unsafe('CREATE EXTENSION IF NOT EXISTS pgcrypto');
      const done = await migrate(owner, { workerRole: TEST_ROLES.workerRole });
      expect(done.applied).toEqual(loadMigrations().map((m) => m.name));
    }));

  it('names the migration and the ownership rule when a migration hits a privilege error', () =>
    withEmptyDatabase('foreign_owner', true, async (_name, dbSu, owner) => {
      // The platform's tenants table, which the migrating role may not reference.
      await dbSu.unsafe('CREATE EXTENSION pgcrypto; CREATE TABLE tenants (id text PRIMARY KEY)');
      const err = await migrate(owner, { workerRole: TEST_ROLES.workerRole }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/^001_schema\.sql: permission denied for table tenants \(42501\)\. .*GRANT REFERENCES \(id\) ON tenants TO "email_owner";.* Migrations must run as the role that owns the schema's objects/);
    }));

  it('reports the SQL a superuser must run when the owner may not set the log parameters', async () => {
    const owner = createSql(db.ownerUrl, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'x' });
    const su = createSql(db.superuserUrl, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'su' });
    try {
      await su`ALTER ROLE email_worker RESET log_parameter_max_length`;
      const r = await migrate(owner, { workerRole: TEST_ROLES.workerRole });
      expect(r.applied).toEqual([]);
      expect(r.superuserSql).toEqual(['ALTER ROLE "email_worker" SET log_parameter_max_length = 0;']);
    } finally {
      await su`ALTER ROLE email_worker SET log_parameter_max_length = 0`;
      await Promise.all([owner.end(), su.end()]);
    }
  });

  it('refuses a worker role that does not exist or bypasses RLS, with a fix-it message', async () => {
    const owner = db.owner();
    await expect(migrate(owner, { workerRole: 'no_such_role' })).rejects.toThrow(/does not exist.*CREATE ROLE no_such_role/s);
    await expect(migrate(owner, { workerRole: 'postgres' })).rejects.toThrow(/superuser or has BYPASSRLS/);
  });

  it('gives every tenant table forced RLS, a non-empty tenant check and keys that start with tenant_id', async () => {
    const owner = db.owner();
    for (const table of [...TENANT_TABLES, 'tenants']) {
      const [c] = await owner`SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = to_regclass(${table})`;
      expect({ table, ...c }).toEqual({ table, relrowsecurity: true, relforcerowsecurity: true });
    }
    const idx = await owner`
      SELECT c.relname AS tbl, i.relname AS idx, a.attname AS first_col
      FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
      WHERE c.relname = ANY(string_to_array(${TENANT_TABLES.join(',')}, ','))`;
    expect(idx.length).toBeGreaterThanOrEqual(4);
    for (const i of idx) expect({ idx: i.idx, first: i.first_col }).toEqual({ idx: i.idx, first: 'tenant_id' });
    const checks = await owner`
      SELECT conrelid::regclass::text AS tbl FROM pg_constraint
      WHERE contype = 'c' AND pg_get_constraintdef(oid) LIKE '%tenant_id <> %'`;
    // The platform tables carry the check too: admin_api_keys (its tenant_id is nullable: platform
    // keys have none) and email_outbox (read across tenants through its definer functions only).
    expect(new Set(checks.map((c) => c.tbl))).toEqual(new Set([...TENANT_TABLES, 'admin_api_keys', 'email_outbox']));
  });

  it('keeps every migration file in the numbered forward-only form', () => {
    const files = readdirSync(SQL_DIR).filter((f) => f.endsWith('.sql'));
    for (const f of files) {
      if (['grants.sql', 'grants_admin.sql', 'functions.sql'].includes(f)) continue;
      expect(f).toMatch(/^\d{3}_[a-z0-9_]+\.sql$/);
      expect(readFileSync(path.join(SQL_DIR, f), 'utf8')).not.toMatch(/^\s*(BEGIN|COMMIT)\s*;/im);
    }
  });
});
