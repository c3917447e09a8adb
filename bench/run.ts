import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { keyId } from '../src/config';
import { createSql, type Sql } from '../src/db/connect';
import { createDeliveryStore } from '../src/db/deliveries';
import { migrate } from '../src/db/migrate';
import { putSettings } from '../src/db/settings';
import { bootstrapDatabase, freePort, roleUrl, startEmbeddedPostgres } from '../dev/embeddedPostgres';
import { findPgbouncer, startPgBouncer } from '../dev/pgbouncer';
import { closedLoop, closedLoopFn, openLoop, quantile, type BenchRequest, type RunResult } from './load';
import { WORKER_NODE_FLAGS } from '../src/core/runtimeFlags';
import { parseTailRecords, SLOW_DB_MS, SLOW_PROVIDER_MS, STALL_MS, summarizeTail, type TailSummary } from './tail';

/**
 * `npm run bench`: throughput, latency, round trips, memory and cold start, from one command on a clean clone. Everything
 * runs on this machine: an embedded PostgreSQL (with pg_stat_statements), a fake SendGrid process,
 * the built worker as its own process, and the load generator in this process. See
 * docs/PERFORMANCE.md for a recorded run and how to read it.
 */

// The production build the image ships (npm run build), not this tooling's own copy of src/.
const DIST = path.join(__dirname, '..', '..', 'dist');
const CLI = path.join(DIST, 'cli.js');
/** The one statement a worker runs on a timer, not per event: the outage switch's refresh (src/db/providerSwitch.ts). */
const BACKGROUND_QUERY = 'SELECT provider, disabled_at, disabled_by, note FROM email_disabled_providers%';
const BARE = path.join(__dirname, 'bare.js');
const FAKE = path.join(__dirname, 'fakeSendgrid.js');
const TAIL_PROBE = path.join(__dirname, 'tailProbe.js');
/** The image's compile-cache filler (the Dockerfile runs it at build time) and the tree it fills for. */
const ROOT = path.join(__dirname, '..', '..');
const FILL_COMPILE_CACHE = path.join(ROOT, 'scripts', 'image', 'fill-compile-cache.js');

interface Options {
  soakSeconds: number;
  soakWindowSeconds: number;
  events: number;
  concurrency: number;
  tenants: number;
  coldStarts: number;
  poolMax: number;
  halfRateSeconds: number;
  quotaLimit: number;
  write?: string;
  workerNodeArgs: string;
  workerEnv: string[];
  scaleOut?: string;
  serverPool: number;
  coldOnly: boolean;
  node: string;
  tailProfile: boolean;
}

const program = new Command()
  .name('bench')
  .description('throughput, latency, round trips, memory and cold start of the worker, beside the ceilings')
  .option('--events <n>', 'events per run', (v) => Number(v), 20_000)
  .option('--concurrency <n>', 'requests in flight (closed loop)', (v) => Number(v), 32)
  .option('--tenants <n>', 'tenants the events are spread over', (v) => Number(v), 200)
  .option('--cold-starts <n>', 'cold starts to take the median of', (v) => Number(v), 5)
  .option('--pool-max <n>', "the worker's DB_POOL_MAX (and the direct-SQL ceiling's pool)", (v) => Number(v), 4)
  .option('--half-rate-seconds <n>', 'length of each open-loop run (at half and at a quarter of the peak rate)', (v) => Number(v), 10)
  .option('--quota-limit <n>', 'daily limit of the overshoot check tenant', (v) => Number(v), 500)
  .option('--write <file>', 'also write the report as Markdown to this file')
  .option('--soak-seconds <n>', 'soak mode instead of the full bench: this long at half the peak rate, RSS and errors per window (600 for the recorded soak)', (v) => Number(v), 0)
  .option('--soak-window-seconds <n>', 'length of one soak window (one row of the soak table)', (v) => Number(v), 60)
  .option('--scale-out <processes>', 'scale-out mode instead of the full bench: worker processes through one PgBouncer (transaction mode), e.g. 1,2,4', undefined)
  .option('--server-pool <n>', "scale-out mode: PgBouncer's server pool (default_pool_size), all PostgreSQL connections the workers get", (v) => Number(v), 8)
  .option('--cold-only', 'cold-start mode instead of the full bench: only the cold starts (exec → /readyz 200, and → the first event\'s 202), worker beside bare express', false)
  .option('--tail-profile', 'also profile the open loops\' slowest events: a probe in the worker (bench/tailProbe.ts) records database round trips, provider calls, GC pauses and event-loop stalls, and the report says which of them the slowest 1% overlapped (the probe costs the worker some CPU)', false)
  .option('--node <path>', 'the node binary the worker and the bare app run on (e.g. the image\'s Node 22, for its compile cache)', process.execPath)
  .option('--worker-env <KEY=value...>', 'extra worker environment, e.g. LOG_LEVEL=warn DB_POOL_MAX=16', [])
  .option('--worker-node-args <args>', 'extra node flags for the long-running worker, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"', '');

/** --node: the binary every worker and bare-app process runs on (the fake SendGrid and this process stay on this node). */
let nodeBin = process.execPath;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------- processes

interface Child {
  proc: ChildProcess;
  port: number;
  stop(): Promise<number | null>;
}

/**
 * Spawn a node process on a free port and wait until GET /readyz answers 200. `readyMs` is exec →
 * that first 200: the cold start, when the poll interval is short.
 */
async function spawnReady(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { nodeArgs?: string[]; pollMs?: number } = {},
): Promise<Child & { t0: bigint; readyMs: number }> {
  const port = await freePort();
  const t0 = process.hrtime.bigint();
  const proc = spawn(script === FAKE ? process.execPath : nodeBin, [...(opts.nodeArgs ?? []), script, ...args], { env: { ...env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${path.basename(script)} exited ${proc.exitCode} before it was ready: ${stderr}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`${path.basename(script)} was not ready within 30 s: ${stderr}`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 10));
  }
  return {
    proc,
    port,
    t0,
    readyMs: Number(process.hrtime.bigint() - t0) / 1e6,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (c) => resolve(c));
        proc.kill('SIGTERM');
      }),
  };
}

/** The worker's node flags: the image's own, then any --worker-node-args. */
const workerNodeArgs = (o: Options): string[] => [...WORKER_NODE_FLAGS, ...o.workerNodeArgs.split(' ').filter(Boolean)];

/** The report's lines on how the worker ran: its node flags and its environment (secrets named, not shown). */
const workerLines = (o: Options, printableEnv: Record<string, string | undefined>): string[] => [
  `worker node flags: ${workerNodeArgs(o).join(' ')} (the image's, src/core/runtimeFlags.ts${o.workerNodeArgs ? ', plus --worker-node-args' : ''})`,
  `worker env: ${Object.entries(printableEnv).map(([k, v]) => `${k}=${v}`).join(' ')} (+ DATABASE_URL, DB_ENCRYPTION_KEY)`,
];

