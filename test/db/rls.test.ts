import { keyId } from '../../src/config';
import { createSql, type Sql } from '../../src/db/connect';
import { getDomain, listDomains, saveDomain } from '../../src/db/domains';
import { putSettings, withTenant } from '../../src/db/settings';
import { getTemplate, listTemplates, putTemplate } from '../../src/db/templates';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { poolingWays, workerDatabase } from '../helpers/pgbouncer';

const KEY = { id: keyId('k'.repeat(40)), secret: 'k'.repeat(40) };
const settings = (from: string) => ({
  provider: 'sendgrid' as const, api_key: 'SG.test-key-for-rls-0000', from_email: from,
  provider_settings: {}, enabled: true, daily_limit: 10,
});

/**
 * The same suite directly and through a real PgBouncer in transaction mode with one server
 * connection, where every client's transactions share one PostgreSQL session (issue 22). Without
 * pgbouncer installed the second run is skipped outside CI (`.ci/run` installs it).
 */
describe.each(poolingWays())('row-level security, as the worker role through a pool, %s', (_way, pooled) => {
  let db: TestDatabase;
  let sql: Sql;
  let through: Awaited<ReturnType<typeof workerDatabase>> | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    if (pooled) {
      through = await workerDatabase(db, true, 1);
      // Several client connections, one server connection: each transaction may follow another client's.
      sql = createSql(through.workerUrl, { max: 4, connectTimeoutSeconds: 10, statementTimeoutMs: 5000, applicationName: 'rls-test', pooler: 'pgbouncer', prepare: false });
    } else {
      // One connection: every transaction below runs on the same pooled session.
      sql = db.worker(1);
    }
    await putSettings(sql, { current: KEY }, 'tenant-a', settings('a@a.example'));
    await putSettings(sql, { current: KEY }, 'tenant-b', settings('b@b.example'));
  });
  afterAll(async () => {
    if (through) {
      await sql.end({ timeout: 5 });
      await through.stop();
    }
    await db.drop();
  });

  it('shows a tenant only its own rows', async () => {
    const rows = await withTenant(sql, 'tenant-a', (tx) => tx`SELECT tenant_id FROM tenant_email_settings`);
    expect(rows.map((r) => r.tenant_id)).toEqual(['tenant-a']);
  });

  it('does not carry one transaction\'s context into the next on the same connection', async () => {
    await withTenant(sql, 'tenant-a', (tx) => tx`SELECT 1`);
    const [s] = await sql`SELECT current_setting('app.current_tenant_id', true) AS v, pg_backend_pid() AS pid`;
    // After a transaction-local set_config the setting reads '' (not NULL): the policy's NULLIF handles it.
    expect(s!.v).toBe('');
    const rows = await sql`SELECT tenant_id FROM tenant_email_settings`;
    expect(rows).toHaveLength(0);
  });

  it('shows nothing without a context', async () => {
    for (const table of ['tenant_email_settings', 'tenant_email_usage', 'email_deliveries', 'tenants', 'tenant_email_templates', 'tenant_email_domains']) {
      const rows = await sql.unsafe(`SELECT * FROM ${table}`);
      expect({ table, n: rows.length }).toEqual({ table, n: 0 });
    }
  });

  it("keeps templates and sender domains to their tenant (read, write, change, delete)", async () => {
    await putTemplate(sql, 'tenant-b', 'codetether.task.created', { subject: 'B only: {{task_id}}' });
    await saveDomain(sql, 'tenant-b', 'mail.b.example', 'sendgrid', { providerDomainId: '1', status: 'verified', records: [] });
    // Through the same functions the admin API uses, under A's context.
    expect(await getTemplate(sql, 'tenant-a', 'codetether.task.created')).toBeNull();
    expect(await listTemplates(sql, 'tenant-a')).toEqual([]);
    expect(await getDomain(sql, 'tenant-a', 'mail.b.example')).toBeNull();
    expect(await listDomains(sql, 'tenant-a')).toEqual([]);
    // Asking for B's rows explicitly under A's context: invisible, and not writable.
    expect(await withTenant(sql, 'tenant-a', (tx) => tx`SELECT 1 FROM tenant_email_templates WHERE tenant_id = 'tenant-b'`)).toHaveLength(0);
    expect(await withTenant(sql, 'tenant-a', (tx) => tx`UPDATE tenant_email_templates SET subject = 'x' WHERE tenant_id = 'tenant-b' RETURNING 1`)).toHaveLength(0);
    expect(await withTenant(sql, 'tenant-a', (tx) => tx`UPDATE tenant_email_domains SET status = 'verified' WHERE tenant_id = 'tenant-b' RETURNING 1`)).toHaveLength(0);
    expect(await withTenant(sql, 'tenant-a', (tx) => tx`DELETE FROM tenant_email_domains WHERE tenant_id = 'tenant-b' RETURNING 1`)).toHaveLength(0);
    await expect(withTenant(sql, 'tenant-a', (tx) => tx`
      INSERT INTO tenant_email_domains (tenant_id, domain, provider, provider_domain_id, status) VALUES ('tenant-b', 'evil.example', 'sendgrid', '9', 'verified')`))
      .rejects.toMatchObject({ code: '42501' });
    await expect(withTenant(sql, 'tenant-a', (tx) => tx`
      INSERT INTO tenant_email_templates (tenant_id, event_type, subject) VALUES ('tenant-b', 'codetether.task.created', 'evil')`))
      .rejects.toMatchObject({ code: '42501' });
    // B still sees its own, unchanged.
    expect((await getTemplate(sql, 'tenant-b', 'codetether.task.created'))?.subject).toBe('B only: {{task_id}}');
    expect((await getDomain(sql, 'tenant-b', 'mail.b.example'))?.status).toBe('verified');
  });

  it("does not let tenant A write or change tenant B's rows", async () => {
    await expect(
      withTenant(sql, 'tenant-a', (tx) => tx`
        INSERT INTO tenant_email_usage (tenant_id, day, slot, sent_count) VALUES ('tenant-b', current_date, 0, 1)`),
    ).rejects.toMatchObject({ code: '42501' });
    const updated = await withTenant(sql, 'tenant-a', (tx) => tx`
      UPDATE tenant_email_settings SET from_email = 'evil@a.example' WHERE tenant_id = 'tenant-b' RETURNING 1`);
    expect(updated).toHaveLength(0);
    const deleted = await withTenant(sql, 'tenant-a', (tx) => tx`DELETE FROM tenant_email_settings WHERE tenant_id = 'tenant-b' RETURNING 1`);
    expect(deleted).toHaveLength(0);
    const [b] = await withTenant(sql, 'tenant-b', (tx) => tx`SELECT from_email FROM tenant_email_settings`);
    expect(b!.from_email).toBe('b@b.example');
  });

  it("does not let tenant A's claim function read tenant B's settings", async () => {
    // The claim runs with A's context: B's settings row is invisible, so A falls to "unknown".
    const [r] = await sql`SELECT outcome FROM email_claim_event('tenant-a-missing', 's', 'e1', 't', 'task', true, 60, NULL, ${KEY.id}, ${KEY.secret}, NULL, NULL)`;
    expect(r!.outcome).toBe('unknown_tenant');
  });

  it('forbids the worker role DDL, TRUNCATE and the migrations table', async () => {
    await expect(sql`TRUNCATE email_deliveries`).rejects.toMatchObject({ code: '42501' });
    await expect(sql`ALTER TABLE email_deliveries DISABLE ROW LEVEL SECURITY`).rejects.toMatchObject({ code: '42501' });
    await expect(sql`SELECT * FROM email_worker_migrations`).rejects.toMatchObject({ code: '42501' });
    await expect(sql`SELECT set_config('row_security', 'off', false)`).resolves.toBeDefined();
    // row_security=off does not bypass policies for a role without BYPASSRLS: it makes queries fail.
    await expect(sql`SELECT * FROM tenant_email_settings`).rejects.toMatchObject({ code: '42501' });
    await sql`SELECT set_config('row_security', 'on', false)`;
  });

  it('stores ciphertext that does not contain the plaintext key', async () => {
    const owner = db.owner();
    await owner`SELECT set_config('app.current_tenant_id', 'tenant-a', false)`;
    const [r] = await owner`SELECT api_key_encrypted FROM tenant_email_settings WHERE tenant_id = 'tenant-a'`;
    const bytes = r!.api_key_encrypted as Buffer;
    expect(bytes.length).toBeGreaterThan(20);
    expect(bytes.includes(Buffer.from('SG.test-key-for-rls-0000'))).toBe(false);
    expect(bytes.toString('hex').includes(Buffer.from('SG.test-key').toString('hex'))).toBe(false);
  });
});
