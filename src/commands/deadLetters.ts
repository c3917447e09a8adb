import type { Command } from 'commander';
import { listDeadLetters, purgeDeadLetters, type DeadLetterFilter } from '../db/deadLetters';
import { assertMaintenanceRole } from '../db/maintenance';
import { UsageError } from '../errors';
import { replayDeadLetters } from '../worker/deadLetterReplay';
import { positiveInt, print, tenantOption, withSql, type CliContext } from './shared';

/** A time: ISO 8601, or an age like 30m, 24h, 7d (that long ago). */
export function parseWhen(v: string, name: string, now = Date.now()): Date {
  const age = /^(\d{1,6})([mhd])$/.exec(v);
  if (age) return new Date(now - Number(age[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as 'm' | 'h' | 'd']);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new UsageError(`${name} must be an ISO 8601 time or an age like 30m, 24h, 7d`);
  return new Date(t);
}

const httpUrl = (v: string) => {
  if (!/^https?:\/\/\S+$/.test(v)) throw new UsageError('--to must be an http(s) URL');
  return v;
};

interface FilterOptions {
  tenant?: string;
  code?: string;
  type?: string;
  since?: string;
  until?: string;
  limit: number;
  notReplayed?: boolean;
}

function withFilters(cmd: Command, defaultLimit: number): Command {
  return cmd
    .option('--tenant <id>', 'one tenant (through DATABASE_URL, under RLS); without it every tenant, through MAINTENANCE_DATABASE_URL', tenantOption)
    .option('--code <error-code>', 'the error code the worker answered (quota_exceeded, tenant_paused, …; http_<status> for others)')
    .option('--type <event-type>', 'event type')
    .option('--since <when>', 'received at or after (ISO 8601, or an age: 30m, 24h, 7d)')
    .option('--until <when>', 'received before')
    .option('--not-replayed', 'only dead letters not replayed since they were last dead-lettered')
    .option('--limit <n>', 'at most this many', (v: string) => positiveInt(v, '--limit', 100_000), defaultLimit);
}

function filterOf(o: FilterOptions): DeadLetterFilter {
  const since = o.since ? parseWhen(o.since, '--since') : undefined;
  const until = o.until ? parseWhen(o.until, '--until') : undefined;
  return { tenantId: o.tenant, errorCode: o.code, eventType: o.type, since, until, notReplayed: o.notReplayed, limit: o.limit };
}

/** dead-letters list|replay|purge: the dead-letter store (README "Dead letters"). */
export function registerDeadLetters(program: Command, { io, config }: CliContext): void {
  const dl = program.command('dead-letters').description('find, replay and purge the events the broker dead-lettered (stored by POST /dead-letters)');
  // One tenant through the worker role and RLS; every tenant only through the maintenance role.
  const connect = <T>(tenant: string | undefined, fn: Parameters<typeof withSql<T>>[2]) =>
    tenant ? withSql(config(), 'worker', fn) : withSql(config(), 'maintenance', async (sql) => (await assertMaintenanceRole(sql), fn(sql)));

  withFilters(dl.command('list').description('print the matching dead letters (oldest first) and their counts by error code'), 100).action(async (o: FilterOptions) => {
    const r = await connect(o.tenant, (sql) => listDeadLetters(sql, filterOf(o)));
    print(io.stdout, JSON.stringify(r, null, 2));
  });

  withFilters(dl.command('replay').description("send the matching dead letters again, each as it was received, to the broker's ingress (BROKER_URL) or --to; records each answer"), 1000)
    .option('--to <url>', 'where to send them (default: BROKER_URL)', httpUrl)
    .option('--rate <n>', 'events per second at most', (v: string) => positiveInt(v, '--rate', 10_000), 10)
    .option('--dry-run', 'print what would be sent, send nothing')
    .action(async (o: FilterOptions & { to?: string; rate: number; dryRun?: boolean }) => {
      const target = o.to ?? config().brokerUrl;
      if (!target) throw new UsageError('no target: set BROKER_URL (the broker ingress, e.g. http://broker-ingress.knative-eventing.svc.cluster.local/<namespace>/<broker>) or pass --to');
      const report = await connect(o.tenant, (sql) =>
        replayDeadLetters(sql, filterOf(o), { target, dryRun: Boolean(o.dryRun), ratePerSecond: o.rate, onEach: (e) => print(io.stderr, `${o.dryRun ? 'would replay' : `replayed (${e.status ?? 'no answer'})`} ${e.tenant_id} ${e.event_source} ${e.event_id} [${e.error_code ?? '-'}]`) }),
      );
      print(io.stdout, JSON.stringify({ ...report, events: undefined }, null, 2));
    });

  dl.command('purge')
    .description('delete dead letters received longer ago than the retention (DEAD_LETTER_RETENTION_DAYS)')
    .option('--tenant <id>', 'one tenant (through DATABASE_URL); without it every tenant (MAINTENANCE_DATABASE_URL)', tenantOption)
    .option('--older-than-days <n>', 'override the retention', (v: string) => positiveInt(v, '--older-than-days', 3650))
    .action(async (o: { tenant?: string; olderThanDays?: number }) => {
      const days = o.olderThanDays ?? config().deadLetterRetentionDays;
      const before = new Date(Date.now() - days * 86_400_000);
      const n = await connect(o.tenant, (sql) => purgeDeadLetters(sql, before, o.tenant));
      print(io.stdout, JSON.stringify({ deleted: n, before: before.toISOString() }));
    });
}
