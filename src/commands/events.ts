import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { tenantStats } from '../db/stats';
import { sendEvent, type ReplayEvent } from './replay';
import { parseJsonInput, positiveInt, print, readAll, tenantOption, withSql, type CliContext } from './shared';
import { UsageError } from '../errors';

/** Debugging: stats of a tenant, and sending or replaying an event. */
export function registerEvents(program: Command, { io, config }: CliContext): void {
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
        ev = parseJsonInput(raw, opts.file) as ReplayEvent;
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
        throw new UsageError(`could not reach ${opts.url}: ${(err as Error).message}`);
      }
      print(io.stdout, `${res.status} ce-id=${res.id}${res.body ? ` ${res.body}` : ''}`);
      if (res.status < 200 || res.status > 299) throw new UsageError(`the event was not accepted (HTTP ${res.status})`);
    });

}
