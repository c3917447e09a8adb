import { userInfo } from 'node:os';
import { MAX_JSON_DEPTH, nestedDeeperThan } from '../core/jsonDepth';
import type { Readable, Writable } from 'node:stream';
import { type Config } from '../config';
import { createSql, type Sql } from '../db/connect';
import { assertReachable } from '../db/probe';
import { TENANT_ID_PATTERN } from '../types';
import { type DatabaseUse, databaseUrlSetting, requireDatabaseUrl, startupProbeMs } from '../config/require';
import { UsageError } from '../errors';

export interface CliIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

/** A failure the user can fix: printed as one message, exit code 1 (2 for usage errors). */

export const print = (w: Writable, s: string) => void w.write(s.endsWith('\n') ? s : `${s}\n`);

export function positiveInt(v: string, name: string, max = 1_000_000): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`${name} must be a whole number from 1 to ${max}`);
  return n;
}

/** Who ran a command, for the records that keep it (suppression log, outage switch): --by, else the operating-system user. */
export function cliActor(by: string | undefined): string {
  let user = process.env.USER;
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = 'unknown';
    }
  }
  return (by ?? `cli:${user}`).slice(0, 200);
}

export function tenantOption(v: string): string {
  if (!TENANT_ID_PATTERN.test(v)) throw new UsageError('--tenant must be 1-128 characters of [A-Za-z0-9._:-]');
  return v;
}

/** JSON a command reads (a file or stdin): a UsageError when it does not parse or nests too deep. */
export function parseJsonInput(raw: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new UsageError(`${what} is not valid JSON`);
  }
  if (nestedDeeperThan(value)) throw new UsageError(`${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
  return value;
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  return Buffer.concat(chunks).toString('utf8');
}

export async function withSql<T>(config: Config, which: DatabaseUse, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const url = requireDatabaseUrl(config, which);
  const sql = createSql(url, {
    max: 2,
    connectTimeoutSeconds: config.dbConnectTimeoutSeconds,
    statementTimeoutMs: 60_000,
    applicationName: `tenant-email-cli`,
    // Migrations and maintenance take direct connections (session-level locks); the worker's own
    // role may go through the pooler like the worker does.
    pooler: which === 'worker' ? config.dbPooler : 'none',
    prepare: which === 'worker' ? config.dbPreparedStatements : true,
  });
  try {
    await assertReachable(sql, url, databaseUrlSetting(config, which), startupProbeMs(config));
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** What every command group gets: the streams and a lazily read configuration. */
export interface CliContext {
  io: CliIO;
  config: () => Config;
}
