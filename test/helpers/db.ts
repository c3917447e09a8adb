import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { createSql, quoteIdent, type Sql } from '../../src/db/connect';
import { roleUrl } from '../../dev/embeddedPostgres';
import { TEST_ROLES } from './roles';

export interface TestDatabase {
  name: string;
  superuserUrl: string;
  ownerUrl: string;
  workerUrl: string;
  /** A pool connected as the unprivileged worker role: what the worker itself uses. */
  worker(max?: number): Sql;
  /** A pool connected as the owner (subject to FORCE ROW LEVEL SECURITY like everyone else). */
  owner(): Sql;
  /** A superuser pool (bypasses RLS): for assertions that must see every tenant. */
  admin(): Sql;
  drop(): Promise<void>;
}

function superuserUrl(database = 'postgres'): string {
  const base = process.env.TEST_PG_SUPERUSER_URL;
  if (!base) throw new Error('TEST_PG_SUPERUSER_URL is not set: run the tests through jest (globalSetup starts PostgreSQL)');
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A fresh database cloned from the migrated template: fast, and isolated per test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const su = postgres(superuserUrl(), { max: 1, onnotice: () => {} });
  try {
    await su.unsafe(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(TEST_ROLES.template)} OWNER ${quoteIdent(TEST_ROLES.ownerRole)}`);
  } finally {
    await su.end({ timeout: 5 });
  }
  const pools: Sql[] = [];
  const open = (url: string, max: number) => {
    const sql = createSql(url, { max, connectTimeoutSeconds: 10, statementTimeoutMs: 30_000, applicationName: 'test' });
    pools.push(sql);
    return sql;
  };
  const ownerUrl = roleUrl(superuserUrl(), TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, name);
  const workerUrl = roleUrl(superuserUrl(), TEST_ROLES.workerRole, TEST_ROLES.workerPassword, name);
  return {
    name,
    superuserUrl: superuserUrl(name),
    ownerUrl,
    workerUrl,
    worker: (max = 5) => open(workerUrl, max),
    owner: () => open(ownerUrl, 2),
    admin: () => open(superuserUrl(name), 2),
    async drop() {
      await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
      const s = postgres(superuserUrl(), { max: 1, onnotice: () => {} });
      try {
        await s.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      } finally {
        await s.end({ timeout: 5 });
      }
    },
  };
}
