import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from './config';
import { describeError } from './db/errors';
import { WorkerError, errorBody, isWorkerError } from './errors';
import { parseCloudEvent, type IntakeEvent } from './intake/cloudEventIntake';
import type { Logger } from './logger';
import type { EventOutcome } from './worker/processEvent';

export interface AppState {
  draining: boolean;
  inFlight: number;
}

export interface AppDeps {
  config: Config;
  logger: Logger;
  processEvent: (event: IntakeEvent, log: Logger) => Promise<EventOutcome>;
  /** Resolves true when the database answers. */
  checkReady: () => Promise<boolean>;
  state: AppState;
  /** The admin API router, mounted at /api/v1/admin when the admin API is on. */
  adminRouter?: express.Router;
}

/**
 * The HTTP face of the worker: POST / takes one CloudEvent; /healthz and /readyz for probes.
 * A 2xx answer always has an empty body (a non-CloudEvent body makes the MT broker retry).
 */
export function makeApp(deps: AppDeps): express.Express {
  const { config, logger, state } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.status(200).json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    if (state.draining) {
      res.status(503).json({ status: 'draining' });
      return;
    }
    const ok = await deps.checkReady().catch(() => false);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'database unavailable' });
  });

  app.post('/', express.raw({ type: () => true, limit: config.bodyLimitBytes }), async (req: Request, res: Response) => {
    const started = process.hrtime.bigint();
    const headerId = req.header('ce-id');
    let log = logger.child({ event_id: headerId?.slice(0, 200) });
    if (state.draining) {
      send(res, new WorkerError('shutting_down'));
      log.info({ outcome: 'rejected', status: 503, error_code: 'shutting_down' }, 'event rejected while draining');
      return;
    }
    if (state.inFlight >= config.maxInFlightEvents) {
      // Bounded work per instance: beyond it, waiting would only queue in memory (postgres.js
      // queues without limit). The broker retries, and the autoscaler sees the load.
      send(res, new WorkerError('overloaded', undefined, { retryAfterSeconds: 1 }));
      log.warn({ outcome: 'rejected', status: 503, error_code: 'overloaded', in_flight: state.inFlight }, 'event rejected: too many in flight');
      return;
    }
    state.inFlight++;
    try {
      const event = parseCloudEvent({ headers: req.headers, body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0) }, { eventTypes: config.eventTypes });
      log = logger.child({
        event_id: event.id,
        event_source: event.source,
        event_type: event.type,
        tenant: event.tenantId,
        task_id: event.data.task_id,
      });
      const outcome = await deps.processEvent(event, log);
      res.status(202).end();
      log.info(
        {
          outcome: outcome.kind,
          status: 202,
          ...(outcome.kind === 'sent'
            ? { provider: outcome.provider, message_id: outcome.messageId, fallback_used: outcome.fallbackUsed, recorded: outcome.recorded }
            : {}),
          ...(outcome.kind === 'skipped' ? { reason: outcome.reason } : {}),
          ms: elapsedMs(started),
        },
        'event handled',
      );
    } catch (err) {
      const we = isWorkerError(err) ? err : new WorkerError('internal_error');
      send(res, we);
      const line = { outcome: 'rejected', status: we.status, error_code: we.code, retryable: we.retryable, ms: elapsedMs(started) };
      if (we.code === 'internal_error') log.error({ ...line, err: describeError(err) }, 'event failed');
      else log.info({ ...line, reason: we.message }, 'event rejected');
    } finally {
      state.inFlight--;
    }
  });

  if (deps.adminRouter) app.use('/api/v1/admin', deps.adminRouter);

  app.all('/', (_req, res) => send(res, new WorkerError('method_not_allowed')));
  app.use((_req, res) => send(res, new WorkerError('not_found')));

  // Body-parser errors (size, encoding, aborted) and anything else that escaped a handler.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const type = (err as { type?: string }).type;
    let we: WorkerError;
    if (type === 'entity.too.large') we = new WorkerError('body_too_large', `the body exceeds ${config.bodyLimitBytes} bytes`);
    else if (type === 'encoding.unsupported' || type === 'charset.unsupported') we = new WorkerError('unsupported_media_type', 'unsupported content encoding or charset');
    else if (type === 'request.aborted' || type === 'request.size.invalid') we = new WorkerError('invalid_event', 'the request body was incomplete');
    else {
      we = new WorkerError('internal_error');
      logger.error({ err: describeError(err) }, 'unhandled error');
    }
    send(res, we);
  });

  return app;
}

function send(res: Response, err: WorkerError): void {
  if (res.headersSent) return;
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(err.retryAfterSeconds));
  res.status(err.status).json(errorBody(err));
}

function elapsedMs(started: bigint): number {
  return Number((process.hrtime.bigint() - started) / 1000n) / 1000;
}