/** The report's line on where it ran: the machine, Node, and how PostgreSQL was set up. */
function machineLine(pgVersion: string): string {
  const cpu = os.cpus();
  return `machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${f1(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; Node ${nodeBin === process.execPath ? process.version : `${spawnSync(nodeBin, ['--version'], { encoding: 'utf8' }).stdout.trim()} for the worker and bare express (${nodeBin}), ${process.version} for the load and the fake SendGrid`}; PostgreSQL ${pgVersion} (embedded, fsync on, tables analyzed after each warm-up)`;
}

/** The bare express app's environment, for its ceiling, its cold starts and its latency floor. */
const BARE_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_ENV: 'production' };

/**
 * exec → first 200 from /readyz, in milliseconds; with `first`, also exec → the answer to that
 * event, sent as soon as the process is ready (what a scale-from-zero request waits for: the
 * modules only an event needs, its provider SDK included, load then).
 */
async function coldStart(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { nodeArgs?: string[]; first?: BenchRequest } = {},
): Promise<{ readyMs: number; firstMs: number | null; firstStatus: number | null }> {
  const child = await spawnReady(script, args, env, { pollMs: 2, nodeArgs: opts.nodeArgs ?? [] });
  let firstMs: number | null = null;
  let firstStatus: number | null = null;
  if (opts.first) {
    const res = await fetch(`http://127.0.0.1:${child.port}/`, { method: 'POST', headers: opts.first.headers, body: opts.first.body });
    await res.arrayBuffer();
    firstMs = Number(process.hrtime.bigint() - child.t0) / 1e6;
    firstStatus = res.status;
  }
  await child.stop();
  return { readyMs: child.readyMs, firstMs, firstStatus };
}

/** Peak resident set (VmHWM) of a process, in MB; Linux only. */
function peakRssMb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used; Linux only. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds of a PostgreSQL server: the postmaster (its cutime/cstime count children that have
 * exited) and every live child (backends, walwriter, checkpointer, ...); Linux only. `sessions`:
 * the live client backends of `role` alone (their process title starts "postgres: ROLE "), so a
 * report can tell the statements' own cost from the server's background work (the WAL writer,
 * the checkpointer, autovacuum).
 */
function postgresCpu(dataDir: string, role = 'email_worker'): { total: number; sessions: number } {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return { total: NaN, sessions: NaN };
  }
  let ticks = 0;
  let sessionTicks = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      const pid = Number(d);
      if (pid !== postmaster && Number(f[1]) !== postmaster) continue; // f[1]: ppid
      const own = Number(f[11]) + Number(f[12]);
      ticks += own + (pid === postmaster ? Number(f[13]) + Number(f[14]) : 0);
      if (pid !== postmaster && readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith(`postgres: ${role} `)) sessionTicks += own;
    } catch {
      /* exited meanwhile: its time is in the postmaster's cutime */
    }
  }
  return { total: ticks / 100, sessions: sessionTicks / 100 };
}

/** CPU seconds of the named processes and of this one (the load generator), to diff around a run. */
function cpuSnapshot(pids: { worker?: number; fake: number }, pgDataDir: string) {
  const own = process.cpuUsage();
  const pg = postgresCpu(pgDataDir);
  return {
    worker: pids.worker === undefined ? 0 : cpuSeconds(pids.worker),
    postgres: pg.total,
    pgSessions: pg.sessions,
    fake: cpuSeconds(pids.fake),
    load: (own.user + own.system) / 1e6,
  };
}
type CpuSnapshot = ReturnType<typeof cpuSnapshot>;
const cpuDiff = (a: CpuSnapshot, b: CpuSnapshot): CpuSnapshot => ({ worker: b.worker - a.worker, postgres: b.postgres - a.postgres, pgSessions: b.pgSessions - a.pgSessions, fake: b.fake - a.fake, load: b.load - a.load });

/** Busy and total jiffies of the whole machine; Linux only. */
function machineCpu(): { busy: number; total: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/**
 * What one flush costs on the disk PostgreSQL writes to: 8 KiB written and fdatasync'd, as a WAL
 * flush at commit does, in milliseconds. Each event commits twice, so this bounds what the
 * flushes add to its latency.
 */
function flushLatency(dir: string, samples = 500): { p50: number; p99: number; max: number } {
  const file = path.join(dir, 'flush-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(8192, 1);
  const ms = new Float64Array(samples);
  try {
    for (let i = 0; i < samples; i++) {
      writeSync(fd, block, 0, block.length, (i % 64) * block.length);
      const t = process.hrtime.bigint();
      fdatasyncSync(fd);
      ms[i] = Number(process.hrtime.bigint() - t) / 1e6;
    }
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
  ms.sort();
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), max: ms[samples - 1]! };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// ---------------------------------------------------------------- events

const OUTPUT = `## Summary\n\nThe quarterly report was summarised. Revenue grew **12%**; costs fell 3%.\n\n${'- a finding with some detail\n'.repeat(20)}`;

function makeEvents(run: string, n: number, tenantOf: (i: number) => string): BenchRequest[] {
  const out: BenchRequest[] = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = {
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': `${run}-${i}`,
        'ce-source': '/codetether/bench',
        'ce-type': 'codetether.task.created',
        'ce-tenant': tenantOf(i),
      },
      body: JSON.stringify({
        task_id: `${run}-task-${i}`,
        session_id: 'bench',
        prompt: 'Summarise the quarterly report',
        agent: 'build',
        model: 'model-x',
        notify_email: `owner+${i % 997}@customer.example`,
        metadata: { output: OUTPUT },
      }),
    };
  }
  return out;
}

// ---------------------------------------------------------------- the run

/** Everything the runs share: the database, the fake provider, the tenants, the worker's environment. */
interface Stack {
  o: Options;
  dir: string;
  key: { id: string; secret: string };
  su: Sql;
  workerUrl: string;
  workerRole: string;
  pgVersion: string;
  fake: Child;
  fakeUrl: string;
  fakeStats: () => Promise<FakeStats>;
  tenant: (i: number) => string;
  workerEnv: NodeJS.ProcessEnv;
  printableEnv: Record<string, string | undefined>;
  steadyState: () => Promise<void>;
  children: Child[];
  sqls: Sql[];
}
type FakeStats = { received: number; distinct: number; duplicates: number; perTenant: Record<string, number> };

