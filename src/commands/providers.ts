import type { Command } from 'commander';
import { disableProvider, enableProvider, listDisabledProviders } from '../db/providerSwitch';
import { UsageError } from '../errors';
import { PROVIDERS, type ProviderName } from '../types';
import { cliActor, print, withSql, type CliContext } from './shared';

const provider = (v: string): ProviderName => {
  if (!(PROVIDERS as readonly string[]).includes(v)) throw new UsageError(`provider must be one of ${PROVIDERS.join(', ')}`);
  return v as ProviderName;
};

/**
 * providers list|disable|enable: the outage switch (docs/RUNBOOK.md "Provider outage"). A disabled
 * provider's tenants send through their fallback; tenants without one are answered a retryable
 * 503 until it is enabled again. Every worker picks the change up within PROVIDER_SWITCH_REFRESH_MS.
 */
export function registerProviders(program: Command, { io, config }: CliContext): void {
  const p = program.command('providers').description('the provider outage switch: move every tenant off a provider in one step, and back');
  p.command('list')
    .description('print the providers out of service (the database switch; PROVIDERS_DISABLED is per deployment)')
    .action(async () => {
      print(io.stdout, JSON.stringify(await withSql(config(), 'worker', listDisabledProviders), null, 2));
    });
  p.command('disable')
    .description('take a provider out of service for every tenant (through MAINTENANCE_DATABASE_URL)')
    .argument('<provider>', PROVIDERS.join('|'), provider)
    .requiredOption('--note <text>', 'why (shown by providers list)')
    .option('--by <name>', 'who (default: cli:<your user>)')
    .action(async (name: ProviderName, o: { note: string; by?: string }) => {
      if (o.note.length > 500) throw new UsageError('--note must be at most 500 characters');
      const by = cliActor(o.by);
      const added = await withSql(config(), 'maintenance', (sql) => disableProvider(sql, name, by, o.note));
      print(io.stderr, added ? `${name} is out of service; workers switch within ${config().providerSwitchRefreshMs} ms` : `${name} was already out of service`);
    });
  p.command('enable')
    .description('put a provider back in service (through MAINTENANCE_DATABASE_URL)')
    .argument('<provider>', PROVIDERS.join('|'), provider)
    .action(async (name: ProviderName) => {
      const removed = await withSql(config(), 'maintenance', (sql) => enableProvider(sql, name));
      print(io.stderr, removed ? `${name} is back in service; workers switch within ${config().providerSwitchRefreshMs} ms` : `${name} was not out of service`);
    });
}
