import { MAX_JSON_DEPTH, nestedDeeperThan } from '../core/jsonDepth';
import { packageVersion } from '../version';
import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { describeError, mapDatabaseError } from '../db/errors';
import { deleteSettings, getSettings, loadSenderSettings, putSettings } from '../db/settings';
import { tenantStats } from '../db/stats';
import { WorkerError, bodyReadError, errorBody, invalidRequest } from '../errors';
import { verifyAccounts } from '../providers/verify';
import { toIssues, validateSettingsInput } from '../settings/input';
import { TENANT_ID_PATTERN } from '../types';
import { authorize, createTokenVerifier, type Principal } from './auth';
import { buildOpenApi } from './openapi';
import { addContentRoutes } from './contentRoutes';
import { addFeedbackRoutes } from './feedbackRoutes';
import { addDeadLetterRoutes } from './deadLetterRoutes';
import { daysQuery, testEmailBody } from '../settings/schemas';
import type { AdminDeps } from './deps';
import type { IntakeEvent } from '../core/event';

const ADMIN_BODY_LIMIT = '512kb';

/**
 * /api/v1/admin/tenants/{tenant_id}/... (DESIGN §6). Every handler authenticates, authorizes the
 * tenant, and works through the worker role under RLS with the tenant's context: never a bypass.
 * `api_key` is write-only; answers carry a masked hint at most.
 */
