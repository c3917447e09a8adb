import express, { type NextFunction, type Request, type Response } from 'express';
import { get } from 'node:https';
import type { LookupFunction } from 'node:net';
import { applyFeedback, loadWebhookVerifier } from '../db/feedback';
import { describeError, mapDatabaseError } from '../db/errors';
import { WorkerError, bodyReadError, errorBody } from '../errors';
import { WEBHOOK_PROVIDERS } from '../feedback/normalize';
import { verifyWebhook } from '../feedback/verify';
import { TENANT_ID_PATTERN, type WebhookProvider } from '../types';
import type { AdminDeps } from './deps';
import { SpanStatusCode, inSpan, parentContext, startEventSpan, withSpan } from '../telemetry/tracing';

/** SendGrid posts up to a few thousand events per request; 1,000 typical events are ~500 KB. */
const WEBHOOK_BODY_LIMIT = '10mb';
const SUBSCRIBE_TIMEOUT_MS = 10_000;

/**
 * POST /api/v1/webhooks/{provider}/{tenant_id} (DESIGN §9): the providers' delivery events,
 * verified with the tenant's material before anything is parsed into the database, applied in
 * one transaction, and answered 200 only after it committed (providers retry anything else).
 * No bearer token: the provider's own signature (or Postmark's basic auth) is the authentication.
 */
export function makeWebhookRouter(deps: AdminDeps): express.Router {
  const { config, sql, keys, logger, metrics, providers } = deps;
  const policy = config.feedback;
  const router = express.Router();
  // The SubscribeURL is visited through the egress policy's lookup, like a tenant's endpoint.
  const subscribeLookup = providers.egress.lookup;

  router.post('/:provider/:tenantId', express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }), async (req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');
    const provider = String(req.params.provider) as WebhookProvider;
    const tenantId = String(req.params.tenantId);
    const started = process.hrtime.bigint();
    const log = logger.child({ webhook: provider, tenant: tenantId.slice(0, 128) });
    if (!WEBHOOK_PROVIDERS.includes(provider)) {
      const we = new WorkerError('not_found', `no webhook for provider "${provider.slice(0, 40)}"; one of ${WEBHOOK_PROVIDERS.join(', ')}`);
      res.status(we.status).json(errorBody(we));
      return;
    }
    // One span per request: provider, tenant, result and counts; never an address.
    const span = startEventSpan(`webhook ${provider}`, parentContext(req.headers, null), { 'email.provider': provider, 'tenant.id': tenantId.slice(0, 128), 'http.request.method': 'POST' });
    try {
      await withSpan(span, async () => {
        // A tenant id that cannot exist is answered like one with nothing set up: 401, nothing said.
        const material = TENANT_ID_PATTERN.test(tenantId) ? await loadWebhookVerifier(sql, keys, tenantId, provider) : null;
        const verified = await verifyWebhook(provider, { headers: req.headers, body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0) }, material, {
          maxAgeSeconds: config.feedback.webhookMaxAgeSeconds,
          snsHostPattern: config.feedback.snsCertHostPattern,
        });
        if (verified.kind === 'sns_subscribe') {
          await confirmSubscription(verified.subscribeUrl, subscribeLookup);
          metrics?.webhook(provider, 'ok');
          log.info({ topic_arn: verified.topicArn, ms: ms(started) }, 'SNS subscription confirmed');
          res.status(200).json({ confirmed: true });
          return;
        }
        if (verified.kind === 'nothing') {
          metrics?.webhook(provider, 'ok');
          log.info({ ignored: verified.why }, 'webhook request with nothing to apply');
          res.status(200).json({ received: 0, applied: 0 });
          return;
        }
        const { events, ignored } = verified.normalised;
        const r =
          events.length > 0
            ? await inSpan('email_apply_feedback', { 'db.system.name': 'postgresql', 'db.operation.name': 'email_apply_feedback' }, () => applyFeedback(sql, tenantId, provider, events, policy, deps.outbox !== undefined), (err) => mapDatabaseError(err).code)
            : { received: 0, duplicates: 0, applied: 0, unmatched: 0, suppressed: 0, statuses: {}, paused: null };
        span.setAttributes({ 'email.webhook.events': r.received + ignored, 'email.webhook.applied': r.applied, 'email.webhook.duplicates': r.duplicates, 'email.webhook.unmatched': r.unmatched });
        if (r.applied > 0 || r.paused) deps.outbox?.nudge();
        const stale = Math.max(0, r.received - r.duplicates - r.applied - r.unmatched);
        metrics?.webhook(provider, 'ok');
        metrics?.webhookEventCounts(provider, { applied: r.applied, duplicate: r.duplicates, stale, unmatched: r.unmatched, ignored });
        metrics?.deliveryStatus(provider, r.statuses);
        metrics?.suppressed('webhook', r.suppressed);
        if (r.paused) {
          metrics?.tenantPaused(r.paused.reason);
          log.warn({ reason: r.paused.reason, ...r.paused.detail }, 'tenant paused by the reputation guard: its events are answered 422 tenant_paused until POST /api/v1/admin/tenants/{t}/resume');
        }
        log.info({ received: r.received, duplicates: r.duplicates, applied: r.applied, unmatched: r.unmatched, stale, ignored, suppressed: r.suppressed, statuses: r.statuses, ms: ms(started) }, 'webhook applied');
        res.status(200).json({ received: r.received + ignored, applied: r.applied, duplicates: r.duplicates, unmatched: r.unmatched, ignored, suppressed: r.suppressed });
      });
      span.setAttribute('http.response.status_code', res.statusCode);
    } catch (err) {
      const we = mapDatabaseError(err);
      metrics?.webhook(provider, we.code);
      const why = we.detail?.message;
      if (we.code === 'internal_error') log.error({ err: describeError(err) }, 'webhook request failed');
      else log.info({ error_code: we.code, status: we.status, why }, 'webhook request refused');
      if (we.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(we.retryAfterSeconds));
      res.status(we.status).json(errorBody(we));
      span.setAttributes({ 'http.response.status_code': we.status, 'error.type': we.code });
      if (we.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: we.code });
    } finally {
      span.end();
    }
  });

  router.use((_req: Request, res: Response) => {
    res.status(404).json(errorBody(new WorkerError('not_found', `webhooks are POSTed to /api/v1/webhooks/{${WEBHOOK_PROVIDERS.join('|')}}/{tenant_id}`)));
  });
  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const bodyError = bodyReadError(err, 'admin', WEBHOOK_BODY_LIMIT);
    const we = bodyError ?? new WorkerError('internal_error');
    if (!bodyError) logger.error({ err: describeError(err) }, 'webhook request failed');
    res.status(we.status).json(errorBody(we));
  });
  return router;
}

/**
 * Visit an SNS SubscribeURL (already checked to be https on an SNS host) through the egress
 * policy, with node's https client and its trust store, as sns-validator fetches the certificate.
 */
function confirmSubscription(url: string, lookup: LookupFunction): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = get(url, { lookup, timeout: SUBSCRIBE_TIMEOUT_MS }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new WorkerError('provider_unavailable', `SNS answered ${res.statusCode} to the subscription confirmation`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => reject(new WorkerError('provider_network', 'the SNS SubscribeURL could not be reached; SNS sends the confirmation again')));
  });
}

const ms = (started: bigint) => Number((process.hrtime.bigint() - started) / 1000n) / 1000;