async function setUp(o: Options, dir: string, children: Child[], sqls: Sql[], started: (pg: Awaited<ReturnType<typeof startEmbeddedPostgres>>) => void): Promise<Stack> {
  const password = randomBytes(12).toString('hex');
  const encryptionKey = randomBytes(48).toString('base64url');
  const key = { id: keyId(encryptionKey), secret: encryptionKey };
  log(`PostgreSQL in ${dir} ...`);
  const pg = await startEmbeddedPostgres({
    dir: path.join(dir, 'pg'),
    password,
    persistent: false,
    extraFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=top'],
  });
  started(pg);
  const roles = { database: 'bench', ownerRole: 'email_owner', ownerPassword: password, workerRole: 'email_worker', workerPassword: password };
  await bootstrapDatabase(pg.superuserUrl(), roles);
  const ownerUrl = roleUrl(pg.superuserUrl(), roles.ownerRole, password, roles.database);
  const workerUrl = roleUrl(pg.superuserUrl(), roles.workerRole, password, roles.database);
  const su = createSql(pg.superuserUrl(roles.database), { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: 'bench-su' });
  sqls.push(su);
  await su.unsafe('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const owner = createSql(ownerUrl, { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: 'bench-migrate' });
  await migrate(owner, { workerRole: roles.workerRole });
  await owner.end();
  const [{ version: pgVersion }] = (await su`SELECT current_setting('server_version') AS version`) as unknown as [{ version: string }];

  const fake = await spawnReady(FAKE, [], { PATH: process.env.PATH });
  children.push(fake);
  const fakeUrl = `http://127.0.0.1:${fake.port}`;
  const fakeStats = async () => (await (await fetch(`${fakeUrl}/stats`)).json()) as FakeStats;

  log(`${o.tenants} tenants on the fake SendGrid ...`);
  const seed = createSql(workerUrl, { max: 4, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: 'bench-seed' });
  sqls.push(seed);
  const tenant = (i: number) => `bench-${String(i).padStart(4, '0')}`;
  for (let i = 0; i < o.tenants; i++) {
    await putSettings(seed, { current: key }, tenant(i), {
      provider: 'sendgrid', api_key: `SG.bench-${randomBytes(12).toString('hex')}`, from_email: `noreply@${tenant(i)}.example.com`,
      provider_settings: { base_url: fakeUrl }, enabled: true, daily_limit: 10_000_000,
    });
  }
  await putSettings(seed, { current: key }, 'bench-quota', {
    provider: 'sendgrid', api_key: `SG.bench-${randomBytes(12).toString('hex')}`, from_email: 'noreply@bench-quota.example.com',
    provider_settings: { base_url: fakeUrl }, enabled: true, daily_limit: o.quotaLimit,
  });

  const workerEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DATABASE_URL: workerUrl,
    DB_ENCRYPTION_KEY: encryptionKey,
    DB_POOL_MAX: String(o.poolMax),
    ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true',
    SENDER_DOMAIN_POLICY: 'provider',
    LOG_LEVEL: 'info',
    // As the chart runs it: the admin API is a separate Deployment.
    ADMIN_API_ENABLED: 'false',
    NODE_ENV: 'production',
    ...Object.fromEntries(o.workerEnv.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
  };
  // Steady state after each warm-up: on a live database autovacuum analyzes the tables within
  // about a minute of their first rows, and every session replans the functions' statements
  // then. A bench that outruns it measures plans made for empty tables: the delivery lookups
  // then use the (tenant_id, created_at) index and read every row of the tenant, so one hot
  // tenant slows as its rows grow (docs/PERFORMANCE.md, "The hot tenant").
  const steadyState = async () => {
    await su`ANALYZE`;
  };
  const printableEnv = Object.fromEntries(Object.entries(workerEnv).filter(([k]) => !['PATH', 'DATABASE_URL', 'DB_ENCRYPTION_KEY'].includes(k)));

  return { o, dir, key, su, workerUrl, workerRole: roles.workerRole, pgVersion, fake, fakeUrl, fakeStats, tenant, workerEnv, printableEnv, steadyState, children, sqls };
}

/**
 * The image's compile cache, made the way the Dockerfile makes it (scripts/image/fill-compile-cache.js
 * with the worker's node flags), in `dir`; null, with the reason, where the node has none (before 22.1).
 */
function fillCompileCache(dir: string): { dir: string | null; note: string } {
  const r = spawnSync(nodeBin, [...WORKER_NODE_FLAGS, FILL_COMPILE_CACHE, ROOT], { env: { PATH: process.env.PATH, NODE_COMPILE_CACHE: dir }, encoding: 'utf8' });
  if (r.status !== 0) return { dir: null, note: `no compile cache: ${(r.stderr || r.stdout).trim().replace(/^fill-compile-cache: /, '')}` };
  return { dir, note: r.stdout.trim().replace(/^fill-compile-cache: /, 'compile cache: ') };
}

/**
 * Cold start, before anything else loads the machine; the worker, the worker with the image's
 * compile cache (where this node has one) and the bare app take turns.
 */
async function coldStarts({ o, tenant, workerEnv, dir }: Stack) {
  log(`cold start × ${o.coldStarts} (worker, worker with the image's compile cache, bare express, in turn) ...`);
  const cache = fillCompileCache(path.join(dir, 'compile-cache'));
  log(cache.note);
  const worker = { ready: [] as number[], first: [] as number[] };
  const cached = { ready: [] as number[], first: [] as number[] };
  const bare = { ready: [] as number[], first: [] as number[] };
  const firstStatuses: Array<number | null> = [];
  // --worker-node-args apply to the cold starts only in --cold-only mode (e.g. to profile a start).
  const nodeArgs = o.coldOnly ? workerNodeArgs(o) : [...WORKER_NODE_FLAGS];
  for (let i = 0; i < o.coldStarts; i++) {
    const runs: Array<[typeof worker, string, string[], NodeJS.ProcessEnv, string[]]> = [[worker, CLI, ['serve'], workerEnv, nodeArgs]];
    if (cache.dir) runs.push([cached, CLI, ['serve'], { ...workerEnv, NODE_COMPILE_CACHE: cache.dir }, nodeArgs]);
    runs.push([bare, BARE, [], BARE_ENV, []]);
    for (const [into, script, args, env, flags] of runs) {
      const first = makeEvents(`cold-${i}-${into === bare ? 'b' : into === cached ? 'c' : 'w'}`, 1, () => tenant(i % o.tenants))[0]!;
      const r = await coldStart(script, args, env, { nodeArgs: flags, first });
      into.ready.push(r.readyMs);
      into.first.push(r.firstMs!);
      if (into !== bare) firstStatuses.push(r.firstStatus);
    }
  }
  if (firstStatuses.some((st) => st !== 202)) throw new Error(`a cold worker's first event was answered ${firstStatuses.join(', ')}, not 202`);
  return { worker, cached: cache.dir ? cached : null, bare, cacheNote: cache.note };
}

/** Ceiling 1: a bare express 202 handler, same requests, same client. */
async function bareCeiling({ o, tenant, children }: Stack): Promise<RunResult> {
  log('ceiling: bare 202 handler ...');
  const bare = await spawnReady(BARE, [], BARE_ENV);
  children.push(bare);
  await closedLoop(`http://127.0.0.1:${bare.port}`, makeEvents('bare-warm', 2000, (i) => tenant(i % o.tenants)), o.concurrency);
  const bareRun = await closedLoop(`http://127.0.0.1:${bare.port}`, makeEvents('bare', o.events, (i) => tenant(i % o.tenants)), o.concurrency);
  await bare.stop();

  return bareRun;
}

/** Ceiling 2: the worker's own per-event SQL (claim + record), no HTTP, no provider. */
async function sqlCeiling({ o, tenant, workerUrl, key, sqls, steadyState, fake, dir }: Stack) {
  log('ceiling: per-event SQL driven directly ...');
  const direct = createSql(workerUrl, { max: o.poolMax, connectTimeoutSeconds: 10, statementTimeoutMs: 10_000, applicationName: 'bench-direct' });
  sqls.push(direct);
  const store = createDeliveryStore(direct, { keys: { current: key }, leaseSeconds: 120, globalDailyLimit: null });
  const sqlEvent = async (ev: { tenantId: string; eventId: string }) => {
    const c = await store.claim({ tenantId: ev.tenantId, eventSource: '/codetether/bench', eventId: ev.eventId, eventType: 'codetether.task.created', taskId: ev.eventId, hasRecipient: true });
    if (c.outcome !== 'claimed') throw Object.assign(new Error(c.outcome), { code: c.outcome });
    await store.recordOutcome({
      tenantId: ev.tenantId, eventSource: '/codetether/bench', eventId: ev.eventId, claimToken: c.claimToken, status: 'sent', provider: 'sendgrid',
      messageId: 'direct', errorCode: null, templateSource: 'builtin', templateVersion: null, senderTier: 'custom', senderNote: null,
    });
  };
  const directItems = (run: string, n: number, t: (i: number) => string) => Array.from({ length: n }, (_, i) => ({ tenantId: t(i), eventId: `${run}-${i}` }));
  await closedLoopFn(directItems('sql-warm', 2000, (i) => tenant(i % o.tenants)), o.concurrency, sqlEvent);
  await steadyState();
  const sqlCpu0 = cpuSnapshot({ fake: fake.proc.pid! }, path.join(dir, 'pg'));
  const sqlRun = await closedLoopFn(directItems('sql', o.events, (i) => tenant(i % o.tenants)), o.concurrency, sqlEvent);
  const sqlCpu = cpuDiff(sqlCpu0, cpuSnapshot({ fake: fake.proc.pid! }, path.join(dir, 'pg')));
  const sqlHotRun = await closedLoopFn(directItems('sql-hot', o.events, () => tenant(1)), o.concurrency, sqlEvent);
  await direct.end();

  return { sqlRun, sqlCpu, sqlHotRun };
}

/** The worker itself: the main closed loop, two open loops, one hot tenant, the quota check. */
async function workerRuns({ o, tenant, workerEnv, children, steadyState, su, fakeUrl, fakeStats, fake, dir, workerRole }: Stack) {
  log('the worker: warm-up ...');
  const tailFile = o.tailProfile ? path.join(dir, 'tail-probe.txt') : undefined;
  const worker = await spawnReady(CLI, ['serve'], tailFile ? { ...workerEnv, TEW_TAIL_PROBE: tailFile } : workerEnv, {
    nodeArgs: tailFile ? [...workerNodeArgs(o), '-r', TAIL_PROBE] : workerNodeArgs(o),
  });
  children.push(worker);
  const origin = `http://127.0.0.1:${worker.port}`;
  await closedLoop(origin, makeEvents('warm', 2000, (i) => tenant(i % o.tenants)), o.concurrency);
  await steadyState();

  const counted = async <T>(fn: () => Promise<T>) => {
    await su`SELECT pg_stat_statements_reset()`;
    await fetch(`${fakeUrl}/reset`, { method: 'POST' });
    const pids = { worker: worker.proc.pid!, fake: fake.proc.pid! };
    const cpu0 = cpuSnapshot(pids, path.join(dir, 'pg'));
    const m0 = machineCpu();
    const r = await fn();
    const cpu = cpuDiff(cpu0, cpuSnapshot(pids, path.join(dir, 'pg')));
    const m1 = machineCpu();
    const machineBusy = (m1.busy - m0.busy) / (m1.total - m0.total);
    // Per-event statements only: the worker's timer-driven reads (the provider outage switch,
    // every PROVIDER_SWITCH_REFRESH_MS) are counted apart, as `background`.
    const [s] = await su`
      SELECT COALESCE(sum(calls) FILTER (WHERE query NOT LIKE ${BACKGROUND_QUERY}), 0)::bigint AS calls,
             COALESCE(sum(calls) FILTER (WHERE query LIKE ${BACKGROUND_QUERY}), 0)::bigint AS background
      FROM pg_stat_statements WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = ${workerRole})`;
    const statements = await su`
      SELECT calls::bigint AS calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query
      FROM pg_stat_statements WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = ${workerRole}) ORDER BY calls DESC LIMIT 5`;
    return { result: r, cpu, machineBusy, calls: Number(s!.calls), background: Number(s!.background), statements: statements.map((x) => ({ calls: Number(x.calls), query: String(x.query) })), fake: await fakeStats() };
  };

  log(`the worker: ${o.events} events over ${o.tenants} tenants at concurrency ${o.concurrency} ...`);
  const main = await counted(() => closedLoop(origin, makeEvents('main', o.events, (i) => tenant(i % o.tenants)), o.concurrency));
  const rssAfterMain = peakRssMb(worker.proc.pid!);

  // An open loop at a fraction of the peak, for the latency figures.
  const openLoopAt = async (divisor: number, run: string, label: string, minEvents: number) => {
    const rate = Math.max(1, Math.floor(main.result.rate / divisor));
    const count = Math.max(minEvents, Math.floor(rate * o.halfRateSeconds));
    log(`the worker: open loop at ${rate}/s (${label}) for ${count} events ...`);
    return { rate, count, run, ...(await counted(() => openLoop(origin, makeEvents(run, count, (i) => tenant(i % o.tenants)), rate))) };
  };
  const half = await openLoopAt(2, 'half', 'half the peak', 500);
  // The tail against load: the same open loop at half that rate again. If the p99 falls with the
  // load, the tail is waiting for a CPU on this shared machine, not a fixed cost per event.
  const quarter = await openLoopAt(4, 'quarter', 'a quarter of the peak', 250);

  log(`the worker: one hot tenant, ${o.events} events ...`);
  const hot = await counted(() => closedLoop(origin, makeEvents('hot', o.events, () => tenant(0)), o.concurrency));

  log(`the worker: overshoot check, ${o.quotaLimit * 4} events for a tenant with a daily limit of ${o.quotaLimit} ...`);
  const quota = await counted(() => closedLoop(origin, makeEvents('quota', o.quotaLimit * 4, () => 'bench-quota'), o.concurrency));
  const [usage] = await su`SELECT COALESCE(sum(sent_count), 0)::int AS used FROM tenant_email_usage WHERE tenant_id = 'bench-quota'`;

  const peakRss = peakRssMb(worker.proc.pid!);
  await worker.stop();
  // The probe writes on exit too, so the file is whole once the worker has stopped.
  const records = tailFile ? parseTailRecords(readFileSync(tailFile, 'utf8')) : undefined;
  const tail = records && { half: summarizeTail(records, half.run), quarter: summarizeTail(records, quarter.run) };

  return { main, half, quarter, hot, quota, used: usage!.used as number, rssAfterMain, peakRss, tail };
}

/** The harness's own tail: the same open loop, same rate and count, against the bare app. */
async function bareFloor({ o, tenant, children }: Stack, half: { rate: number; count: number }): Promise<RunResult> {
  log(`floor: bare express, open loop at ${half.rate}/s ...`);
  const bareAgain = await spawnReady(BARE, [], BARE_ENV);
  children.push(bareAgain);
  const bareHalf = await openLoop(`http://127.0.0.1:${bareAgain.port}`, makeEvents('bare-half', half.count, (i) => tenant(i % o.tenants)), half.rate);
  await bareAgain.stop();

  return bareHalf;
}

async function main(): Promise<void> {
  const o = program.parse(process.argv).opts<Options>();
  nodeBin = o.node;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tew-bench-'));
  chmodSync(dir, 0o755); // as root, PostgreSQL runs as the postgres user and must reach its directory
  const children: Child[] = [];
  let pg: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  const sqls: Sql[] = [];
  try {
    const stack = await setUp(o, dir, children, sqls, (started) => (pg = started));
    if (o.scaleOut) {
      await scaleOut(stack, o.scaleOut.split(',').map(Number));
      return;
    }
    if (o.soakSeconds > 0) {
      const { workerEnv, printableEnv, tenant, fakeStats, fakeUrl, pgVersion, steadyState } = stack;
      await soak(o, { workerEnv, printableEnv, tenant, fakeStats, fakeUrl, pgVersion, children, steadyState });
      return;
    }
    if (o.coldOnly) {
      process.stdout.write(`${coldReport(stack, await coldStarts(stack))}\n`);
      return;
    }
    const flush = flushLatency(path.join(dir, 'pg'));
    const cold = await coldStarts(stack);
    const bareRun = await bareCeiling(stack);
    const sql = await sqlCeiling(stack);
    const w = await workerRuns(stack);
    const bareHalf = await bareFloor(stack, w.half);
    const report = benchReport(stack, { flush, cold, bareRun, sql, w, bareHalf });
    process.stdout.write(`${report}\n`);
    if (o.write) {
      writeFileSync(o.write, `${report}\n`);
      log(`written to ${o.write}`);
    }
  } finally {
    for (const c of children.reverse()) await c.stop().catch(() => null);
    for (const s of sqls) await s.end({ timeout: 1 }).catch(() => null);
    await pg?.stop().catch(() => null);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The report: every figure with the config that produced it, and the verdicts. */
function benchReport(
  { o, pgVersion, printableEnv }: Stack,
  r: { flush: ReturnType<typeof flushLatency>; cold: Awaited<ReturnType<typeof coldStarts>>; bareRun: RunResult; sql: Awaited<ReturnType<typeof sqlCeiling>>; w: Awaited<ReturnType<typeof workerRuns>>; bareHalf: RunResult },
): string {
  const { flush, bareRun, bareHalf } = r;
  // The verdicts take the worker as the image runs it: with its compile cache where this node has one.
  const asImage = r.cold.cached ?? r.cold.worker;
  const { sqlRun, sqlCpu, sqlHotRun } = r.sql;
  const { main, half, quarter, hot, quota, rssAfterMain, peakRss } = r.w;
  const usage = { used: r.w.used };
  const accepted = (r: RunResult) => r.statuses['202'] ?? 0;
  const ceiling = Math.min(bareRun.rate, sqlRun.rate);
  const coldW = median(asImage.ready);
  const coldB = median(r.cold.bare.ready);
  const firstW = median(asImage.first);
  const firstB = median(r.cold.bare.first);
  // Where the CPU of the whole chain goes, per event: everything runs on these cores, so the
  // sum bounds what the machine can carry, whatever the worker does.
  const perEvent = (c: CpuSnapshot, events = o.events) => ({ worker: (c.worker * 1000) / events, postgres: (c.postgres * 1000) / events, pgSessions: (c.pgSessions * 1000) / events, fake: (c.fake * 1000) / events, load: (c.load * 1000) / events });
  // pgSessions is part of postgres, so it is not added again.
  const chainMs = (c: CpuSnapshot, events: number) => {
    const p = perEvent(c, events);
    return p.worker + p.postgres + p.fake + p.load;
  };
  const chain = perEvent(main.cpu);
  const rtMain = main.calls / o.events;
  const checks: Array<[string, boolean, string]> = [
    ['throughput ≥ 50% of the lower ceiling', main.result.rate >= 0.5 * ceiling, `${f0(main.result.rate)}/s vs ${f0(ceiling)}/s → ${pct(main.result.rate / ceiling)}`],
    ['≤ 2 database round trips per event', rtMain <= 2, f2(rtMain)],
    ['p99 ≤ 20 ms at half the peak rate', half.result.p99 <= 20, `${f1(half.result.p99)} ms at ${half.rate}/s`],
    ['cold start ≤ 1.3× bare express', coldW <= 1.3 * coldB, `${f0(coldW)} ms vs ${f0(coldB)} ms → ${f2(coldW / coldB)}×`],
    ['peak RSS ≤ 150 MB', (peakRss ?? Infinity) <= 150, `${f1(peakRss ?? NaN)} MB`],
    // Issue 23's figures: cost per email.
    ['PostgreSQL CPU ≤ 0.6 ms per event (main run)', chain.postgres <= 0.6, `${f2(chain.postgres)} ms (its worker-role sessions ${f2(chain.pgSessions)} ms)`],
    ['worker CPU ≤ 1.2 ms per event (main run)', chain.worker <= 1.2, `${f2(chain.worker)} ms`],
    ['first event after a cold start ≤ 2× bare express', firstW <= 2 * firstB, `${f0(firstW)} ms vs ${f0(firstB)} ms → ${f2(firstW / firstB)}×${r.cold.cached ? ' (with the compile cache)' : ' (no compile cache on this node)'}`],
    ['p99 ≤ 20 ms at a quarter of the peak rate', quarter.result.p99 <= 20, `${f1(quarter.result.p99)} ms at ${quarter.rate}/s`],
    ['one hot tenant ≥ 50% of the 200-tenant rate', hot.result.rate >= 0.5 * main.result.rate, `${f0(hot.result.rate)}/s → ${pct(hot.result.rate / main.result.rate)}`],
    [
      'emails received = 202 answers, no duplicates (every run)',
      [main, half, quarter, hot, quota].every((r) => r.fake.received === accepted(r.result) && r.fake.duplicates === 0),
      [main, half, quarter, hot, quota].map((r) => `${r.fake.received}/${accepted(r.result)}/${r.fake.duplicates}`).join(', ') + ' (emails/202s/duplicates)',
    ],
    [
      'no quota overshoot',
      accepted(quota.result) === o.quotaLimit && (quota.fake.perTenant['bench-quota'] ?? 0) === o.quotaLimit && usage!.used === o.quotaLimit,
      `${accepted(quota.result)} sent, ${quota.result.statuses['422'] ?? 0} refused, ledger ${usage!.used}, limit ${o.quotaLimit}`,
    ],
  ];

  const cpu = os.cpus();
  const lines: string[] = [];
  const out = (s = '') => lines.push(s);
  out(`# tenant-email-worker benchmark — ${new Date().toISOString()}`);
  out();
  out(machineLine(pgVersion));
  out(`disk: 8 KiB write + fdatasync in PostgreSQL's data directory (a commit's WAL flush), 500 samples before the runs: p50 ${f2(flush.p50)} ms, p99 ${f2(flush.p99)} ms, max ${f2(flush.max)} ms`);
  out(`config: events=${o.events} concurrency=${o.concurrency} tenants=${o.tenants} pool-max=${o.poolMax} cold-starts=${o.coldStarts} half-rate-seconds=${o.halfRateSeconds} quota-limit=${o.quotaLimit}`);
  for (const line of workerLines(o, printableEnv)) out(line);
  out('all on one machine: PostgreSQL, the fake SendGrid (own process), the worker (own process), and the load generator (this process, undici)');
  out();
  out('| run | events | events/s | p50 ms | p95 ms | p99 ms | max ms | answers |');
  out('|---|---|---|---|---|---|---|---|');
  const row = (name: string, r: RunResult) =>
    out(`| ${name} | ${r.requests} | ${f0(r.rate)} | ${f1(r.p50)} | ${f1(r.p95)} | ${f1(r.p99)} | ${f1(r.max)} | ${Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join(' ')} |`);
  row(`worker, ${o.tenants} tenants, concurrency ${o.concurrency}`, main.result);
  row(`worker, ${o.tenants} tenants, open loop at ${half.rate}/s`, half.result);
  row(`worker, ${o.tenants} tenants, open loop at ${quarter.rate}/s`, quarter.result);
  row(`worker, 1 hot tenant, concurrency ${o.concurrency}`, hot.result);
  row(`worker, quota check (limit ${o.quotaLimit})`, quota.result);
  row(`ceiling: bare express 202, concurrency ${o.concurrency}`, bareRun);
  row(`floor: bare express 202, open loop at ${half.rate}/s`, bareHalf);
  row(`ceiling: per-event SQL direct, ${o.tenants} tenants, pool ${o.poolMax}`, sqlRun);
  row(`ceiling: per-event SQL direct, 1 hot tenant, pool ${o.poolMax}`, sqlHotRun);
  out();
  out(`database round trips per event (pg_stat_statements, worker role): ${f2(rtMain)} (${main.calls} statements for ${o.events} events, besides ${main.background} timer-driven reads of the outage switch); hot tenant ${f2(hot.calls / o.events)}`);
  out(`  top statements: ${main.statements.map((s) => `${s.calls}× ${s.query}`).join(' | ')}`);
  out(`emails received vs 202 answers: main ${main.fake.received}/${accepted(main.result)}, half-rate ${half.fake.received}/${accepted(half.result)}, quarter-rate ${quarter.fake.received}/${accepted(quarter.result)}, hot ${hot.fake.received}/${accepted(hot.result)}, quota ${quota.fake.received}/${accepted(quota.result)}; duplicates ${main.fake.duplicates + half.fake.duplicates + quarter.fake.duplicates + hot.fake.duplicates + quota.fake.duplicates}`);
  out(`worker CPU: ${f2(chain.worker)} ms per event in the main run (${f1(main.cpu.worker)} s of CPU in ${f1(main.result.seconds)} s); machine busy ${pct(main.machineBusy)} of ${cpu.length} cores; hot tenant ${f2(perEvent(hot.cpu).worker)} ms per event, machine ${pct(hot.machineBusy)}`);
  // An open loop costs more CPU per event than the closed loop (each event wakes every process
  // on its own), so half the peak rate keeps the cores busier than half.
  out(
    `p99 against load (open loops): ${f1(half.result.p99)} ms at ${half.rate}/s, machine busy ${pct(half.machineBusy)}, chain CPU ${f2(chainMs(half.cpu, half.count))} ms per event; ` +
      `${f1(quarter.result.p99)} ms at ${quarter.rate}/s, machine busy ${pct(quarter.machineBusy)}, chain CPU ${f2(chainMs(quarter.cpu, quarter.count))} ms per event; the harness alone ${f1(bareHalf.p99)} ms at ${half.rate}/s`,
  );
  const chainTotal = chainMs(main.cpu, o.events);
  out(`CPU per event, main run: worker ${f2(chain.worker)} ms, PostgreSQL ${f2(chain.postgres)} ms (its worker-role sessions ${f2(chain.pgSessions)} ms; the rest is the server's own work: WAL writer, checkpointer, autovacuum), fake SendGrid ${f2(chain.fake)} ms, load generator ${f2(chain.load)} ms; ${f2(chainTotal)} ms in all → ${cpu.length} cores carry at most ${f0((cpu.length * 1000) / chainTotal)} events/s of this chain (the target, 50% of the lower ceiling, is ${f0(ceiling / 2)}/s)`);
  const sqlChain = perEvent(sqlCpu);
  out(`CPU per event, per-event SQL ceiling: PostgreSQL ${f2(sqlChain.postgres)} ms (its worker-role sessions ${f2(sqlChain.pgSessions)} ms), the driving client (this process) ${f2(sqlChain.load)} ms`);
  out(`worker RSS: ${f1(rssAfterMain ?? NaN)} MB peak after the main run, ${f1(peakRss ?? NaN)} MB peak overall (VmHWM)`);
  for (const line of coldLines(o, r.cold)) out(line);
  if (r.w.tail) {
    out(tailLine(half.rate, r.w.tail.half));
    out(tailLine(quarter.rate, r.w.tail.quarter));
  }
  out();
  out('| figure | result | measured |');
  out('|---|---|---|');
  for (const [name, ok, measured] of checks) out(`| ${name} | ${ok ? 'met' : '**missed**'} | ${measured} |`);
  return lines.join('\n');
}

/** --tail-profile: where an open loop's slowest events spent their time, as the worker's probe saw it. */
function tailLine(rate: number, t: TailSummary): string {
  const d = (x: { p50: number; p99: number; max: number }) => `p50 ${f2(x.p50)}, p99 ${f2(x.p99)}, max ${f1(x.max)} ms`;
  const o = t.overlapped;
  return (
    `tail profile at ${rate}/s (the worker's own clock, from a POST's arrival to its answer): ${t.events} events, p50 ${f1(t.p50)} ms, p99 ${f1(t.p99)} ms, max ${f1(t.max)} ms; ` +
    `the slowest ${t.slowest} overlapped a database round trip over ${SLOW_DB_MS} ms in ${o.db}, an event-loop stall over ${STALL_MS} ms in ${o.stall}, a GC pause in ${o.gc}, a provider call over ${SLOW_PROVIDER_MS} ms in ${o.provider}, none of these in ${o.none}; of their time, database round trips covered ${pct(t.covered.db)}, stalls ${pct(t.covered.stall)}, GC ${pct(t.covered.gc)}, provider calls ${pct(t.covered.provider)}; ` +
    `database round trips ${d(t.db)} (${t.db.count}); provider calls ${d(t.provider)} (${t.provider.count}); ${t.gc.count} GC pauses, ${f1(t.gc.totalMs)} ms in all, the longest ${f1(t.gc.max)} ms; ${t.stalls.count} stalls, the longest ${f1(t.stalls.max)} ms, the worker on a CPU for ${pct(t.stalls.cpuShare)} of their time`
  );
}

/** The cold-start lines of a report: exec → ready, and exec → the first event's 202, worker beside bare express. */
function coldLines(o: Options, { worker, cached, bare, cacheNote }: Awaited<ReturnType<typeof coldStarts>>): string[] {
  const ms = (xs: number[]) => `${f0(median(xs))} ms [${xs.map(f0).join(', ')}]`;
  const vs = (xs: number[], of: number[]) => `${f2(median(xs) / median(of))}×`;
  const lines = [`${cacheNote} (median of ${o.coldStarts} starts each; bare express is the yardstick)`];
  for (const [what, pick] of [['cold start (exec → /readyz 200)', 'ready'], ['first event after a cold start (exec → its 202, sent once /readyz is 200)', 'first']] as const) {
    lines.push(`${what}: worker ${ms(worker[pick])} → ${vs(worker[pick], bare[pick])}` + (cached ? `; with the compile cache ${ms(cached[pick])} → ${vs(cached[pick], bare[pick])}` : '') + `; bare express ${ms(bare[pick])}`);
  }
  return lines;
}

/** `--cold-only`: the machine, the worker's flags and the cold-start lines. */
function coldReport({ o, pgVersion, printableEnv }: Stack, cold: Awaited<ReturnType<typeof coldStarts>>): string {
  return [`# tenant-email-worker cold start — ${new Date().toISOString()}`, '', machineLine(pgVersion), ...workerLines(o, printableEnv), '', ...coldLines(o, cold)].join('\n');
}

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
/** Current resident set (VmRSS) of a process, in MB. */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Soak: find the peak with a closed loop, then hold half of it in an open loop for
 * --soak-seconds, window by window, recording RSS, error answers, p99 and duplicates per window.
 * Flat means: the highest RSS sample of the run's second half at most 10% above the first
 * half's, and no window with an error answer or a duplicate email.
 */
async function soak(
  o: Options,
  ctx: {
    workerEnv: NodeJS.ProcessEnv;
    printableEnv: Record<string, string | undefined>;
    tenant: (i: number) => string;
    fakeStats: () => Promise<{ received: number; duplicates: number }>;
    fakeUrl: string;
    pgVersion: string;
    children: Child[];
    steadyState: () => Promise<void>;
  },
): Promise<void> {
  const worker = await spawnReady(CLI, ['serve'], ctx.workerEnv, { nodeArgs: workerNodeArgs(o) });
  ctx.children.push(worker);
  const origin = `http://127.0.0.1:${worker.port}`;
  await closedLoop(origin, makeEvents('soak-warm', 2000, (i) => ctx.tenant(i % o.tenants)), o.concurrency);
  await ctx.steadyState();
  const peakEvents = Math.min(o.events, 10_000);
  log(`soak: finding the peak (${peakEvents} events at concurrency ${o.concurrency}) ...`);
  const peak = await closedLoop(origin, makeEvents('soak-peak', peakEvents, (i) => ctx.tenant(i % o.tenants)), o.concurrency);
  const rate = Math.max(1, Math.floor(peak.rate / 2));
  const windows = Math.max(1, Math.round(o.soakSeconds / o.soakWindowSeconds));
  await fetch(`${ctx.fakeUrl}/reset`, { method: 'POST' });
  const rows: Array<{ window: number; result: RunResult; rss: number; errors: number; emails: number; duplicates: number }> = [];
  let sent = 0;
  for (let w = 0; w < windows; w++) {
    const count = Math.max(1, Math.floor(rate * o.soakWindowSeconds));
    const result = await openLoop(origin, makeEvents(`soak-${w}`, count, (i) => ctx.tenant((sent + i) % o.tenants)), rate);
    sent += count;
    const stats = await ctx.fakeStats();
    const errors = Object.entries(result.statuses).filter(([k]) => k !== '202').reduce((a, [, v]) => a + v, 0);
    rows.push({ window: w + 1, result, rss: rssMb(worker.proc.pid!), errors, emails: stats.received, duplicates: stats.duplicates });
    log(`soak window ${w + 1}/${windows}: ${count} events at ${rate}/s, p99 ${f1(result.p99)} ms, errors ${errors}, RSS ${f1(rows.at(-1)!.rss)} MB`);
  }
  await worker.stop();

  // RSS follows the garbage collector's sawtooth, so single samples say little: compare the
  // highest sample of the second half of the run with the highest of the first half.
  const half = Math.ceil(rows.length / 2);
  const base = Math.max(...rows.slice(0, half).map((r) => r.rss));
  const last = Math.max(...rows.slice(half).map((r) => r.rss), rows.at(-1)!.rss);
  const growth = (last - base) / base;
  const totalErrors = rows.reduce((a, r) => a + r.errors, 0);
  const final = rows.at(-1)!;
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);
  out(`# tenant-email-worker soak — ${new Date().toISOString()}`);
  out();
  out(machineLine(ctx.pgVersion));
  out(`config: soak-seconds=${o.soakSeconds} soak-window-seconds=${o.soakWindowSeconds} tenants=${o.tenants} concurrency=${o.concurrency} (peak finding) pool-max=${o.poolMax}`);
  for (const line of workerLines(o, ctx.printableEnv)) out(line);
  out(`peak (closed loop, ${peakEvents} events): ${f0(peak.rate)}/s → soak at ${rate}/s, open loop, latency from the scheduled send time`);
  out();
  out('| window | events | events/s | p50 ms | p99 ms | max ms | error answers | RSS MB |');
  out('|---|---|---|---|---|---|---|---|');
  for (const r of rows) out(`| ${r.window} | ${r.result.requests} | ${f0(r.result.rate)} | ${f1(r.result.p50)} | ${f1(r.result.p99)} | ${f1(r.result.max)} | ${r.errors} | ${f1(r.rss)} |`);
  out();
  out(`emails received ${final.emails} for ${sent - totalErrors} answers 202; duplicates ${final.duplicates}`);
  out();
  out('| figure | result | measured |');
  out('|---|---|---|');
  out(`| RSS flat (highest sample of the second half at most 10% above the first half's) | ${growth <= 0.1 ? 'met' : '**missed**'} | ${f1(base)} → ${f1(last)} MB (${growth >= 0 ? '+' : ''}${f1(growth * 100)}%) |`);
  out(`| error rate flat (no error answers in any window) | ${totalErrors === 0 ? 'met' : '**missed**'} | ${totalErrors} error answers of ${sent} |`);
  out(`| every 202 is one email, none doubled | ${final.emails === sent - totalErrors && final.duplicates === 0 ? 'met' : '**missed**'} | ${final.emails} emails, ${final.duplicates} duplicates |`);
  const report = lines.join('\n');
  process.stdout.write(`${report}\n`);
  if (o.write) {
    writeFileSync(o.write, `${report}\n`);
    log(`written to ${o.write}`);
  }
}

/**
 * --scale-out 1,2,4: Knative's many pods, as processes. The built worker, N at a time, connects
 * through one PgBouncer in transaction mode (a server pool of --server-pool) to the one
 * PostgreSQL; the load generator splits --events over them at --concurrency each. Per N: events/s,
 * p99, the CPU PostgreSQL and the workers spent per event, the most server connections PostgreSQL
 * saw, and whether every 202 was one email.
 */
async function scaleOut(stack: Stack, counts: number[]): Promise<void> {
  const { o, tenant, workerEnv, children, steadyState, su, fakeUrl, fakeStats, dir, workerRole, workerUrl, printableEnv, pgVersion } = stack;
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--scale-out takes a list of process counts, e.g. 1,2,4');
  if (!findPgbouncer()) throw new Error('--scale-out needs pgbouncer: apt-get install pgbouncer (.ci/run installs it)');
  const u = new URL(workerUrl);
  const bouncer = await startPgBouncer({ pgPort: Number(u.port), users: [{ name: workerRole, password: decodeURIComponent(u.password) }], poolSize: o.serverPool });
  const pooledUrl = bouncer.url(workerRole, decodeURIComponent(u.password), u.pathname.slice(1));
  const env = { ...workerEnv, DATABASE_URL: pooledUrl, DB_POOLER: 'pgbouncer' };
  const rows: Array<{ n: number; result: RunResult; pgMs: number; workerMs: number; bouncerMs: number; maxServer: number; emails: number; accepted: number; duplicates: number; busy: number }> = [];
  try {
    for (const n of counts) {
      log(`scale-out: ${n} worker process${n > 1 ? 'es' : ''} through PgBouncer (server pool ${o.serverPool}) ...`);
      const workers: Child[] = [];
      for (let i = 0; i < n; i++) {
        const w = await spawnReady(CLI, ['serve'], env, { nodeArgs: workerNodeArgs(o) });
        children.push(w);
        workers.push(w);
      }
      const origins = workers.map((w) => `http://127.0.0.1:${w.port}`);
      const split = (run: string, total: number) => origins.map((origin, k) => ({ origin, events: makeEvents(`${run}-${k}`, Math.ceil(total / n), (i) => tenant((i * n + k) % o.tenants)) }));
      await Promise.all(split(`so${n}-warm`, 2000).map((p) => closedLoop(p.origin, p.events, o.concurrency)));
      await steadyState();
      await fetch(`${fakeUrl}/reset`, { method: 'POST' });
      const cpuOf = () => ({ pg: postgresCpu(path.join(dir, 'pg')).total, workers: workers.reduce((a, w) => a + cpuSeconds(w.proc.pid!), 0), bouncer: cpuSeconds(bouncer.pid), machine: machineCpu() });
      let maxServer = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          // The worker role's server connections (the bench's own seeding pool, direct, aside).
          const [r] = await su`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = ${workerRole} AND application_name NOT LIKE 'bench-%'`;
          maxServer = Math.max(maxServer, r!.n as number);
          await new Promise((res) => setTimeout(res, 50));
        }
      })();
      const parts = split(`so${n}`, o.events);
      const c0 = cpuOf();
      const t0 = process.hrtime.bigint();
      const results = await Promise.all(parts.map((p) => closedLoop(p.origin, p.events, o.concurrency)));
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const c1 = cpuOf();
      sampling = false;
      await sampler;
      const events = parts.reduce((a, p) => a + p.events.length, 0);
      const statuses: Record<string, number> = {};
      for (const r of results) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
      const stats = await fakeStats();
      rows.push({
        n,
        result: { requests: events, seconds, rate: events / seconds, statuses, p50: Math.max(...results.map((r) => r.p50)), p95: Math.max(...results.map((r) => r.p95)), p99: Math.max(...results.map((r) => r.p99)), max: Math.max(...results.map((r) => r.max)) },
        pgMs: ((c1.pg - c0.pg) * 1000) / events,
        workerMs: ((c1.workers - c0.workers) * 1000) / events,
        bouncerMs: ((c1.bouncer - c0.bouncer) * 1000) / events,
        maxServer,
        emails: stats.received,
        accepted: statuses['202'] ?? 0,
        duplicates: stats.duplicates,
        busy: (c1.machine.busy - c0.machine.busy) / (c1.machine.total - c0.machine.total),
      });
      for (const w of workers) await w.stop();
    }
  } finally {
    await bouncer.stop();
  }
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);
  out(`# tenant-email-worker scale-out — ${new Date().toISOString()}`);
  out();
  out(machineLine(pgVersion));
  out(`config: scale-out=${counts.join(',')} events=${o.events} (split evenly over the processes) concurrency=${o.concurrency} per process, tenants=${o.tenants}, PgBouncer ${o.serverPool} server connections (transaction mode), DB_POOL_MAX=${o.poolMax} per process`);
  for (const line of workerLines(o, { ...printableEnv, DB_POOLER: 'pgbouncer' })) out(line);
  out();
  out('| processes | events/s | p50 ms | p99 ms | PostgreSQL CPU ms/event | workers CPU ms/event | PgBouncer CPU ms/event | machine busy | most server connections | answers | emails / 202s / duplicates |');
  out('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    out(`| ${r.n} | ${f0(r.result.rate)} | ${f1(r.result.p50)} | ${f1(r.result.p99)} | ${f2(r.pgMs)} | ${f2(r.workerMs)} | ${f2(r.bouncerMs)} | ${pct(r.busy)} | ${r.maxServer} of ${o.serverPool} | ${Object.entries(r.result.statuses).map(([k, v]) => `${k}×${v}`).join(' ')} | ${r.emails} / ${r.accepted} / ${r.duplicates} |`);
  }
  out();
  const exact = rows.every((r) => r.emails === r.accepted && r.duplicates === 0 && r.maxServer <= o.serverPool);
  out(`every 202 one email, none doubled, PostgreSQL within the server pool: ${exact ? 'yes' : '**no**'}`);
  const report = lines.join('\n');
  process.stdout.write(`${report}\n`);
  if (o.write) {
    writeFileSync(o.write, `${report}\n`);
    log(`written to ${o.write}`);
  }
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const pct = (n: number) => `${Math.round(n * 100)}%`;

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});

