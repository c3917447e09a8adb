import { randomUUID } from 'node:crypto';
import { keyId } from '../../src/config';
import { createSql, callDeadline, type Sql } from '../../src/db/connect';
import { bounded } from '../../src/db/deadline';
import { putSettings, withTenant } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { cli } from '../helpers/cli';
import { captureLogs } from '../helpers/logCapture';
import { describeWithPgbouncer, workerDatabase } from '../helpers/pgbouncer';
import { until } from '../helpers/until';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

/**
 * The worker behind a real PgBouncer (Debian's, 1.18) in transaction mode with a server pool of 2:
 * the deployment issue 22 asks to support. A tenant's context is transaction-local, so a shared
 * server connection never carries it into another client's transaction.
 */
describeWithPgbouncer()('behind PgBouncer in transaction mode', () => {
  let db: TestDatabase;
  let through: Awaited<ReturnType<typeof workerDatabase>>;
  let url: string;
  let mailbox: Mailbox;
  const pools: Sql[] = [];
  const pool = (o: Partial<Parameters<typeof createSql>[1]> = {}) => {
    const s = createSql(url, { max: 10, connectTimeoutSeconds: 10, statementTimeoutMs: 5000, applicationName: 'pgbouncer-test', pooler: 'pgbouncer', prepare: false, ...o });
    pools.push(s);
    return s;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    through = await workerDatabase(db, true, 2);
    url = through.workerUrl;
    mailbox = await startMailbox();
    const sql = db.worker(2);
    for (const t of ['pb-a', 'pb-b', 'pb-c']) {
      await putSettings(sql, { current: KEY }, t, { provider: 'sendgrid', api_key: `SG.CANARY-${t}-0000000000`, from_email: `noreply@${t}.example`, provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 1000 });
    }
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
    await through.stop();
    await mailbox.close();
    await db.drop();
  });

  it('is refused with a statement_timeout start-up parameter, which is why DB_POOLER=pgbouncer sends none', async () => {
    const direct = pool({ pooler: 'none' });
    await expect(direct`SELECT 1`).rejects.toThrow(/unsupported startup parameter: statement_timeout/);
    expect(await pool()`SELECT 1 AS ok`).toEqual([{ ok: 1 }]);
  });

  it("never lets one tenant's context reach another transaction on a shared server connection, under concurrency", async () => {
    const sql = pool({ max: 20 });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const tenant = ['pb-a', 'pb-b', 'pb-c'][i % 3]!;
        return withTenant(sql, tenant, async (tx) => {
          const rows = await tx`SELECT tenant_id FROM tenant_email_settings`;
          const [ctx] = await tx`SELECT current_setting('app.current_tenant_id', true) AS t`;
          return { tenant, seen: rows.map((r) => r.tenant_id as string), ctx: ctx!.t as string };
        });
      }),
    );
    for (const r of results) expect([r.tenant, r.seen, r.ctx]).toEqual([r.tenant, [r.tenant], r.tenant]);
    // Outside a tenant transaction, a pooled server connection shows no tenant at all.
    const outside = await Promise.all(Array.from({ length: 20 }, () => sql`SELECT count(*)::int AS n FROM tenant_email_settings`));
    expect(outside.every((r) => r[0]!.n === 0)).toBe(true);
  });

  it('sets the statement timeout inside each tenant transaction (no start-up parameter behind the pooler), and it ends with the transaction', async () => {
    const sql = pool({ max: 1, statementTimeoutMs: 400 });
    const [inside] = await withTenant(sql, 'pb-a', (tx) => tx`SELECT current_setting('statement_timeout') AS t, pg_backend_pid() AS pid`);
    expect(inside!.t).toBe('400ms');
    // The next client on that server connection gets the server's default, not ours.
    const [after] = await sql`SELECT current_setting('statement_timeout') AS t`;
    expect(after!.t).toBe('0');
    // And the server enforces it: a statement past it is cancelled by PostgreSQL (57014), not only by the client.
    await expect(withTenant(sql, 'pb-a', (tx) => tx`SELECT pg_sleep(3)`)).rejects.toMatchObject({ code: '57014' });
  });

  it('runs the CLI through it (DB_POOLER=pgbouncer, prepared statements off): settings and templates', async () => {
    const env = { DATABASE_URL: url, DB_POOLER: 'pgbouncer', DB_ENCRYPTION_KEY: CANARY_DB_KEY };
    const put = await cli(['settings', 'put', '--tenant', 'pb-cli'], env, JSON.stringify({ provider: 'sendgrid', api_key: 'SG.CANARY-pb-cli-0000000000', from_email: 'ops@pb-cli.example', daily_limit: 5 }));
    expect([put.code, put.stderr]).toEqual([0, expect.stringContaining('created settings for tenant pb-cli')]);
    const got = await cli(['settings', 'get', '--tenant', 'pb-cli'], env);
    expect(JSON.parse(got.stdout)).toMatchObject({ tenant_id: 'pb-cli', api_key_masked: 'SG.…0000', daily_limit: 5 });
    const tpl = await cli(['templates', 'put', '--tenant', 'pb-cli', '--type', 'codetether.task.created'], env, JSON.stringify({ subject: 'Done: {{task_id}}' }));
    expect(tpl.code).toBe(0);
    expect((await cli(['settings', 'delete', '--tenant', 'pb-cli'], env)).code).toBe(0);
  });

  it('holds the call deadline: a statement past it is cancelled through the pooler, and the server connection serves the next call', async () => {
    const sql = pool({ max: 1, statementTimeoutMs: 300, connectTimeoutSeconds: 1 });
    await expect(bounded(sql`SELECT pg_sleep(30)`, callDeadline(sql))).rejects.toThrow();
    expect(await sql`SELECT 2 AS ok`).toEqual([{ ok: 2 }]);
  });

  it('runs the worker end to end through it: claims, quota, idempotency and outcomes, with duplicates delivered concurrently', async () => {
    const worker = await startTestWorker(db, captureLogs().logger, { DATABASE_URL: url, DB_POOLER: 'pgbouncer', DB_POOL_MAX: '8', ADMIN_API_ENABLED: 'false' });
    try {
      const events = Array.from({ length: 60 }, (_, i) => binaryEvent({ tenant: ['pb-a', 'pb-b', 'pb-c'][i % 3]!, id: `pb-${i}-${randomUUID().slice(0, 6)}`, data: taskData({ notify_email: `r${i}@pb.example` }) }));
      // Every event twice, at the same time: one email each.
      const answers = await Promise.all([...events, ...events].map((e) => post(worker.url, e)));
      const retry = answers.map((a, i) => ({ a, e: [...events, ...events][i]! })).filter((x) => x.a.status === 409);
      for (const { e } of retry) expect((await post(worker.url, e)).status).toBe(202);
      expect(answers.every((a) => a.status === 202 || a.status === 409)).toBe(true);
      expect(mailbox.emails.filter((m) => m.body.personalizations[0]!.to[0]!.email.endsWith('@pb.example'))).toHaveLength(60);
      const [r] = await db.admin()`SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent, count(*)::int AS n FROM email_deliveries WHERE event_id LIKE 'pb-%'`;
      expect(r).toEqual({ sent: 60, n: 60 });
    } finally {
      await worker.shutdown();
    }
  });

  it('sheds load when every server connection is taken: 503 database_unavailable with Retry-After after DB_POOL_WAIT_MS, and the event is sent on the retry', async () => {
    const worker = await startTestWorker(db, captureLogs().logger, { DATABASE_URL: url, DB_POOLER: 'pgbouncer', DB_POOL_MAX: '4', DB_POOL_WAIT_MS: '300', ADMIN_API_ENABLED: 'false' });
    // Two open transactions hold PgBouncer's whole server pool (2) for this database and role.
    const holder = pool({ max: 2 });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const holding: Array<Promise<unknown>> = [];
    let held = 0;
    const bothHeld = new Promise<void>((resolve) => {
      for (let i = 0; i < 2; i++) {
        holding.push(
          holder.begin(async (tx) => {
            await tx`SELECT 1`;
            if (++held === 2) resolve();
            await released;
          }),
        );
      }
    });
    try {
      await bothHeld;
      const event = binaryEvent({ tenant: 'pb-a', id: `pb-wait-${randomUUID().slice(0, 6)}`, data: taskData({ notify_email: 'wait@pb-wait.example' }) });
      const answer = await post(worker.url, event);
      expect([answer.status, JSON.parse(answer.text).code, answer.headers.get('retry-after')]).toEqual([503, 'database_unavailable', '1']);
      expect(mailbox.emails.filter((m) => m.body.personalizations[0]!.to[0]!.email === 'wait@pb-wait.example')).toHaveLength(0);
      release();
      await Promise.all(holding);
      // A claim the cancel may have let commit is given up by its token once the database is back.
      await until(async () => {
        const rows = await db.admin()`SELECT status FROM email_deliveries WHERE tenant_id = 'pb-a' AND event_id = ${event.headers['ce-id']!}`;
        return rows.every((r) => r.status !== 'claimed');
      }, 30_000);
      // The broker's retry is sent.
      expect((await post(worker.url, event)).status).toBe(202);
      expect(mailbox.emails.filter((m) => m.body.personalizations[0]!.to[0]!.email === 'wait@pb-wait.example')).toHaveLength(1);
    } finally {
      release();
      await Promise.allSettled(holding);
      await worker.shutdown();
    }
  });
});
