import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from './config';
import { describeError, mapDatabaseError } from './db/errors';
import { ERRORS, WorkerError, bodyReadError, errorBody, isWorkerError } from './errors';
import { parseCloudEvent } from './intake/cloudEventIntake';
import { parseDeadLetter } from './intake/deadLetter';
import type { DeadLetter } from './types';
import type { Logger } from './logger';
import { secondsSince, type EventResult, type WorkerMetrics } from './telemetry/metrics';
import { SpanStatusCode, parentContext, startEventSpan, withSpan, type Span } from './telemetry/tracing';
import type { EventOutcome } from './worker/processEvent';
import { buildReply } from './worker/replyEvent';
import type { IntakeEvent } from './core/event';

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
  /** The provider webhooks and the unsubscribe links (DESIGN §9), mounted beside the admin API. */
  feedbackRouters?: { webhooks: express.Router; unsubscribe: express.Router };
  /** Served at GET /metrics when given. */
  metrics?: WorkerMetrics | undefined;
  /** Stores a dead letter (POST /dead-letters) when the store is on (DEAD_LETTER_STORE). */
  storeDeadLetter?: ((d: DeadLetter) => Promise<{ first: boolean }>) | undefined;
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
  app.set('trust proxy', config.trustProxy);
  // While draining, every answer closes its connection, so clients reconnect to another instance.
  app.use((_req, res, next) => {
    if (state.draining) res.setHeader('Connection', 'close');
    next();
  });

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

  const { metrics } = deps;
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.setHeader('Content-Type', contentType);
      res.status(200).send(body);
    });
  }

  // The clock starts before the body is read, so an event refused while reading it (too large,
  // a bad encoding) is timed, logged and counted like every other (the error handler below).
  const markStart = (_req: Request, res: Response, next: NextFunction) => {
    res.locals.eventStarted = process.hrtime.bigint();
    next();
  };
  app.post('/', markStart, express.raw({ type: () => true, limit: config.bodyLimitBytes }), async (req: Request, res: Response) => {
    const started = res.locals.eventStarted as bigint;
    const headerId = req.header('ce-id');
    let log = logger.child({ event_id: headerId?.slice(0, 200) });
    if (state.draining) {
      send(res, new WorkerError('shutting_down'));
      metrics?.event({ result: 'rejected', errorCode: 'shutting_down', seconds: secondsSince(started) });
      log.info({ outcome: 'rejected', status: 503, error_code: 'shutting_down' }, 'event rejected while draining');
      return;
    }
    if (state.inFlight >= config.maxInFlightEvents) {
      // Bounded work per instance: beyond it, waiting would only queue in memory (postgres.js
      // queues without limit). The broker retries, and the autoscaler sees the load.
      send(res, new WorkerError('overloaded', undefined, { retryAfterSeconds: 1 }));
      metrics?.event({ result: 'rejected', errorCode: 'overloaded', seconds: secondsSince(started) });
      log.warn({ outcome: 'rejected', status: 503, error_code: 'overloaded', in_flight: state.inFlight }, 'event rejected: too many in flight');
      return;
    }
    state.inFlight++;
    let event: IntakeEvent | undefined;
    let span: Span | undefined;
    const finish = (result: EventResult, o: { status: number; provider?: string | null; errorCode?: string | null }) => {
      metrics?.event({ result, eventType: event?.type, provider: o.provider, errorCode: o.errorCode, tenant: event?.tenantId, seconds: secondsSince(started) });
      if (!span) return;
      span.setAttribute('email.outcome', result);
      span.setAttribute('http.response.status_code', o.status);
      if (o.provider) span.setAttribute('email.provider', o.provider);
      if (o.errorCode) {
        span.setAttribute('error.type', o.errorCode);
        if (o.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: o.errorCode });
      }
      span.end();
    };
    try {
      try {
        event = parseCloudEvent({ headers: req.headers, body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0) }, { eventTypes: config.eventTypes });
      } finally {
        span = startEventSpan(`process ${event?.type ?? 'event'}`, parentContext(req.headers, event?.traceparent ?? null), {
          'cloudevents.event_id': (event?.id ?? headerId)?.slice(0, 200),
          ...(event
            ? { 'cloudevents.event_source': event.source, 'cloudevents.event_type': event.type, 'cloudevents.event_spec_version': '1.0', 'tenant.id': event.tenantId ?? '', 'task.id': event.data.task_id }
            : {}),
        });
      }
      const ev = event;
      log = logger.child({
        event_id: ev.id,
        event_source: ev.source,
        event_type: ev.type,
        tenant: ev.tenantId,
        task_id: ev.data.task_id,
      });
      const outcome = await withSpan(span, () => deps.processEvent(ev, log));
      const reply = config.replyEvents ? buildReply(ev, outcome, config.replyEventSource) : null;
      if (reply) res.status(202).set(reply.headers).send(reply.body);
      else res.status(202).end();
      const provider = outcome.kind === 'sent' ? outcome.provider : null;
      finish(outcome.kind, { status: 202, provider });
      log.info(
        {
          outcome: outcome.kind,
          status: 202,
          ...(outcome.kind === 'sent'
            ? { provider: outcome.provider, message_id: outcome.messageId, fallback_used: outcome.fallbackUsed, recorded: outcome.recorded }
            : {}),
          ...(outcome.kind === 'skipped' ? { reason: outcome.reason } : {}),
          ...(reply ? { reply_type: reply.headers['ce-type'] } : {}),
          ms: elapsedMs(started),
        },
        'event handled',
      );
    } catch (err) {
      const we = isWorkerError(err) ? err : new WorkerError('internal_error');
      send(res, we);
      finish('rejected', { status: we.status, errorCode: we.code });
      if (we.code === 'internal_error') log.error({ ...rejectedLine(we, started), err: describeError(err) }, 'event failed');
      else log.info({ ...rejectedLine(we, started), reason: we.message }, 'event rejected');
    } finally {
      state.inFlight--;
    }
  });

  // The dead-letter store: the broker POSTs here what it gave up on (cluster-local, like POST /).
  // 202 only after the commit, so the broker retries a dead letter that could not be stored.
  const storeDeadLetter = deps.storeDeadLetter;
  if (storeDeadLetter) {
    const limit = Math.max(2 * config.bodyLimitBytes, 1024 * 1024);
    app.post('/dead-letters', express.raw({ type: () => true, limit }), async (req: Request, res: Response) => {
      const d = parseDeadLetter({ headers: req.headers, body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0) }, config.bodyLimitBytes);
      if (!d) {
        send(res, new WorkerError('invalid_event', 'a dead letter must be a CloudEvent with an id and a source'));
        return;
      }
      try {
        const { first } = await storeDeadLetter(d);
        const code = d.errorCode && d.errorCode in ERRORS ? d.errorCode : d.httpStatus ? `http_${d.httpStatus}` : 'unknown';
        metrics?.deadLetter(code, first);
        logger.warn({ dead_letter: true, tenant: d.tenantId, event_id: d.eventId.slice(0, 200), event_source: d.eventSource.slice(0, 200), event_type: d.eventType, error_code: code, http_status: d.httpStatus, first }, 'dead letter stored');
        res.status(202).end();
      } catch (err) {
        const we = mapDatabaseError(err);
        logger.error({ dead_letter: true, error_code: we.code, err: describeError(err) }, 'dead letter not stored; the broker retries it');
        send(res, we);
      }
    });
  }

  if (deps.adminRouter) app.use('/api/v1/admin', deps.adminRouter);
  if (deps.feedbackRouters) {
    app.use('/api/v1/webhooks', deps.feedbackRouters.webhooks);
    app.use('/api/v1/unsubscribe', deps.feedbackRouters.unsubscribe);
  }

  app.all('/', (_req, res) => send(res, new WorkerError('method_not_allowed')));
  app.use((_req, res) => send(res, new WorkerError('not_found')));

  // Body-parser errors (size, encoding, aborted) and anything else that escaped a handler.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const bodyError = bodyReadError(err, 'event', `${config.bodyLimitBytes} bytes`);
    const we = bodyError ?? new WorkerError('internal_error');
    if (!bodyError) logger.error({ err: describeError(err) }, 'unhandled error');
    send(res, we);
    // An event refused before its body was read still leaves one log line and one metric.
    const started = res.locals.eventStarted as bigint | undefined;
    if (started !== undefined && bodyError) {
      metrics?.event({ result: 'rejected', errorCode: we.code, seconds: secondsSince(started) });
      logger.info({ event_id: req.header('ce-id')?.slice(0, 200), ...rejectedLine(we, started), reason: we.message }, 'event rejected');
    }
  });

  return app;
}

function send(res: Response, err: WorkerError): void {
  if (res.headersSent) return;
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(err.retryAfterSeconds));
  res.status(err.status).json(errorBody(err));
}

/** The fields of an event's log line when it is answered with an error. */
function rejectedLine(we: WorkerError, started: bigint) {
  return { outcome: 'rejected', status: we.status, error_code: we.code, retryable: we.retryable, ms: elapsedMs(started) };
}

function elapsedMs(started: bigint): number {
  return Number((process.hrtime.bigint() - started) / 1000n) / 1000;
}
