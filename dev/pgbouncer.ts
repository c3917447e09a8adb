import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A real PgBouncer for the tests and the bench's scale-out mode: Debian's `pgbouncer` package
 * (`.ci/run` installs it), started in front of a local PostgreSQL in transaction mode.
 */

/** Debian's pgbouncer (`.ci/run` installs it): on PATH, or where the package puts it; null when absent. */
export function findPgbouncer(): string | null {
  for (const p of [...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'pgbouncer')), '/usr/sbin/pgbouncer']) if (existsSync(p)) return p;
  return null;
}

export function pgbouncerBinary(): string {
  const bin = findPgbouncer();
  if (!bin) throw new Error('pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run does)');
  return bin;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PgBouncer {
  port: number;
  /** The pooler's process id (for its CPU time). */
  pid: number;
  /** The URL of `database` through the pooler as `user`. */
  url(user: string, password: string, database: string): string;
  stop(): Promise<void>;
}

/**
 * A real PgBouncer in front of the test PostgreSQL: transaction pooling, a small server pool per
 * (database, user), SCRAM to both sides with the users given. Stopped with SIGINT (a clean exit).
 */
export async function startPgBouncer(o: { pgPort: number; users: Array<{ name: string; password: string }>; poolSize: number }): Promise<PgBouncer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tew-pgbouncer-'));
  const port = await freePort();
  writeFileSync(path.join(dir, 'users.txt'), o.users.map((u) => `"${u.name}" "${u.password}"`).join('\n') + '\n', { mode: 0o600 });
  writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${o.pgPort}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = scram-sha-256',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${o.poolSize}`,
      'max_client_conn = 500',
      'server_reset_query =',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root (as PostgreSQL does): then it runs as `nobody`, which gets its files.
  let as: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    as = { uid: Number(execFileSync('id', ['-u', 'nobody']).toString()), gid: Number(execFileSync('id', ['-g', 'nobody']).toString()) };
    for (const f of ['', ...readdirSync(dir)]) chownSync(path.join(dir, f), as.uid, as.gid);
  }
  const proc: ChildProcess = spawn(pgbouncerBinary(), [path.join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'], ...(as ?? {}) });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  // Ready once it accepts a TCP connection (it does not before it listens).
  const until = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`pgbouncer exited: ${stderr}`);
    const ok = await new Promise<boolean>((resolve) => {
      const { connect } = require('node:net') as typeof import('node:net');
      const c = connect(port, '127.0.0.1', () => (c.end(), resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > until) throw new Error(`pgbouncer did not listen within 30 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: proc.pid!,
    url: (user, password, database) => `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
