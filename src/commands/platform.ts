import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { createApiKey, listApiKeys, revokeApiKey } from '../db/apiKeys';
import { backfillFromGlobal, rotateKeys } from '../db/maintenance';
import { provisionSendgridSubuser } from './sendgridProvision';
import { positiveInt, print, tenantOption, withSql, type CliContext } from './shared';
import { requireEncryptionKey, requireKeyRing } from '../config/require';
import { UsageError } from '../errors';

/** Platform operations: keys generate|rotate, backfill, apikeys, sendgrid provision. */
export function registerPlatform(program: Command, { io, config }: CliContext): void {
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
      if (!cfg.previousEncryptionKey) throw new UsageError('DB_ENCRYPTION_KEY_PREVIOUS is not set: set it to the key being rotated away from, and DB_ENCRYPTION_KEY to the new one');
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
      if (!cfg.global) throw new UsageError('the global configuration is not set: SENDGRID_API_KEY and SENDGRID_FROM_EMAIL are required');
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
      if (opts.role !== 'platform_admin' && opts.role !== 'tenant_admin') throw new UsageError('--role must be platform_admin or tenant_admin');
      if (opts.role === 'tenant_admin' && !opts.tenant) throw new UsageError('a tenant_admin key needs --tenant');
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
      if (!(await withSql(config(), 'maintenance', (sql) => revokeApiKey(sql, which)))) throw new UsageError(`no active key ${which}`);
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
      const keys = requireKeyRing(cfg);
      if (!cfg.sendgridMasterApiKey) throw new UsageError('SENDGRID_MASTER_API_KEY is not set: the parent account key with subusers, api_keys and verified_senders scopes');
      const masterApiKey = cfg.sendgridMasterApiKey;
      const sender = opts.address && opts.city && opts.country ? { address: opts.address, city: opts.city, country: opts.country } : undefined;
      const report = await withSql(cfg, 'worker', (sql) =>
        provisionSendgridSubuser(sql, keys, {
          masterApiKey, baseUrl: cfg.sendgridBaseUrl, tenantId: opts.tenant, username: opts.username, fromEmail: opts.fromEmail,
          fromName: opts.fromName, replyTo: opts.replyTo, sender, ip: opts.ip, dailyLimit: opts.dailyLimit,
        }),
      );
      print(io.stdout, JSON.stringify(report));
    });

}
