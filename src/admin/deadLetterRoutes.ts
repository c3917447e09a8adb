import type express from 'express';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { listDeadLetters, type DeadLetterFilter } from '../db/deadLetters';
import { WorkerError, invalidRequest } from '../errors';
import { toIssues } from '../settings/input';
import { replayDeadLetters } from '../worker/deadLetterReplay';
import type { Principal } from './auth';
import type { AdminDeps } from './deps';

type Handler = (req: Request, res: Response, tenantId: string, principal: Principal) => Promise<void>;
type Route = (handler: Handler) => express.RequestHandler;

const when = z.iso.datetime({ offset: true });
export const deadLetterQuery = z.strictObject({
  code: z.string().regex(/^[a-z0-9_]{1,100}$/).optional(),
  type: z.string().max(256).optional(),
  since: when.optional(),
  until: when.optional(),
  not_replayed: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
export const deadLetterReplayBody = z.strictObject({
  code: z.string().regex(/^[a-z0-9_]{1,100}$/).optional(),
  type: z.string().max(256).optional(),
  since: when.optional(),
  until: when.optional(),
  not_replayed: z.boolean().optional(),
  limit: z.number().int().min(1).max(1000).default(100),
  rate: z.number().int().min(1).max(100).default(10),
  dry_run: z.boolean().default(false),
});

function filter(tenantId: string, q: { code?: string | undefined; type?: string | undefined; since?: string | undefined; until?: string | undefined; limit: number }, notReplayed: boolean): DeadLetterFilter {
  return {
    tenantId,
    errorCode: q.code,
    eventType: q.type,
    since: q.since ? new Date(q.since) : undefined,
    until: q.until ? new Date(q.until) : undefined,
    notReplayed,
    limit: q.limit,
  };
}

/** One tenant's dead letters (README "Dead letters"): list, and replay to BROKER_URL. */
export function addDeadLetterRoutes(router: express.Router, route: Route, deps: AdminDeps): void {
  const { config, sql, logger } = deps;
  const base = '/tenants/:tenantId/dead-letters';

  router.get(base, route(async (req, res, tenantId) => {
    const q = deadLetterQuery.safeParse(req.query);
    if (!q.success) throw invalidRequest(toIssues(q.error.issues));
    res.json(await listDeadLetters(sql, filter(tenantId, q.data, q.data.not_replayed === 'true')));
  }));

  router.post(`${base}/replay`, route(async (req, res, tenantId, principal) => {
    const b = deadLetterReplayBody.safeParse(req.body ?? {});
    if (!b.success) throw invalidRequest(toIssues(b.error.issues));
    if (!config.brokerUrl) throw new WorkerError('broker_url_required');
    const report = await replayDeadLetters(sql, filter(tenantId, b.data, b.data.not_replayed ?? false), { target: config.brokerUrl, dryRun: b.data.dry_run, ratePerSecond: b.data.rate });
    logger.info({ admin: true, tenant: tenantId, by: principal.subject ?? principal.role, selected: report.selected, replayed: report.replayed, answers: report.answers, dry_run: report.dry_run }, 'dead letters replayed');
    res.json(report);
  }));
}
