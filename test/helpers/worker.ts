import { loadConfig, type Config } from '../../src/config';
import type { Logger } from '../../src/logger';
import { startWorker, type RunningWorker } from '../../src/server';
import type { TestDatabase } from './db';

/** A canary encryption key: if it shows up in any output, a test fails. */
export const CANARY_DB_KEY = 'CANARY-DBKEY-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e';

export function testConfig(db: Pick<TestDatabase, 'workerUrl'>, env: Record<string, string> = {}): Config {
  return loadConfig({
    DATABASE_URL: db.workerUrl,
    DB_ENCRYPTION_KEY: CANARY_DB_KEY,
    ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true',
    PROVIDER_TIMEOUT_MS: '2000',
    SHUTDOWN_GRACE_MS: '5000',
    LOG_LEVEL: 'debug',
    // SENDER_DOMAIN_POLICY is left at its default (platform-paid): tenants' own accounts send
    // from their from_email as given. The sender-tier suite sets SENDER_DOMAIN_POLICY=verified.
    ...env,
  });
}

export async function startTestWorker(db: Pick<TestDatabase, 'workerUrl'>, logger: Logger, env: Record<string, string> = {}): Promise<RunningWorker & { url: string; config: Config }> {
  const config = testConfig(db, env);
  const w = await startWorker(config, logger, { port: 0 });
  return { ...w, url: `http://127.0.0.1:${w.port}/`, config };
}
