import type { Command } from 'commander';
import { isEmailAddress } from '../core/emailAddress';
import { SUPPRESSION_REASONS, addSuppression, getReputation, getSuppression, listSuppressions, removeSuppression, resumeTenant, type SuppressionReason } from '../db/feedback';
import { UsageError } from '../errors';
import { cliActor, positiveInt, print, tenantOption, withSql, type CliContext } from './shared';

const address = (v: string) => {
  const a = v.trim().toLowerCase();
  if (a.length > 320 || !isEmailAddress(a)) throw new UsageError('--address must be an email address');
  return a;
};
const note = (v: string) => {
  if (v.length > 500) throw new UsageError('--note must be at most 500 characters');
  return v;
};

/** suppressions list|get|add|remove and reputation show|resume (README "Delivery feedback"), through RLS as DATABASE_URL's role. */
export function registerFeedback(program: Command, { io, config }: CliContext): void {
  const s = program.command('suppressions').description("a tenant's suppression list: addresses that are never mailed (bounces, complaints, unsubscribes, by hand)");

  s.command('list')
    .description('print the list in address order, one page at a time (--cursor: the last address printed)')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--reason <reason>', `only this reason (${SUPPRESSION_REASONS.join(', ')})`, (v: string) => {
      if (!(SUPPRESSION_REASONS as readonly string[]).includes(v)) throw new UsageError(`--reason must be one of ${SUPPRESSION_REASONS.join(', ')}`);
      return v as SuppressionReason;
    })
    .option('--cursor <address>', 'start after this address')
    .option('--limit <n>', 'addresses per page (1-1000)', (v: string) => positiveInt(v, '--limit', 1000), 100)
    .action(async (o: { tenant: string; reason?: SuppressionReason; cursor?: string; limit: number }) => {
      const page = await withSql(config(), 'worker', (sql) => listSuppressions(sql, o.tenant, { reason: o.reason, cursor: o.cursor?.toLowerCase(), limit: o.limit }));
      print(io.stdout, JSON.stringify(page, null, 2));
    });

  s.command('get')
    .description('whether an address is suppressed, and why')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .requiredOption('--address <email>', 'the address', address)
    .action(async (o: { tenant: string; address: string }) => {
      const found = await withSql(config(), 'worker', (sql) => getSuppression(sql, o.tenant, o.address));
      if (!found) throw new UsageError(`${o.address} is not on the suppression list of tenant ${o.tenant}`);
      print(io.stdout, JSON.stringify(found, null, 2));
    });

  s.command('add')
    .description('suppress an address by hand (reason manual)')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .requiredOption('--address <email>', 'the address', address)
    .option('--note <text>', 'why (kept in the suppression log)', note)
    .option('--by <name>', 'who (default: cli:<your user>)')
    .action(async (o: { tenant: string; address: string; note?: string; by?: string }) => {
      const r = await withSql(config(), 'worker', (sql) => addSuppression(sql, o.tenant, { address: o.address, reason: 'manual', source: 'admin', actor: cliActor(o.by), note: o.note ?? null }));
      print(io.stderr, r.created ? `suppressed ${o.address} for tenant ${o.tenant}` : `${o.address} was already suppressed (${r.suppression.reason})`);
      print(io.stdout, JSON.stringify(r.suppression, null, 2));
    });

  s.command('remove')
    .description('remove an address, so it is mailed again')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .requiredOption('--address <email>', 'the address', address)
    .requiredOption('--note <text>', 'why (kept in the suppression log with who)', note)
    .option('--by <name>', 'who (default: cli:<your user>)')
    .action(async (o: { tenant: string; address: string; note: string; by?: string }) => {
      const removed = await withSql(config(), 'worker', (sql) => removeSuppression(sql, o.tenant, o.address, { actor: cliActor(o.by), note: o.note }));
      if (!removed) throw new UsageError(`${o.address} is not on the suppression list of tenant ${o.tenant}`);
      print(io.stderr, `removed ${o.address} from the suppression list of tenant ${o.tenant}`);
    });

  const r = program.command('reputation').description("a tenant's reputation guard: its pause and thresholds");
  r.command('show')
    .description('print the state and the thresholds in force')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (o: { tenant: string }) => {
      print(io.stdout, JSON.stringify(await withSql(config(), 'worker', (sql) => getReputation(sql, o.tenant, config().feedback)), null, 2));
    });
  r.command('resume')
    .description("lift the guard's pause; then replay the tenant's tenant_paused dead letters")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--by <name>', 'who (default: cli:<your user>)')
    .action(async (o: { tenant: string; by?: string }) => {
      const res = await withSql(config(), 'worker', (sql) => resumeTenant(sql, o.tenant, cliActor(o.by), config().feedback));
      print(io.stderr, res.was_paused ? `resumed tenant ${o.tenant}` : `tenant ${o.tenant} was not paused`);
      print(io.stdout, JSON.stringify(res.reputation, null, 2));
    });
}
