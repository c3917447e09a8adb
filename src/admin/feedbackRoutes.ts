import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import type express from 'express';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { isEmailAddress } from '../core/emailAddress';
import {
  SUPPRESSION_REASONS,
  addSuppression,
  deleteWebhook,
  getReputation,
  getSuppression,
  getWebhook,
  listSuppressions,
  putWebhook,
  removeSuppression,
  resumeTenant,
  setThresholds,
  type MaskedWebhook,
  type WebhookWrite,
} from '../db/feedback';
import { loadSenderSettings } from '../db/settings';
import { WorkerError, invalidRequest } from '../errors';
import { WEBHOOK_PROVIDERS } from '../feedback/normalize';
import { toIssues } from '../settings/input';
import { replayDeadLetters } from '../worker/deadLetterReplay';
import type { WebhookProvider } from '../types';
import type { Principal } from './auth';
import type { AdminDeps } from './deps';

type Handler = (req: Request, res: Response, tenantId: string, principal: Principal) => Promise<void>;
type Route = (handler: Handler) => express.RequestHandler;

const SNS_TOPIC_ARN = /^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;

export const webhookBodies = {
  sendgrid: z.strictObject({
    public_key: z.string().min(1).max(4000).refine(isEcPublicKey, "must be the Event Webhook's verification key (base64 DER or PEM of an ECDSA P-256 public key), from Settings → Mail Settings → Event Webhook → Signature Verification"),
  }),
  ses: z.strictObject({
    topic_arns: z.array(z.string().regex(SNS_TOPIC_ARN, 'must be an SNS topic ARN, e.g. arn:aws:sns:eu-west-1:123456789012:ses-events')).min(1).max(20),
  }),
  // Nothing to give: the worker generates the basic-auth credentials Postmark will send.
  postmark: z.strictObject({}),
  resend: z.strictObject({
    signing_secret: z.string().regex(/^whsec_[A-Za-z0-9+/=]{16,200}$/, "must be the webhook's signing secret from Resend (whsec_…)"),
  }),
} as const satisfies Record<WebhookProvider, z.ZodType>;

