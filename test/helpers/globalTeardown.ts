import type { LocalPostgres } from '../../dev/embeddedPostgres';

export default async function globalTeardown(): Promise<void> {
  const pg = (globalThis as { __TEST_PG__?: LocalPostgres }).__TEST_PG__;
  if (pg) await pg.stop();
}
