import { keyId, loadConfig } from '../../src/config';
import { rotateKeys } from '../../src/db/maintenance';
import { migrate } from '../../src/db/migrate';
import { deleteSettings, putSettings } from '../../src/db/settings';
import { startWorker } from '../../src/server';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { captureLogs } from '../helpers/logCapture';
import { TEST_ROLES } from '../helpers/roles';
import { UsageError } from '../../src/errors';

const A = 'CANARY-KEYCHECK-A-0123456789abcdef0123456789';
const B = 'CANARY-KEYCHECK-B-fedcba9876543210fedcba9876';
const key = (secret: string) => ({ id: keyId(secret), secret });
const input = { provider: 'sendgrid', api_key: 'SG.CANARY-keycheck-000000', from_email: 'ops@t.example', provider_settings: {}, enabled: true, daily_limit: 10 } as never;

/**
 * A worker whose DB_ENCRYPTION_KEY cannot open the stored settings refuses to start, instead of
 * reporting ready and answering every event 503 settings_undecryptable. It knows from the key
 * census (sql/006), without decrypting any tenant's row.
 */
describe('start-up key check', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  const census = async () => (await db.worker(1)`SELECT key_id, settings_rows::int AS n FROM email_encryption_key_census()`).map((r) => [r.key_id, r.n]);
  const start = async (env: Record<string, string>) => {
    const logs = captureLogs();
    const w = await startWorker(loadConfig({ DATABASE_URL: db.workerUrl, ...env }), logs.logger, { port: 0 }).catch((e: unknown) => e);
    if (!(w instanceof Error)) await (w as { shutdown(): Promise<void> }).shutdown();
    return w;
  };

  it('counts settings rows per key id as they are written, rotated and deleted; the worker role reads counts only', async () => {
    const sql = db.worker(2);
    expect(await census()).toEqual([]);
    await putSettings(sql, { current: key(A) }, 'k1', input);
    await putSettings(sql, { current: key(A) }, 'k2', input);
    await putSettings(sql, { current: key(A) }, 'k2', input); // an update with the same key: still one row
    expect(await census()).toEqual([[keyId(A), 2]]);
    await rotateKeys(db.admin(), { from: key(A), to: key(B), batchSize: 1, maxBatches: 1 });
    expect((await census()).sort()).toEqual([[keyId(A), 1], [keyId(B), 1]].sort());
    await expect(sql`SELECT * FROM email_encryption_key_use`).rejects.toMatchObject({ code: '42501' });
    await expect(sql`UPDATE email_encryption_key_use SET settings_rows = 0`).rejects.toMatchObject({ code: '42501' });
  });

  it('refuses a wrong key, and a ring that misses rows mid-rotation, saying which key ids and what to do', async () => {
    // One row is under A, one under B (the rotation above stopped after one batch).
    const wrong = 'CANARY-KEYCHECK-C-00112233445566778899aabbcc';
    const err = await start({ DB_ENCRYPTION_KEY: wrong });
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/DB_ENCRYPTION_KEY does not open the stored tenant settings/);
    expect((err as Error).message).toContain(`${keyId(A)} (1 rows)`);
    expect((err as Error).message).toContain(`DB_ENCRYPTION_KEY has key id ${keyId(wrong)}`);
    for (const s of [A, B, wrong]) expect((err as Error).message).not.toContain(s);

    const partial = await start({ DB_ENCRYPTION_KEY: B });
    expect((partial as Error).message).toMatch(/1 of 2 tenant settings are encrypted with key id .*DB_ENCRYPTION_KEY_PREVIOUS/);

    expect(await start({ DB_ENCRYPTION_KEY: B, DB_ENCRYPTION_KEY_PREVIOUS: A })).not.toBeInstanceOf(Error);
  });

  it('starts once the rows it cannot open are gone', async () => {
    const [underA] = await db.admin()`SELECT tenant_id FROM tenant_email_settings WHERE key_id = ${keyId(A)}`;
    await deleteSettings(db.worker(1), underA!.tenant_id);
    expect(await census()).toEqual([[keyId(B), 1]]);
    expect(await start({ DB_ENCRYPTION_KEY: B })).not.toBeInstanceOf(Error);
  });

  it('an upgrade counts the rows written before the census existed (migration 006 on a database with settings)', async () => {
    const old = await createTestDatabase();
    try {
      // Back to the schema before 006, as an existing deployment has it (the webhook secrets'
      // trigger of sql/010 uses the same function; this test is about the settings rows).
      await old.admin().unsafe(`
        DROP TRIGGER tenant_email_webhooks_key_use ON tenant_email_webhooks;
        DROP TRIGGER tenant_email_settings_key_use ON tenant_email_settings;
        DROP FUNCTION email_encryption_key_census(); DROP FUNCTION email_encryption_key_count();
        DROP TABLE email_encryption_key_use;
        DELETE FROM email_worker_migrations WHERE name = '006_key_census.sql'`);
      for (const [t, k] of [['o1', A], ['o2', A], ['o3', B]] as const) await putSettings(old.worker(1), { current: key(k) }, t, input);
      const result = await migrate(old.owner(), { workerRole: TEST_ROLES.workerRole });
      expect(result.applied).toEqual(['006_key_census.sql']);
      const rows = await old.worker(1)`SELECT key_id, settings_rows::int AS n FROM email_encryption_key_census()`;
      expect(rows.map((r) => [r.key_id, r.n]).sort()).toEqual([[keyId(A), 2], [keyId(B), 1]].sort());
      // FORCE ROW LEVEL SECURITY is back on for the owner.
      const [c] = await old.owner()`SELECT relforcerowsecurity FROM pg_class WHERE oid = 'tenant_email_settings'::regclass`;
      expect(c!.relforcerowsecurity).toBe(true);
    } finally {
      await old.drop();
    }
  });

  it('refuses a key of identical characters, or of too few distinct ones', () => {
    for (const k of ['a'.repeat(32), 'ab'.repeat(24), 'changemechangemechangemechangeme']) {
      expect(() => loadConfig({ DB_ENCRYPTION_KEY: k })).toThrow(/fewer than 8 distinct characters, so it is not random data/);
    }
  });
});
