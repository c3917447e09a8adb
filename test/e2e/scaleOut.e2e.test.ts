import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { deliver, type Delivery } from '../helpers/broker';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, taskData } from '../helpers/events';
import { describeWithPgbouncer, workerDatabase } from '../helpers/pgbouncer';
import { TEST_ROLES } from '../helpers/roles';
import { serveOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');
const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

const PROCESSES = 6;
const SERVER_POOL = 4;
const TENANTS = 200;
const EVENTS_PER_TENANT = 3;
/** Every tenth tenant may send 2 emails a day: its third event is over the limit. */
const LIMITED = (t: number) => t % 10 === 0;
const LIMIT = 2;

/**
 * Issue 22: many pods, one database, exact. Six worker processes (the built `tenant-email serve`,
 * as the image runs it) connect through one PgBouncer in transaction mode with a server pool of 4
 * to one PostgreSQL. Every event is delivered twice at once, the two copies to different
 * processes, the way two broker dispatchers can: one email per event, no more, every tenant's
 * quota exact, and PostgreSQL never sees more of the worker's connections than the pooler's pool.
 */
describeWithPgbouncer()('many worker processes through one PgBouncer', () => {
  let db: TestDatabase;
  let through: Awaited<ReturnType<typeof workerDatabase>> | undefined;
  let mailbox: Mailbox;
  const children: Array<ChildProcessByStdio<null, Readable, Readable>> = [];
  const urls: string[] = [];
  const tenant = (t: number) => `scale-${String(t).padStart(3, '0')}`;

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox();
    const sql = db.worker(4);
    for (let t = 0; t < TENANTS; t++) {
      await putSettings(sql, { current: KEY }, tenant(t), {
        provider: 'sendgrid', api_key: `SG.CANARY-scale-${t}-000000`, from_email: `noreply@${tenant(t)}.example`,
        provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: LIMITED(t) ? LIMIT : 1000,
      });
    }
    await sql.end();
    through = await workerDatabase(db, true, SERVER_POOL);
    for (let i = 0; i < PROCESSES; i++) {
      const child = spawn(process.execPath, [CLI, 'serve', '--port', '0'], {
        env: {
          PATH: process.env.PATH,
          DATABASE_URL: through.workerUrl,
          ...through.env,
          DB_POOL_MAX: '3',
          DB_ENCRYPTION_KEY: CANARY_DB_KEY,
          ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true',
          SENDER_DOMAIN_POLICY: 'provider',
          ADMIN_API_ENABLED: 'false',
          LOG_LEVEL: 'info',
          // A busy 2-core machine runs seven node processes here: generous limits, so only the
          // guarantees are tested, never the machine's speed.
          PROVIDER_TIMEOUT_MS: '20000', CLAIM_LEASE_SECONDS: '60', DB_POOL_WAIT_MS: '10000',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      urls.push(`http://127.0.0.1:${(await serveOutput(child)).port}/`);
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => (c.once('exit', r), c.kill('SIGTERM'))) : null)));
    await through?.stop();
    await mailbox?.close();
    await db?.drop();
  });

  it('sends one email per event with duplicates at different processes, keeps every quota exact, and stays within the server pool', async () => {
    const su = db.admin();
    // PostgreSQL's view of the worker role's connections, sampled while the events run.
    let maxServer = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [r] = await su`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = ${TEST_ROLES.workerRole} AND datname = ${db.name}`;
        maxServer = Math.max(maxServer, r!.n as number);
        await new Promise((res) => setTimeout(res, 20));
      }
    })();

    const run = randomUUID().slice(0, 8);
    const events = Array.from({ length: TENANTS * EVENTS_PER_TENANT }, (_, i) => {
      const t = i % TENANTS;
      const id = `scale-${run}-${i}`;
      return { id, t, ...binaryEvent({ tenant: tenant(t), id, data: taskData({ notify_email: `${id}@scale.example` }) }) };
    });
    const policy = { retry: 30, backoffMs: 50, maxBackoffMs: 1000, timeoutMs: 60_000 };
    // Two copies of each event, at once, to two different processes; each copy's retries go on round the processes.
    const route = (first: number) => {
      let n = 0;
      return () => urls[(first + n++) % PROCESSES]!;
    };
    const copies: Array<Promise<[Delivery, Delivery]>> = [];
    let next = 0;
    const inFlight = 24;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < events.length) {
          const e = events[next++]!;
          const p = Promise.all([deliver(route(e.t % PROCESSES), e, policy), deliver(route((e.t + 3) % PROCESSES), e, policy)]);
          copies.push(p);
          await p;
        }
      }),
    );
    const results = await Promise.all(copies);
    sampling = false;
    await sampler;

    const outcome = new Map(results.map(([a, b]) => [a.id, [a, b]] as const));
    const mine = mailbox.emails.filter((m) => m.body.personalizations[0]!.to[0]!.email.startsWith(`scale-${run}-`));
    const perRecipient = new Map<string, number>();
    for (const m of mine) {
      const to = m.body.personalizations[0]!.to[0]!.email;
      perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1);
    }
    const delivered = events.filter((e) => outcome.get(e.id)!.some((d) => d.result === 'delivered'));
    const overLimit = events.filter((e) => outcome.get(e.id)!.every((d) => d.result === 'dead-lettered'));
    // eslint-disable-next-line no-console
    console.log(
      `scale-out: ${PROCESSES} processes through PgBouncer (server pool ${SERVER_POOL}), ${events.length} events × 2 copies over ${TENANTS} tenants: ` +
        `${delivered.length} delivered, ${overLimit.length} over the daily limit, ${mine.length} emails; most server connections seen ${maxServer}`,
    );

    // Every event ends one way for both copies: sent (202) or over its tenant's limit (422).
    expect(events.filter((e) => !delivered.includes(e) && !overLimit.includes(e)).map((e) => e.id)).toEqual([]);
    expect(overLimit.every((e) => outcome.get(e.id)!.every((d) => d.code === 'quota_exceeded'))).toBe(true);
    // Emails = distinct events sent, none twice.
    expect([...perRecipient.values()].filter((n) => n > 1)).toEqual([]);
    expect(mine).toHaveLength(delivered.length);
    expect(new Set(perRecipient.keys())).toEqual(new Set(delivered.map((e) => `${e.id}@scale.example`)));
    // Every quota exact, per UTC day (a run may cross midnight, when each tenant's day starts
    // again): each day's units spent = that day's sent ledger rows, never above the limit; a
    // limited tenant whose claims all fell on one day sent exactly its limit, the others all
    // their events.
    const perDay = await su`
      SELECT u.tenant_id, u.day::text AS day, sum(u.sent_count)::int AS used,
             (SELECT count(*)::int FROM email_deliveries d
               WHERE d.tenant_id = u.tenant_id AND d.quota_day = u.day AND d.status = 'sent' AND d.event_id LIKE ${`scale-${run}-%`}) AS sent
      FROM tenant_email_usage u WHERE u.tenant_id LIKE 'scale-%' GROUP BY u.tenant_id, u.day`;
    for (const r of perDay) {
      expect({ tenant: r.tenant_id, day: r.day, used: r.used }).toEqual({ tenant: r.tenant_id, day: r.day, used: r.sent });
      expect(r.used as number).toBeLessThanOrEqual(LIMITED(Number(String(r.tenant_id).slice(6))) ? LIMIT : 1000);
    }
    for (let t = 0; t < TENANTS; t++) {
      const days = perDay.filter((r) => r.tenant_id === tenant(t));
      const sent = days.reduce((a, r) => a + (r.sent as number), 0);
      const emails = mine.filter((m) => m.body.from.email === `noreply@${tenant(t)}.example`).length;
      const refused = overLimit.filter((e) => e.t === t).length;
      expect({ tenant: tenant(t), emails, sentAndRefused: sent + refused }).toEqual({ tenant: tenant(t), emails: sent, sentAndRefused: EVENTS_PER_TENANT });
      if (!LIMITED(t)) expect({ tenant: tenant(t), sent }).toEqual({ tenant: tenant(t), sent: EVENTS_PER_TENANT });
      else if (days.length === 1) expect({ tenant: tenant(t), sent }).toEqual({ tenant: tenant(t), sent: LIMIT });
    }
    // PostgreSQL never saw more of the worker's connections than PgBouncer's server pool, though
    // the six processes hold 18 client connections to the pooler.
    expect(maxServer).toBeGreaterThan(0);
    expect(maxServer).toBeLessThanOrEqual(SERVER_POOL);
  }, 600_000);
});
