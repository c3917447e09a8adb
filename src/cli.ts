#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig, requireDatabaseUrl, requireEncryptionKey, type Config, type DatabaseUse } from './config';
import { createApiKey, listApiKeys, revokeApiKey } from './db/apiKeys';
import { MaintenanceError, backfillFromGlobal, rotateKeys } from './db/maintenance';
import { loadSenderSettings } from './db/settings';
import { tenantStats } from './db/stats';
import { ProviderClients } from './providers/clients';
import { sendEvent, type ReplayEvent } from './replay';
import { ProvisionError, provisionSendgridSubuser } from './sendgridProvision';
import { createSql, type Sql } from './db/connect';
import { migrate } from './db/migrate';
import { UnsafeRoleError } from './db/roleCheck';
import { SettingsError, deleteSettings, getSettings, putSettings } from './db/settings';
import { createLogger } from './logger';
import { startWorker } from './server';
import { parseSettingsInput } from './settingsInput';
import { TENANT_ID_PATTERN } from './types';

export interface CliIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

/** A failure the user can fix: printed as one message, exit code 1 (2 for usage errors). */
class CliError extends Error {}

const print = (w: Writable, s: string) => void w.write(s.endsWith('\n') ? s : `${s}\n`);

function positiveInt(v: string, name: string, max = 1_000_000): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new CliError(`${name} must be a whole number from 1 to ${max}`);
  return n;
}

function tenantOption(v: string): string {
  if (!TENANT_ID_PATTERN.test(v)) throw new CliError('--tenant must be 1-128 characters of [A-Za-z0-9._:-]');
  return v;
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  return Buffer.concat(chunks).toString('utf8');
}

