import { findPgbouncer, startPgBouncer } from '../../dev/pgbouncer';

export { findPgbouncer, startPgBouncer, pgbouncerBinary, type PgBouncer } from '../../dev/pgbouncer';

/**
 * The pooler suites run wherever pgbouncer is installed, and always in CI (`.ci/run` installs it,
 * and a missing one fails there). On a developer machine without it they are skipped, saying so.
 */
export function describeWithPgbouncer(): jest.Describe {
  if (findPgbouncer() || process.env.CI) return describe;
  // eslint-disable-next-line no-console
  console.warn('pgbouncer is not installed: the PgBouncer suite is skipped here (apt-get install pgbouncer; .ci/run installs it)');
  return describe.skip;
}

/**
 * The ways a suite that must hold behind a pooler runs: directly, and through PgBouncer in
 * transaction mode wherever it is installed (always in CI). For `describe.each`.
 */
export function poolingWays(): Array<[string, boolean]> {
  const ways: Array<[string, boolean]> = [['directly', false]];
  if (findPgbouncer() || process.env.CI) ways.push(['through PgBouncer in transaction mode', true]);
  else console.warn('pgbouncer is not installed: suites run directly only (apt-get install pgbouncer; .ci/run installs it)');
  return ways;
}

/**
 * What a test worker connects with: the test database's worker URL directly, or a PgBouncer in
 * front of it (a server pool of `poolSize`) with DB_POOLER=pgbouncer.
 */
export async function workerDatabase(
  db: { workerUrl: string; superuserUrl: string; name: string },
  pooled: boolean,
  poolSize = 2,
): Promise<{ workerUrl: string; env: Record<string, string>; stop(): Promise<void> }> {
  if (!pooled) return { workerUrl: db.workerUrl, env: {}, stop: async () => {} };
  const u = new URL(db.workerUrl);
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  const bouncer = await startPgBouncer({ pgPort: Number(new URL(db.superuserUrl).port), users: [{ name: user, password }], poolSize });
  return { workerUrl: bouncer.url(user, password, db.name), env: { DB_POOLER: 'pgbouncer' }, stop: () => bouncer.stop() };
}
