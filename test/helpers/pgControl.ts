import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { bootstrapDatabase, roleUrl } from '../../dev/embeddedPostgres';
import { keyId } from '../../src/config';
import { createSql, type Sql } from '../../src/db/connect';
import { migrate } from '../../src/db/migrate';
import { putSettings } from '../../src/db/settings';
import { TEST_ROLES } from './roles';
import { CANARY_DB_KEY } from './worker';

export interface ControlledPostgres {
  superuserUrl(database?: string): string;
  /** A fast shutdown (SIGINT: sessions are ended, a checkpoint is written). */
  stop(): Promise<void>;
  /** An immediate shutdown (SIGQUIT: every backend ends at once, no checkpoint; start() replays the WAL). */
  stopImmediately(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Start test/helpers/pgServer.js and wait for it to say where PostgreSQL listens. */
export async function startControlledPostgres(): Promise<ControlledPostgres> {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [path.join(__dirname, 'pgServer.js')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () =>
    new Promise<string>((resolve, reject) => {
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`pgServer exited (${code}): ${stderr.slice(-2000)}`)));
    });
  const ready = await next();
  const m = /^ready (.+)$/.exec(ready);
  if (!m) throw new Error(`pgServer: ${ready} ${stderr}`);
  const base = new URL(m[1] as string);
  const command = async (cmd: string, expected: string) => {
    const reply = next();
    child.stdin.write(`${cmd}\n`);
    const got = await reply;
    if (got !== expected) throw new Error(`pgServer ${cmd}: ${got}`);
  };
  return {
    superuserUrl: (database = 'postgres') => {
      const u = new URL(base);
      u.pathname = `/${database}`;
      return u.toString();
    },
    stop: () => command('stop', 'stopped'),
    stopImmediately: () => command('immediate', 'stopped'),
    start: () => command('start', 'started'),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin.write('exit\n');
      }),
  };
}

export interface OwnDatabase {
  pg: ControlledPostgres;
  /** The worker role's URL. */
  workerUrl: string;
  /** A superuser pool on the database, for checking the ledger. */
  superuser: Sql;
  close(): Promise<void>;
}

/**
 * A PostgreSQL of a test file's own (so it can be stopped and restarted under a running worker),
 * bootstrapped with the test roles, migrated, and with `tenants` SendGrid tenants whose endpoint
 * is `providerUrl` (`tenant(i)` names them).
 */
export async function startOwnDatabase(database: string, opts: { tenants: number; tenant: (i: number) => string; providerUrl: string; superuserPool?: number }): Promise<OwnDatabase> {
  const pg = await startControlledPostgres();
  const pool = (url: string, max: number, name: string) => createSql(url, { max, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: name });
  await bootstrapDatabase(pg.superuserUrl(), { database, ...TEST_ROLES });
  const owner = pool(roleUrl(pg.superuserUrl(), TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, database), 1, `${database}-migrate`);
  await migrate(owner, { workerRole: TEST_ROLES.workerRole });
  await owner.end({ timeout: 5 });
  const workerUrl = roleUrl(pg.superuserUrl(), TEST_ROLES.workerRole, TEST_ROLES.workerPassword, database);
  const superuser = pool(pg.superuserUrl(database), opts.superuserPool ?? 1, `${database}-check`);
  const sql = pool(workerUrl, 1, `${database}-setup`);
  const key = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
  for (let t = 0; t < opts.tenants; t++) {
    const name = opts.tenant(t);
    await putSettings(sql, { current: key }, name, {
      provider: 'sendgrid', api_key: `SG.CANARY-${name}-0000000000`, from_email: `noreply@${name}.example`, provider_settings: { base_url: opts.providerUrl }, enabled: true, daily_limit: 100_000,
    } as never);
  }
  await sql.end({ timeout: 5 });
  return {
    pg,
    workerUrl,
    superuser,
    close: async () => {
      await superuser.end({ timeout: 5 });
      await pg.close();
    },
  };
}
