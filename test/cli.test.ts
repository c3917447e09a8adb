import postgres from 'postgres';
import { keyId, loadConfig } from '../src/config';
import { createSql } from '../src/db/connect';
import { createDeliveryStore } from '../src/db/deliveries';
import { migrate } from '../src/db/migrate';
import { roleUrl } from '../dev/embeddedPostgres';
import { quoteIdent } from '../src/db/connect';
import { cli } from './helpers/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';
import { TEST_ROLES } from './helpers/roles';
import { CANARY_DB_KEY } from './helpers/worker';


const body = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ provider: 'sendgrid', api_key: 'SG.cli-test-key-0123456789', from_email: 'ops@t.example', daily_limit: 50, ...over });

describe('tenant-email CLI', () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    db = await createTestDatabase();
    env = { DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY };
  });
  afterAll(() => db.drop());

  it('prints help for every command and exits 0', async () => {
    for (const args of [['--help'], ['settings', '--help'], ['settings', 'put', '--help'], ['migrate', '--help'], ['serve', '--help']]) {
      const r = await cli(args, env);
      expect({ args, code: r.code }).toEqual({ args, code: 0 });
      expect(r.stdout).toMatch(/Usage: tenant-email/);
    }
  });

  it('creates, updates (keeping the stored key), reads and deletes settings', async () => {
    const put = await cli(['settings', 'put', '--tenant', 'cli-a'], env, body());
    expect(put.code).toBe(0);
    expect(put.stderr).toContain('created settings for tenant cli-a');
    expect(JSON.parse(put.stdout)).toMatchObject({ tenant_id: 'cli-a', provider: 'sendgrid', api_key_set: true, api_key_masked: 'SG.…6789', daily_limit: 50 });

    const update = await cli(['settings', 'put', '--tenant', 'cli-a'], env, body({ api_key: undefined, from_name: 'Ops' }));
    expect(update.code).toBe(0);
    expect(update.stderr).toContain('updated');
    const got = await cli(['settings', 'get', '--tenant', 'cli-a'], env);
    expect(JSON.parse(got.stdout)).toMatchObject({ from_name: 'Ops', api_key_masked: 'SG.…6789', version: 2 });
    // The kept key still decrypts to the original.
    const store = createDeliveryStore(db.worker(1), { keys: { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, leaseSeconds: 60, globalDailyLimit: null });
    const claim = await store.claim({ tenantId: 'cli-a', eventSource: 's', eventId: 'e', eventType: 't', taskId: 'x', hasRecipient: true });
    expect(claim.outcome === 'claimed' && claim.settings?.primary.apiKey).toBe('SG.cli-test-key-0123456789');

    expect((await cli(['settings', 'delete', '--tenant', 'cli-a'], env)).code).toBe(0);
    const gone = await cli(['settings', 'get', '--tenant', 'cli-a'], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('tenant cli-a has no email settings');
  });

  it.each([
    ['not JSON', 'nope', /not valid JSON/],
    ['a bad address and an unknown field', body({ from_email: 'not-an-address', colour: 'red' }), /from_email: must be one email address[\s\S]*Unrecognized key: "colour"/],
    ['SES settings without a region', body({ provider: 'ses', provider_settings: { access_key_id: 'AKIDEXAMPLE000000000' } }), /provider_settings.region: must be an AWS region/],
    ['a typo in provider_settings', body({ provider: 'smtp', provider_settings: { host: 'smtp.example.com', usrname: 'x' } }), /Unrecognized key: "usrname"/],
    ['an endpoint override the platform does not allow', body({ provider_settings: { base_url: 'http://evil.example' } }), /endpoint overrides are disabled/],
    ['no key on create', body({ api_key: undefined }), /api_key is required/],
    ['an SMTP host on loopback', body({ provider: 'smtp', provider_settings: { host: '127.0.0.1', username: 'u' } }), /host: resolves to a loopback, private, link-local or metadata address/],
    ['an SMTP host on the metadata address', body({ provider: 'smtp', provider_settings: { host: '169.254.169.254', username: 'u' } }), /host: resolves to a loopback/],
    ['an SMTP host named localhost', body({ provider: 'smtp', provider_settings: { host: 'localhost', username: 'u' } }), /host: resolves to a loopback/],
  ])('rejects %s with a clear message and writes nothing', async (_n, input, message) => {
    const r = await cli(['settings', 'put', '--tenant', 'cli-bad'], env, input);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    const rows = await db.admin()`SELECT 1 FROM tenant_email_settings WHERE tenant_id = 'cli-bad' UNION ALL SELECT 1 FROM tenants WHERE id = 'cli-bad'`;
    expect(rows).toHaveLength(0);
  });

  it('rejects a bad tenant id and missing configuration with a fix-it message', async () => {
    const bad = await cli(['settings', 'get', '--tenant', 'a b'], env);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringMatching(/--tenant must be 1-128 characters/)]);
    const noDb = await cli(['settings', 'get', '--tenant', 'x'], { DB_ENCRYPTION_KEY: CANARY_DB_KEY });
    expect([noDb.code, noDb.stderr]).toEqual([1, expect.stringMatching(/DATABASE_URL is not set/)]);
    const noKey = await cli(['settings', 'put', '--tenant', 'x'], { DATABASE_URL: db.workerUrl }, body());
    expect([noKey.code, noKey.stderr]).toEqual([1, expect.stringMatching(/DB_ENCRYPTION_KEY is not set.*keys generate/)]);
    const unknown = await cli(['frobnicate'], env);
    expect(unknown.code).toBe(2);
  });

  it('refuses a settings body nested 60,000 deep with a message, not a stack overflow', async () => {
    const r = await cli(['settings', 'put', '--tenant', 'cli-deep'], env, `{"provider":"sendgrid","provider_settings":${'{"a":'.repeat(60_000)}1${'}'.repeat(60_000)}}`);
    expect([r.code, r.stderr.trim()]).toEqual([1, 'error: the settings body (see README: "Tenant settings") nests deeper than 64 levels']);
  });

  it('generates a fresh key that the configuration accepts', async () => {
    const a = await cli(['keys', 'generate'], {});
    const b = await cli(['keys', 'generate'], {});
    expect(a.code).toBe(0);
    expect(a.stdout).not.toBe(b.stdout);
    expect(Buffer.from(a.stdout.trim(), 'base64')).toHaveLength(48);
    expect(() => loadConfig({ DB_ENCRYPTION_KEY: a.stdout.trim() })).not.toThrow();
  });

  it('migrates (nothing to do on a migrated database)', async () => {
    const r = await cli(['migrate'], { MIGRATION_DATABASE_URL: db.ownerUrl });
    expect(r).toMatchObject({ code: 0, stdout: 'schema is up to date\n' });
  });

  describe('when the platform owns the tenants table', () => {
    const name = `platform_${Date.now()}`;
    let su: postgres.Sql;
    let platformEnv: Record<string, string>;
    beforeAll(async () => {
      su = postgres(db.superuserUrl, { max: 1, onnotice: () => {} });
      await su.unsafe(`CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(TEST_ROLES.ownerRole)}`);
      const ownerUrl = roleUrl(db.superuserUrl, TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, name);
      const owner = createSql(ownerUrl, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 30000, applicationName: 'platform' });
      await owner`CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL)`;
      await owner`INSERT INTO tenants (id, name) VALUES ('known', 'Known Corp')`;
      await migrate(owner, { workerRole: TEST_ROLES.workerRole });
      await owner.end();
      platformEnv = { DATABASE_URL: roleUrl(db.superuserUrl, TEST_ROLES.workerRole, TEST_ROLES.workerPassword, name), DB_ENCRYPTION_KEY: CANARY_DB_KEY };
    });
    afterAll(async () => {
      await su.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await su.end();
    });

    it('leaves the platform table alone and says what is missing for an unknown tenant', async () => {
      const r = await cli(['settings', 'put', '--tenant', 'ghost'], platformEnv, body());
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`tenant "ghost" has no row in the platform's tenants table; create the tenant there first`);
      const ok = await cli(['settings', 'put', '--tenant', 'known'], platformEnv, body());
      expect(ok.code).toBe(0);
      const u = new URL(db.superuserUrl);
      u.pathname = `/${name}`;
      const platform = postgres(u.toString(), { max: 1 });
      const [rls] = await platform`SELECT relrowsecurity FROM pg_class WHERE oid = 'tenants'::regclass`;
      const [settings] = await platform`SELECT tenant_id FROM tenant_email_settings`;
      await platform.end();
      expect(rls!.relrowsecurity).toBe(false);
      expect(settings!.tenant_id).toBe('known');
    });
  });
});