function isEcPublicKey(v: string): boolean {
  try {
    const key = v.includes('BEGIN PUBLIC KEY') ? createPublicKey(v) : createPublicKey({ key: Buffer.from(v, 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  } catch {
    return false;
  }
}

export const suppressionQuery = z.strictObject({
  reason: z.enum(SUPPRESSION_REASONS).optional(),
  cursor: z.string().max(320).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
export const suppressionBody = z.strictObject({ note: z.string().max(500).optional() });
export const thresholdsBody = z.strictObject({
  complaint_threshold: z.number().gt(0).max(1).nullable(),
  bounce_threshold: z.number().gt(0).max(1).nullable(),
});

/**
 * Delivery feedback under /tenants/{tenant_id} (DESIGN §9): the webhook set-up per provider, the
 * suppression list, the reputation guard's pause and thresholds. Mounted by makeAdminRouter with
 * its `route` wrapper (authentication, tenant authorization, error answers).
 */
export function addFeedbackRoutes(router: express.Router, route: Route, deps: AdminDeps): void {
  const { config, sql, keys, providers } = deps;
  const policy = config.feedback;
  const base = '/tenants/:tenantId';

  const providerParam = (req: Request): WebhookProvider => {
    const p = String(req.params.provider);
    if (!(WEBHOOK_PROVIDERS as readonly string[]).includes(p)) {
      throw invalidRequest([{ path: 'provider', message: `must be one of ${WEBHOOK_PROVIDERS.join(', ')} (SMTP has no webhook: bounces go to the envelope sender's mailbox)` }]);
    }
    return p as WebhookProvider;
  };
  const addressParam = (req: Request): string => {
    const a = String(req.params.address).trim().toLowerCase();
    if (a.length > 320 || !isEmailAddress(a)) throw invalidRequest([{ path: 'address', message: 'must be an email address' }]);
    return a;
  };
  const actor = (p: Principal) => (p.subject ?? p.role).slice(0, 200);
  const webhookUrl = (provider: WebhookProvider, tenantId: string) => `${config.feedback.publicBaseUrl ?? ''}/api/v1/webhooks/${provider}/${encodeURIComponent(tenantId)}`;
  const withUrl = (w: MaskedWebhook, tenantId: string) => ({ ...w, webhook_url: webhookUrl(w.provider, tenantId), public_base_url_set: config.feedback.publicBaseUrl !== undefined });

  // --- webhook set-up ---
  router.put(`${base}/email-webhooks/:provider`, route(async (req, res, tenantId) => {
    const provider = providerParam(req);
    const parsed = webhookBodies[provider].safeParse(req.body ?? {});
    if (!parsed.success) throw invalidRequest(toIssues(parsed.error.issues));
    const body = parsed.data as Record<string, unknown>;
    const write: WebhookWrite = {};
    let generated: { username: string; password: string } | undefined;
    if (provider === 'sendgrid') write.publicKey = body.public_key as string;
    if (provider === 'ses') write.topicArns = [...new Set(body.topic_arns as string[])];
    if (provider === 'resend') {
      const secret = body.signing_secret as string;
      write.signingSecret = secret;
      write.signingSecretHint = `whsec_…${secret.slice(-4)}`;
    }
    if (provider === 'postmark') {
      generated = { username: `tew-${randomBytes(6).toString('hex')}`, password: randomBytes(24).toString('base64url') };
      write.basicUsername = generated.username;
      write.basicPasswordSha256 = createHash('sha256').update(generated.password).digest();
    }
    const { created, webhook } = await putWebhook(sql, keys, tenantId, provider, write);
    const answer: Record<string, unknown> = withUrl(webhook, tenantId);
    if (generated) {
      // Shown this once; only a digest of the password is stored.
      answer.basic_auth = { ...generated, note: 'shown once: Postmark sends these as HTTP basic auth; PUT again to generate new ones' };
      if (config.feedback.publicBaseUrl) {
        const u = new URL(webhookUrl(provider, tenantId));
        u.username = generated.username;
        u.password = generated.password;
        answer.webhook_url_with_credentials = u.toString();
      }
    }
    res.status(created ? 201 : 200).json(answer);
  }));

  router.get(`${base}/email-webhooks/:provider`, route(async (req, res, tenantId) => {
    const provider = providerParam(req);
    const w = await getWebhook(sql, tenantId, provider);
    if (!w) throw new WorkerError('webhook_not_configured');
    res.json(withUrl(w, tenantId));
  }));

  router.delete(`${base}/email-webhooks/:provider`, route(async (req, res, tenantId) => {
    const provider = providerParam(req);
    if (!(await deleteWebhook(sql, tenantId, provider))) throw new WorkerError('webhook_not_configured');
    res.status(204).end();
  }));

  router.post(`${base}/email-webhooks/:provider/register`, route(async (req, res, tenantId) => {
    const provider = providerParam(req);
    if (!config.feedback.publicBaseUrl) throw new WorkerError('public_base_url_required');
    const settings = await loadSenderSettings(sql, keys, tenantId);
    if (!settings) throw new WorkerError('settings_not_found', 'save email settings first: the webhook is registered with their provider account');
    // The tenant's account at this provider: the primary, or the fallback.
    const account = [settings.primary, settings.fallback].find((a) => a?.provider === provider);
    if (!account) throw invalidRequest([{ path: 'provider', message: `the tenant has no ${provider} account (primary: ${settings.primary.provider}${settings.fallback ? `, fallback: ${settings.fallback.provider}` : ''})` }]);
    const api = providers.get(tenantId, account).webhooks?.();
    if (!api) throw new WorkerError('webhook_registration_unsupported', provider === 'ses' ? 'SES publishes events through SNS: subscribe the webhook URL to the topic of a configuration set event destination, then PUT its topic_arns' : undefined);
    const existing = await getWebhook(sql, tenantId, provider);
    const url = webhookUrl(provider, tenantId);
    const basicAuth = provider === 'postmark' ? { username: `tew-${randomBytes(6).toString('hex')}`, password: randomBytes(24).toString('base64url') } : undefined;
    const reg = await api.register(url, { existingId: existing?.provider_webhook_id ?? null, ...(basicAuth ? { basicAuth } : {}) });
    const write: WebhookWrite = { providerWebhookId: reg.providerWebhookId, registered: true };
    if (reg.publicKey !== undefined) write.publicKey = reg.publicKey;
    if (reg.signingSecret !== undefined) {
      write.signingSecret = reg.signingSecret;
      write.signingSecretHint = `whsec_…${reg.signingSecret.slice(-4)}`;
    }
    if (basicAuth) {
      write.basicUsername = basicAuth.username;
      write.basicPasswordSha256 = createHash('sha256').update(basicAuth.password).digest();
    }
    const { webhook } = await putWebhook(sql, keys, tenantId, provider, write);
    deps.logger.info({ admin: true, tenant: tenantId, provider, provider_webhook_id: reg.providerWebhookId, events: reg.events }, 'webhook registered at the provider');
    res.json({ ...withUrl(webhook, tenantId), events: reg.events });
  }));

  // --- suppression list ---
  router.get(`${base}/suppressions`, route(async (req, res, tenantId) => {
    const q = suppressionQuery.safeParse(req.query);
    if (!q.success) throw invalidRequest(toIssues(q.error.issues));
    res.json(await listSuppressions(sql, tenantId, { reason: q.data.reason, cursor: q.data.cursor?.toLowerCase(), limit: q.data.limit }));
  }));

  router.get(`${base}/suppressions/:address`, route(async (req, res, tenantId) => {
    const s = await getSuppression(sql, tenantId, addressParam(req));
    if (!s) throw new WorkerError('suppression_not_found');
    res.json(s);
  }));

  router.put(`${base}/suppressions/:address`, route(async (req, res, tenantId, principal) => {
    const address = addressParam(req);
    const b = suppressionBody.safeParse(req.body ?? {});
    if (!b.success) throw invalidRequest(toIssues(b.error.issues));
    const { created, suppression } = await addSuppression(sql, tenantId, { address, reason: 'manual', source: 'admin', actor: actor(principal), note: b.data.note ?? null });
    if (created) deps.metrics?.suppressed('admin');
    res.status(created ? 201 : 200).json(suppression);
  }));

  router.delete(`${base}/suppressions/:address`, route(async (req, res, tenantId, principal) => {
    const address = addressParam(req);
    const note = typeof req.query.note === 'string' ? req.query.note : (req.body as { note?: unknown } | undefined)?.note;
    if (note !== undefined && (typeof note !== 'string' || note.length > 500)) throw invalidRequest([{ path: 'note', message: 'must be text of at most 500 characters' }]);
    if (!(await removeSuppression(sql, tenantId, address, { actor: actor(principal), note: (note as string | undefined) ?? null }))) throw new WorkerError('suppression_not_found');
    res.status(204).end();
  }));

  // --- reputation guard ---
  router.get(`${base}/reputation`, route(async (_req, res, tenantId) => {
    res.json(await getReputation(sql, tenantId, policy));
  }));

  router.put(`${base}/reputation`, route(async (req, res, tenantId) => {
    const b = thresholdsBody.safeParse(req.body ?? {});
    if (!b.success) throw invalidRequest(toIssues(b.error.issues));
    const issues = [];
    if (b.data.complaint_threshold !== null && b.data.complaint_threshold > policy.complaintThreshold) {
      issues.push({ path: 'complaint_threshold', message: `may be lowered, not raised above the platform's ${policy.complaintThreshold} (REPUTATION_COMPLAINT_THRESHOLD)` });
    }
    if (b.data.bounce_threshold !== null && b.data.bounce_threshold > policy.bounceThreshold) {
      issues.push({ path: 'bounce_threshold', message: `may be lowered, not raised above the platform's ${policy.bounceThreshold} (REPUTATION_BOUNCE_THRESHOLD)` });
    }
    if (issues.length > 0) throw invalidRequest(issues);
    res.json(await setThresholds(sql, tenantId, { complaint: b.data.complaint_threshold, bounce: b.data.bounce_threshold }, policy));
  }));

  router.post(`${base}/resume`, route(async (_req, res, tenantId, principal) => {
    const { was_paused, reputation } = await resumeTenant(sql, tenantId, actor(principal), policy);
    deps.logger.info({ admin: true, tenant: tenantId, was_paused, by: actor(principal) }, was_paused ? 'tenant resumed' : 'resume asked for a tenant that was not paused');
    // Its events dead-lettered while paused go out again, through the broker, in the background.
    const replay = was_paused && config.replayPausedOnResume && config.brokerUrl ? config.brokerUrl : null;
    if (replay) {
      void replayDeadLetters(sql, { tenantId, errorCode: 'tenant_paused', notReplayed: true, limit: 100_000 }, { target: replay, dryRun: false, ratePerSecond: 10 }).then(
        (r) => deps.logger.info({ tenant: tenantId, selected: r.selected, replayed: r.replayed, answers: r.answers }, 'tenant_paused dead letters replayed after resume'),
        (err: unknown) => deps.logger.warn({ tenant: tenantId, err: String((err as Error)?.message ?? err).slice(0, 200) }, 'replaying tenant_paused dead letters after resume failed; run dead-letters replay --code tenant_paused'),
      );
    }
    res.json({ resumed: was_paused, ...reputation, replaying_dead_letters: replay !== null });
  }));
}