async function withSql<T>(config: Config, which: DatabaseUse, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = createSql(requireDatabaseUrl(config, which), {
    max: 2,
    connectTimeoutSeconds: config.dbConnectTimeoutSeconds,
    statementTimeoutMs: 60_000,
    applicationName: `tenant-email-cli`,
  });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export function buildCli(io: CliIO): Command {
  const config = () => loadConfig(io.env);
  const program = new Command('tenant-email')
    .description("Send each tenant's task-completion emails through that tenant's own provider account.")
    .configureOutput({ writeOut: (s) => print(io.stdout, s), writeErr: (s) => print(io.stderr, s) })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('migrate')
    .description('apply pending schema migrations (as the owner role: MIGRATION_DATABASE_URL, else DATABASE_URL) and the worker role grants')
    .action(async () => {
      const cfg = config();
      const result = await withSql(cfg, 'migration', (sql) => migrate(sql, { workerRole: cfg.workerDbRole }));
      print(io.stdout, result.applied.length ? `applied: ${result.applied.join(', ')}` : 'schema is up to date');
      if (result.superuserSql.length > 0) {
        print(
          io.stderr,
          `warning: the migrating role may not set log parameters for "${cfg.workerDbRole}"; bind parameters (the encryption key)\n` +
            'could reach the server log on errors. Ask a superuser to run:\n' +
            result.superuserSql.map((s) => `  ${s}`).join('\n'),
        );
      }
    });

  program
    .command('serve')
    .description('run the worker: POST / takes CloudEvents from the Knative broker')
    .option('--port <port>', 'listen port (default: PORT, else 8080)', (v) => Number(v))
    .action(async (opts: { port?: number }) => {
      const cfg = config();
      const logger = createLogger({ level: cfg.logLevel });
      const worker = await startWorker(cfg, logger, { port: opts.port });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down');
          void worker.shutdown().then(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  const keys = program.command('keys').description('encryption keys for tenant credentials');
  keys
    .command('generate')
    .description('print a new random DB_ENCRYPTION_KEY (48 random bytes, base64)')
    .action(() => {
      print(io.stdout, randomBytes(48).toString('base64'));
    });
  keys
    .command('rotate')
    .description('re-encrypt every tenant secret from DB_ENCRYPTION_KEY_PREVIOUS to DB_ENCRYPTION_KEY (MAINTENANCE_DATABASE_URL); resumable')
    .option('--batch-size <n>', 'rows per transaction', (v) => positiveInt(v, '--batch-size'), 100)
    .option('--max-batches <n>', 'stop after this many batches (run again to resume)', (v) => positiveInt(v, '--max-batches'))
    .action(async (opts: { batchSize: number; maxBatches?: number }) => {
      const cfg = config();
      const to = requireEncryptionKey(cfg);
      if (!cfg.previousEncryptionKey) throw new CliError('DB_ENCRYPTION_KEY_PREVIOUS is not set: set it to the key being rotated away from, and DB_ENCRYPTION_KEY to the new one');
      const from = cfg.previousEncryptionKey;
      const report = await withSql(cfg, 'maintenance', (sql) =>
        rotateKeys(sql, { from, to, batchSize: opts.batchSize, maxBatches: opts.maxBatches, onBatch: (n) => print(io.stderr, `re-encrypted ${n} row(s)`) }),
      );
      print(io.stdout, JSON.stringify({ ...report, from_key_id: from.id, to_key_id: to.id }));
      if (report.unknownKey > 0) print(io.stderr, `warning: ${report.unknownKey} row(s) are encrypted with a key that is neither of these two`);
      if (report.remaining > 0) print(io.stderr, `${report.remaining} row(s) still use the previous key: run keys rotate again`);
      else print(io.stderr, 'rotation complete: once every worker runs with the new key, unset DB_ENCRYPTION_KEY_PREVIOUS');
    });

  program
    .command('backfill')
    .description('give every tenant without settings a row from the global SendGrid configuration (MAINTENANCE_DATABASE_URL); idempotent')
    .requiredOption('--from-global', 'use SENDGRID_API_KEY / SENDGRID_FROM_EMAIL / SENDGRID_FROM_NAME / GLOBAL_REPLY_TO_DOMAIN / GLOBAL_DAILY_LIMIT')
    .action(async () => {
      const cfg = config();
      const key = requireEncryptionKey(cfg);
      if (!cfg.global) throw new CliError('the global configuration is not set: SENDGRID_API_KEY and SENDGRID_FROM_EMAIL are required');
      const global = cfg.global;
      const tenants = await withSql(cfg, 'maintenance', (sql) => backfillFromGlobal(sql, { key, global }));
      print(io.stdout, JSON.stringify({ created: tenants.length, tenants }));
    });

  const apikeys = program.command('apikeys').description('admin API keys for machine clients (MAINTENANCE_DATABASE_URL)');
  apikeys
    .command('create')
    .description('create a key and print it once; only its prefix and a hash are stored')
    .requiredOption('--role <role>', 'platform_admin or tenant_admin')
    .option('--tenant <id>', 'the tenant a tenant_admin key manages', tenantOption)
    .option('--expires <days>', 'expire after this many days, e.g. 90 or 90d', (v) => positiveInt(v.replace(/d$/, ''), '--expires', 3650))
    .option('--description <text>', 'what the key is for')
    .action(async (opts: { role: string; tenant?: string; expires?: number; description?: string }) => {
      if (opts.role !== 'platform_admin' && opts.role !== 'tenant_admin') throw new CliError('--role must be platform_admin or tenant_admin');
      if (opts.role === 'tenant_admin' && !opts.tenant) throw new CliError('a tenant_admin key needs --tenant');
      const role = opts.role;
      const created = await withSql(config(), 'maintenance', (sql) =>
        createApiKey(sql, { role, tenantId: opts.tenant ?? null, expiresInDays: opts.expires, description: opts.description }),
      );
      print(io.stderr, `created ${created.prefix}${created.expires_at ? `, expires ${created.expires_at}` : ''}; store the key now, it is not shown again:`);
      print(io.stdout, created.key);
    });
  apikeys
    .command('list')
    .description('list keys (prefix, role, tenant, expiry, revocation, last use; never the key)')
    .option('--tenant <id>', 'only this tenant', tenantOption)
    .action(async (opts: { tenant?: string }) => {
      const rows = await withSql(config(), 'maintenance', (sql) => listApiKeys(sql, opts.tenant));
      print(io.stdout, JSON.stringify(rows, null, 2));
    });
  apikeys
    .command('revoke')
    .description('revoke a key by its prefix or id')
    .argument('<prefix-or-id>')
    .action(async (which: string) => {
      if (!(await withSql(config(), 'maintenance', (sql) => revokeApiKey(sql, which)))) throw new CliError(`no active key ${which}`);
      print(io.stdout, `revoked ${which}`);
    });

  program
    .command('sendgrid')
    .description('SendGrid account operations')
    .command('provision')
    .description('create a SendGrid subuser for a tenant, a mail.send key on its behalf and a verified sender, and store the key as its settings; re-run to finish a partial run')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .requiredOption('--from-email <address>', 'the sender address to verify and send from')
    .requiredOption('--from-name <name>', 'the sender name')
    .option('--reply-to <address>', 'reply-to of the verified sender (default: --from-email)')
    .option('--address <street>', 'postal address of the sender (SendGrid requires one)')
    .option('--city <city>', 'city of the sender')
    .option('--country <country>', 'country of the sender')
    .option('--ip <ip>', 'a dedicated IP to assign to the subuser')
    .option('--username <name>', 'subuser name (default: tew-<tenant>)')
    .option('--daily-limit <n>', 'daily limit for the tenant', (v) => positiveInt(v, '--daily-limit', 100_000_000))
    .action(async (opts: { tenant: string; fromEmail: string; fromName: string; replyTo?: string; address?: string; city?: string; country?: string; ip?: string; username?: string; dailyLimit?: number }) => {
      const cfg = config();
      const key = requireEncryptionKey(cfg);
      if (!cfg.sendgridMasterApiKey) throw new CliError('SENDGRID_MASTER_API_KEY is not set: the parent account key with subusers, api_keys and verified_senders scopes');
      const masterApiKey = cfg.sendgridMasterApiKey;
      const sender = opts.address && opts.city && opts.country ? { address: opts.address, city: opts.city, country: opts.country } : undefined;
      const report = await withSql(cfg, 'worker', (sql) =>
        provisionSendgridSubuser(sql, { current: key, previous: cfg.previousEncryptionKey }, {
          masterApiKey, baseUrl: cfg.sendgridBaseUrl, tenantId: opts.tenant, username: opts.username, fromEmail: opts.fromEmail,
          fromName: opts.fromName, replyTo: opts.replyTo, sender, ip: opts.ip, dailyLimit: opts.dailyLimit,
        }),
      );
      print(io.stdout, JSON.stringify(report));
    });

  program
    .command('stats')
    .description("print a tenant's delivery stats per day, status and provider")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--days <n>', 'how many days back (1-366)', (v) => positiveInt(v, '--days', 366), 30)
    .action(async (opts: { tenant: string; days: number }) => {
      const cfg = config();
      const stats = await withSql(cfg, 'worker', (sql) => tenantStats(sql, opts.tenant, opts.days, cfg.global?.dailyLimit ?? null));
      print(io.stdout, JSON.stringify(stats, null, 2));
    });

  const events = program.command('events').description('send or replay CloudEvents (debugging)');
  events
    .command('send')
    .description('POST one event in binary mode (as a Knative broker would) and print the answer')
    .requiredOption('--url <url>', 'the worker (e.g. http://localhost:8080/) or a broker ingress URL')
    .option('--file <path>', 'a structured-mode event as JSON ({id, source, type, tenant, data}); "-" reads stdin')
    .option('--tenant <id>', 'the tenant extension (ce-tenant)')
    .option('--notify-email <address>', 'data.notify_email')
    .option('--task-id <id>', 'data.task_id (default: a new one)')
    .option('--id <id>', 'the event id (default: a new one; reuse one to replay)')
    .option('--source <source>', 'the event source', '/tenant-email/cli')
    .action(async (opts: { url: string; file?: string; tenant?: string; notifyEmail?: string; taskId?: string; id?: string; source: string }) => {
      let ev: ReplayEvent;
      if (opts.file) {
        const raw = opts.file === '-' ? await readAll(io.stdin) : readFileSync(opts.file, 'utf8');
        try {
          ev = JSON.parse(raw) as ReplayEvent;
        } catch {
          throw new CliError(`${opts.file} is not valid JSON`);
        }
        if (opts.id) ev.id = opts.id;
        if (opts.tenant) ev.tenant = opts.tenant;
      } else {
        ev = {
          id: opts.id,
          source: opts.source,
          ...(opts.tenant ? { tenant: opts.tenant } : {}),
          data: { task_id: opts.taskId ?? `cli-${randomBytes(4).toString('hex')}`, prompt: 'Sent with tenant-email events send', ...(opts.notifyEmail ? { notify_email: opts.notifyEmail } : {}) },
        };
      }
      let res;
      try {
        res = await sendEvent(opts.url, ev);
      } catch (err) {
        throw new CliError(`could not reach ${opts.url}: ${(err as Error).message}`);
      }
      print(io.stdout, `${res.status} ce-id=${res.id}${res.body ? ` ${res.body}` : ''}`);
      if (res.status < 200 || res.status > 299) throw new CliError(`the event was not accepted (HTTP ${res.status})`);
    });

  const settings = program.command('settings').description("manage a tenant's email settings (through row-level security, as DATABASE_URL's role)");

  settings
    .command('put')
    .description('create or replace settings from a JSON body on stdin (or --file); never pass secrets as arguments')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--file <path>', 'read the JSON body from this file instead of stdin')
    .action(async (opts: { tenant: string; file?: string }) => {
      const cfg = config();
      const key = requireEncryptionKey(cfg);
      const raw = opts.file ? readFileSync(opts.file, 'utf8') : await readAll(io.stdin);
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        throw new CliError('the settings body is not valid JSON (see README: "Tenant settings")');
      }
      const parsed = parseSettingsInput(body, { allowProviderEndpointOverride: cfg.allowProviderEndpointOverride });
      if (!parsed.ok) {
        throw new CliError(`invalid settings:\n${parsed.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
      }
      const out = await withSql(cfg, 'worker', async (sql) => {
        const { created } = await putSettings(sql, { current: key, previous: cfg.previousEncryptionKey }, opts.tenant, parsed.value);
        return { created, settings: await getSettings(sql, opts.tenant) };
      });
      print(io.stderr, `${out.created ? 'created' : 'updated'} settings for tenant ${opts.tenant}`);
      print(io.stdout, JSON.stringify(out.settings, null, 2));
    });

  settings
    .command('get')
    .description('print settings with the key masked')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const s = await withSql(config(), 'worker', (sql) => getSettings(sql, opts.tenant));
      if (!s) throw new CliError(`tenant ${opts.tenant} has no email settings`);
      print(io.stdout, JSON.stringify(s, null, 2));
    });

  settings
    .command('verify')
    .description("check the tenant's provider credentials (and the fallback's) without sending an email")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const cfg = config();
      const key = requireEncryptionKey(cfg);
      const s = await withSql(cfg, 'worker', (sql) => loadSenderSettings(sql, { current: key, previous: cfg.previousEncryptionKey }, opts.tenant));
      if (!s) throw new CliError(`tenant ${opts.tenant} has no email settings`);
      const providers = new ProviderClients({ timeoutMs: cfg.providerTimeoutMs, allowEndpointOverride: cfg.allowProviderEndpointOverride });
      let failed = false;
      try {
        for (const [role, account] of [['primary', s.primary], ['fallback', s.fallback]] as const) {
          if (!account) continue;
          try {
            await providers.get(opts.tenant, account).verify();
            print(io.stdout, `${role} ${account.provider}: ok`);
          } catch (err) {
            failed = true;
            const e = err as { code?: string; message?: string };
            print(io.stdout, `${role} ${account.provider}: ${e.code ?? 'error'} — ${e.message ?? ''}`);
          }
        }
      } finally {
        await providers.closeAll();
      }
      if (failed) throw new CliError('verification failed');
    });

  settings
    .command('delete')
    .description("delete a tenant's settings (its events then use the global configuration, if any)")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const deleted = await withSql(config(), 'worker', (sql) => deleteSettings(sql, opts.tenant));
      if (!deleted) throw new CliError(`tenant ${opts.tenant} has no email settings`);
      print(io.stdout, `deleted settings for tenant ${opts.tenant}`);
    });

  return program;
}

/** Run the CLI; resolves to the process exit code. Errors are printed without stack or secrets. */
export async function runCli(argv: string[], io: CliIO): Promise<number> {
  const program = buildCli(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError || err instanceof ConfigError || err instanceof SettingsError || err instanceof UnsafeRoleError || err instanceof MaintenanceError || err instanceof ProvisionError) {
      print(io.stderr, `error: ${err.message}`);
      return 1;
    }
    const e = err as { code?: string; message?: string };
    // Our own messages (migrate's role checks) and database/connection errors carry no bound values.
    print(io.stderr, `error: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`);
    return 1;
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
  );
}