export function makeAdminRouter(deps: AdminDeps): express.Router {
  const { config, sql, keys, providers, logger } = deps;
  const verifyToken = createTokenVerifier(config.admin, sql);
  const router = express.Router();
  // Security headers for a JSON API: nothing may be framed, sniffed, cached by a proxy or
  // loaded as a page (helmet's defaults with a CSP that allows nothing at all).
  router.use(
    helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] } },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    }),
  );
  // Guessing tokens costs the guesser: at most ADMIN_AUTH_FAILURE_LIMIT failed authentications
  // (401) per client address a minute; further requests get 429 until the window ends. Successful
  // requests do not count. Behind an ingress, TRUST_PROXY makes the address the client's own.
  router.use(
    rateLimit({
      windowMs: 60_000,
      limit: config.admin.authFailureLimit,
      skipSuccessfulRequests: true,
      requestWasSuccessful: (_req, res) => res.statusCode !== 401,
      keyGenerator: (req) => ipKeyGenerator(req.ip ?? 'unknown'),
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      handler: (req, res, _next, options) => {
        logger.warn({ admin: true, method: req.method, error_code: 'too_many_auth_failures', client: req.ip }, 'admin request refused: too many failed authentications');
        const we = new WorkerError('too_many_auth_failures', undefined, { retryAfterSeconds: Math.ceil(options.windowMs / 1000) });
        res.setHeader('Retry-After', String(we.retryAfterSeconds));
        res.status(we.status).json(errorBody(we));
      },
    }),
  );
  // Templates may be up to 100,000 characters per part, escaped in JSON.
  router.use(express.json({ limit: ADMIN_BODY_LIMIT, type: () => true }));
  // A body nested past MAX_JSON_DEPTH would overflow the stack of the validation that follows.
  router.use((req, res, next) => {
    if (!nestedDeeperThan(req.body)) return next();
    const we = new WorkerError('invalid_request', `the JSON body nests deeper than ${MAX_JSON_DEPTH} levels`);
    res.status(we.status).json(errorBody(we));
  });

  // Documentation, not data: served without a token.
  const openapi = JSON.stringify(buildOpenApi(packageVersion()));
  router.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openapi);
  });

  type Handler = (req: Request, res: Response, tenantId: string, principal: Principal) => Promise<void>;
  const route = (handler: Handler) => async (req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');
    try {
      const principal = await verifyToken(req.header('authorization'));
      const tenantId = String(req.params.tenantId);
      if (!TENANT_ID_PATTERN.test(tenantId)) throw invalidRequest([{ path: 'tenant_id', message: 'must be 1-128 characters of [A-Za-z0-9._:-]' }]);
      authorize(principal, tenantId);
      await handler(req, res, tenantId, principal);
      logger.info({ admin: true, method: req.method, route: req.route?.path, tenant: tenantId, role: principal.role, sub: principal.subject, status: res.statusCode }, 'admin request');
    } catch (err) {
      const we = mapDatabaseError(err);
      if (we.code === 'internal_error') logger.error({ admin: true, err: describeError(err) }, 'admin request failed');
      else logger.info({ admin: true, method: req.method, error_code: we.code, status: we.status }, 'admin request rejected');
      res.status(we.status).json({ ...errorBody(we), ...(we.issues ? { issues: we.issues } : {}) });
    }
  };

  const base = '/tenants/:tenantId';

  router.put(`${base}/email-settings`, route(async (req, res, tenantId) => {
    const parsed = await validateSettingsInput(req.body, { allowProviderEndpointOverride: config.allowProviderEndpointOverride, platformTier: config.tenantFromPattern !== undefined, egress: providers.egress });
    if (!parsed.ok) throw invalidRequest(parsed.issues);
    const { created } = await putSettings(sql, keys, tenantId, parsed.value);
    res.status(created ? 201 : 200).json(await getSettings(sql, tenantId));
  }));

  router.get(`${base}/email-settings`, route(async (_req, res, tenantId) => {
    const s = await getSettings(sql, tenantId);
    if (!s) throw new WorkerError('settings_not_found');
    res.json(s);
  }));

  router.delete(`${base}/email-settings`, route(async (_req, res, tenantId) => {
    if (!(await deleteSettings(sql, tenantId))) throw new WorkerError('settings_not_found');
    res.status(204).end();
  }));

  router.post(`${base}/email-settings/verify`, route(async (_req, res, tenantId) => {
    const s = await loadSenderSettings(sql, keys, tenantId);
    if (!s) throw new WorkerError('settings_not_found');
    res.json(await verifyAccounts(providers, tenantId, s));
  }));

  router.post(`${base}/email-settings/test`, route(async (req, res, tenantId) => {
    const body = testEmailBody.safeParse(req.body);
    if (!body.success) throw invalidRequest(toIssues(body.error.issues));
    const id = `admin-test-${randomUUID()}`;
    const event: IntakeEvent = {
      id,
      source: '/tenant-email/admin-test',
      type: 'codetether.task.created',
      tenantId,
      traceparent: null,
      mode: 'binary',
      recipient: body.data.to,
      data: { task_id: id, prompt: 'Test email from tenant-email-worker', output: 'If you can read this, the email settings of this tenant work.' },
    };
    const outcome = await deps.processEvent(event, logger.child({ tenant: tenantId, event_id: id, admin: true }));
    res.json(outcome.kind === 'sent' ? { sent: true, event_id: id, provider: outcome.provider, message_id: outcome.messageId, fallback_used: outcome.fallbackUsed } : { sent: false, event_id: id, outcome: outcome.kind });
  }));

  router.get(`${base}/email-stats`, route(async (req, res, tenantId) => {
    const days = daysQuery.safeParse(req.query.days ?? undefined);
    if (!days.success) throw invalidRequest([{ path: 'days', message: 'must be a whole number from 1 to 366' }]);
    res.json(await tenantStats(sql, tenantId, days.data, config.global?.dailyLimit ?? null));
  }));

  addContentRoutes(router, route, deps);
  addFeedbackRoutes(router, route, deps);
  addDeadLetterRoutes(router, route, deps);

  // Unknown admin paths and body-parser failures.
  router.use((_req: Request, res: Response) => {
    res.status(404).json(errorBody(new WorkerError('not_found', 'no such admin endpoint')));
  });
  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const bodyError = bodyReadError(err, 'admin', ADMIN_BODY_LIMIT);
    const we = bodyError ?? new WorkerError('internal_error');
    if (!bodyError) logger.error({ admin: true, err: describeError(err) }, 'admin request failed');
    res.status(we.status).json({ ...errorBody(we), ...(we.issues ? { issues: we.issues } : {}) });
  });
  return router;
}
