import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { deleteSettings, getSettings, loadSenderSettings, putSettings } from '../db/settings';
import { ProviderClients, providerOptions } from '../providers/clients';
import { verifyAccounts } from '../providers/verify';
import { Egress } from '../net/egress';
import { validateSettingsInput } from '../settings/input';
import { parseJsonInput, print, readAll, tenantOption, withSql, type CliContext } from './shared';
import { requireKeyRing } from '../config/require';
import { UsageError } from '../errors';

/** settings put|get|verify|delete: a tenant's settings through RLS, as DATABASE_URL's role. */
export function registerSettings(program: Command, { io, config }: CliContext): void {
  const settings = program.command('settings').description("manage a tenant's email settings (through row-level security, as DATABASE_URL's role)");

  settings
    .command('put')
    .description('create or replace settings from a JSON body on stdin (or --file); never pass secrets as arguments')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--file <path>', 'read the JSON body from this file instead of stdin')
    .action(async (opts: { tenant: string; file?: string }) => {
      const cfg = config();
      const keys = requireKeyRing(cfg);
      const raw = opts.file ? readFileSync(opts.file, 'utf8') : await readAll(io.stdin);
      const body = parseJsonInput(raw, 'the settings body (see README: "Tenant settings")');
      const parsed = await validateSettingsInput(body, { allowProviderEndpointOverride: cfg.allowProviderEndpointOverride, platformTier: cfg.tenantFromPattern !== undefined, egress: new Egress(cfg.egress) });
      if (!parsed.ok) {
        throw new UsageError(`invalid settings:\n${parsed.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
      }
      const out = await withSql(cfg, 'worker', async (sql) => {
        const { created } = await putSettings(sql, keys, opts.tenant, parsed.value);
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
      if (!s) throw new UsageError(`tenant ${opts.tenant} has no email settings`);
      print(io.stdout, JSON.stringify(s, null, 2));
    });

  settings
    .command('verify')
    .description("check the tenant's provider credentials (and the fallback's) without sending an email")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const cfg = config();
      const keys = requireKeyRing(cfg);
      const s = await withSql(cfg, 'worker', (sql) => loadSenderSettings(sql, keys, opts.tenant));
      if (!s) throw new UsageError(`tenant ${opts.tenant} has no email settings`);
      const providers = new ProviderClients(providerOptions(cfg));
      let report;
      try {
        report = await verifyAccounts(providers, opts.tenant, s);
      } finally {
        await providers.closeAll();
      }
      for (const [role, check] of [['primary', report.primary], ['fallback', report.fallback]] as const) {
        if (check) print(io.stdout, `${role} ${check.provider}: ${check.ok ? 'ok' : `${check.code} — ${check.message}`}`);
      }
      if (!report.ok) throw new UsageError('verification failed');
    });

  settings
    .command('delete')
    .description("delete a tenant's settings (its events then use the global configuration, if any)")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const deleted = await withSql(config(), 'worker', (sql) => deleteSettings(sql, opts.tenant));
      if (!deleted) throw new UsageError(`tenant ${opts.tenant} has no email settings`);
      print(io.stdout, `deleted settings for tenant ${opts.tenant}`);
    });

}
