import postgres from 'postgres';
import { keyId } from '../../src/config';
import { authenticateApiKey } from '../../src/db/apiKeys';
import { createSql, type Sql, callDeadline, setCallDeadline } from '../../src/db/connect';
import { mapDatabaseError } from '../../src/db/errors';
import { getSettings, putSettings, withTenant } from '../../src/db/settings';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

const KEY = { id: keyId('d'.repeat(40)), secret: 'd'.repeat(40) };
const settings = { provider: 'sendgrid' as const, api_key: 'SG.deadline-test-key-000', from_email: 'noreply@acme.example', provider_settings: {}, enabled: true, daily_limit: 10 };
// One connect attempt (1 s) plus one statement (500 ms): the deadline of every call on the pool.
const OPTS = { max: 1, connectTimeoutSeconds: 1, statementTimeoutMs: 500, applicationName: 'deadline-test' };
const DEADLINE_MS = 1500;

const timed = async <T>(p: Promise<T>) => {
  const t0 = Date.now();
  const outcome = await p.then((value) => ({ value }), (error: unknown) => ({ error }));
  return { ...outcome, ms: Date.now() - t0 };
};

/**
 * The admin API, the CLI and the template load reach the database through withTenant() and the
 * API-key lookup. postgres.js waits for a connection without end, so these carry the pool's
 * deadline (src/db/deadline.ts): past it the caller gets DEADLINE (503 database_unavailable),
 * and a transaction that had not started by then writes nothing when it finally could.
 */
describe('database call deadlines outside the hot path', () => {
  let db: TestDatabase;
  const pools: Sql[] = [];
  const pool = (url: string) => {
    const sql = createSql(url, OPTS);
    pools.push(sql);
    return sql;
  };
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end({ timeout: 1 })));
    await db.drop();
  });

  it('createSql records connect timeout + statement timeout as the pool deadline', () => {
    expect(callDeadline(pool(db.workerUrl))).toBe(DEADLINE_MS);
  });

  it('a transaction that cannot start in time answers DEADLINE and writes nothing when the connection frees up', async () => {
    const sql = pool(db.workerUrl);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const held = new Promise<void>((r) => (holding = r));
    // The pool's only connection, idle in a transaction (no statement runs, so no statement_timeout).
    const holder = sql.begin(async (tx) => {
      await tx`SELECT 1`;
      holding();
      await gate;
    });
    await held;

    const put = await timed(putSettings(sql, { current: KEY }, 'late-tenant', settings));
    expect((put as { error?: { code?: string } }).error?.code).toBe('DEADLINE');
    expect(mapDatabaseError((put as { error: unknown }).error)).toMatchObject({ code: 'database_unavailable', status: 503 });
    // Not before the deadline (a timer never fires early); how long after depends on the machine,
    // and without the deadline the call would wait until the holder lets go, so DEADLINE proves it.
    expect(put.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);

    release();
    await holder;
    // Queued behind the abandoned transaction on the same single connection: by the time this
    // answers, the abandoned one has had its connection and rolled back.
    await sql`SELECT 1`;
    const su = db.admin();
    const [late] = await su`SELECT count(*)::int AS n FROM tenant_email_settings WHERE tenant_id = 'late-tenant'`;
    expect(late!.n).toBe(0);

    // The pool is healthy, and the same write goes through when it can start in time.
    await putSettings(sql, { current: KEY }, 'late-tenant', settings);
    const [now] = await su`SELECT count(*)::int AS n FROM tenant_email_settings WHERE tenant_id = 'late-tenant'`;
    expect(now!.n).toBe(1);
  }, 600_000);

  it('a transaction that started in time runs to its end, past the deadline: the answer never contradicts the write', async () => {
    const sql = pool(db.workerUrl);
    const run = await timed(
      withTenant(sql, 'acme', async (tx) => {
        for (let i = 0; i < 4; i++) await tx`SELECT pg_sleep(0.4)`; // each under the 500 ms statement timeout
        return 'done';
      }),
    );
    expect(run).toMatchObject({ value: 'done' });
    expect(run.ms).toBeGreaterThan(DEADLINE_MS);
  }, 600_000);

  describe('when a connection never comes (a partitioned server: the TCP connect neither completes nor fails)', () => {
    // postgres.js waits for its socket before it starts its connect timer, so a socket factory
    // that never resolves is a connection that never comes, deterministically.
    const neverConnects = () => {
      // `socket` is a documented postgres.js option that its typings leave out.
      const sql = postgres(db.workerUrl, { max: 1, socket: () => new Promise<never>(() => {}), onnotice: () => {} } as postgres.Options<{}>) as unknown as Sql;
      pools.push(sql);
      return sql;
    };
    const deadlined = () => {
      const sql = neverConnects();
      setCallDeadline(sql, DEADLINE_MS);
      return sql;
    };

    it('without a deadline the call is still waiting after 2 s (what the deadline is for)', async () => {
      const pending = Symbol('pending');
      const r = await Promise.race([getSettings(neverConnects(), 'acme').catch((e: unknown) => e), new Promise((res) => setTimeout(() => res(pending), 2000))]);
      expect(r).toBe(pending);
    });

    it('the API-key lookup answers DEADLINE at the deadline', async () => {
      const r = await timed(authenticateApiKey(deadlined(), `tew_${'a'.repeat(12)}_${'b'.repeat(43)}`));
      expect((r as { error?: { code?: string } }).error?.code).toBe('DEADLINE');
      expect(r.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50); // never early; the call alone would never end
    }, 600_000);

    it('a settings read answers DEADLINE at the deadline', async () => {
      const r = await timed(getSettings(deadlined(), 'acme'));
      expect((r as { error?: { code?: string } }).error?.code).toBe('DEADLINE');
      expect(r.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50); // never early; the call alone would never end
    }, 600_000);
  });
});
