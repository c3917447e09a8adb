import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LEASE_MARGIN_MS, type Config } from '../config';
import { globalSenderSettings } from '../config/require';
import type { DeliveryStore } from '../db/deliveries';
import { mapDatabaseError } from '../db/errors';
import type { StoredTemplate } from '../db/templates';
import { buildTemplateView, composeEmail } from '../email/compose';
import { resolveSender, type SenderChoice } from '../email/sender';
import { TemplateCache, compileTemplate, renderWithFallback, type CompiledTemplate } from '../email/templates';
import { WorkerError, isWorkerError, type ErrorCode } from '../errors';
import type { Logger } from '../logger';
import type { ProviderClients } from '../providers/clients';
import type { OutgoingEmail } from '../providers/types';
import { secondsSince, type WorkerMetrics } from '../telemetry/metrics';
import { annotateEventSpan, inSpan } from '../telemetry/tracing';
import { GLOBAL_TENANT, type ProviderAccount, type ProviderName, type SenderSettings, type SenderTier, type TemplateUse } from '../types';
import { LateWrites, recordWithRetry } from './lateWrites';
import type { IntakeEvent } from '../core/event';
import type { UnsubscribeTokens } from '../feedback/unsubscribe';

/** What happened to an event that is answered 2xx. Everything else is thrown as a WorkerError. */
export type EventOutcome =
  | {
      kind: 'sent';
      provider: ProviderName;
      messageId: string | null;
      fallbackUsed: boolean;
      recorded: boolean;
      template: TemplateUse;
      senderTier: SenderTier;
    }
  | { kind: 'duplicate' }
  | { kind: 'skipped'; reason: 'no_recipient' | 'tenant_disabled' | 'recipient_suppressed'; suppression?: string };

export interface ProcessorDeps {
  config: Config;
  deliveries: DeliveryStore;
  providers: ProviderClients;
  /** The tenant's current template for an event type (under RLS); called on a cache miss only. */
  loadTemplate: (tenantId: string, eventType: string) => Promise<StoredTemplate | null>;
  /** Prometheus metrics; spans go to the global OpenTelemetry tracer (a no-op without an SDK). */
  metrics?: WorkerMetrics | undefined;
  /** Ledger writes retried in the background while the database is away (the server flushes them at shutdown). */
  lateWrites?: LateWrites | undefined;
  /** One-click unsubscribe links for the platform tier (when PUBLIC_BASE_URL is set). */
  unsubscribeTokens?: UnsubscribeTokens | undefined;
  /** The outage switch: providers ops took out of service. */
  providerSwitch?: { disabled(provider: ProviderName): boolean } | undefined;
}

const DB_SPAN = { 'db.system.name': 'postgresql' } as const;
/** What giving up a claim records: failed, nothing sent (the quota unit goes back). */
const RELEASED = {
  status: 'failed',
  provider: null,
  messageId: null,
  errorCode: 'database_unavailable',
  templateSource: null,
  templateVersion: null,
  senderTier: null,
  senderNote: null,
} as const;
const codeOf = (err: unknown) => (isWorkerError(err) ? err.code : mapDatabaseError(err).code);

// Account-level permanent failures: the account, not the message, is the problem, so another
// account may succeed. A recipient or content rejection would fail the same way everywhere.
const FAILOVER_PERMANENT = new Set<ErrorCode>(['provider_auth_failed', 'provider_forbidden', 'destination_forbidden']);

export function createEventProcessor(deps: ProcessorDeps) {
  const { config, deliveries, providers, metrics } = deps;
  const lateWrites = deps.lateWrites ?? new LateWrites();
  const templates = new TemplateCache(config.templateCacheSize);
  const globalSettings = globalSenderSettings(config);

  return async function processEvent(event: IntakeEvent, log: Logger): Promise<EventOutcome> {
    const tenantId = event.tenantId ?? GLOBAL_TENANT;
    const key = { tenantId, eventSource: event.source, eventId: event.id };

    // The token is ours before the call, so a claim whose answer is lost can still be given up.
    const claimToken = randomUUID();
    let claim;
    const claimStarted = process.hrtime.bigint();
    // The lease runs from the database's clock at the claim, which is later than this: a send
    // that starts only while it can end (PROVIDER_TIMEOUT_MS) before this deadline never overlaps
    // a redelivery that takes the claim over once the lease is out (SECURITY.md, "Duplicates").
    const sendDeadline = performance.now() + config.claimLeaseSeconds * 1000 - LEASE_MARGIN_MS;
    const sendFits = () => performance.now() + config.providerTimeoutMs <= sendDeadline;
    try {
      claim = await inSpan(
        'email_claim_event',
        { ...DB_SPAN, 'db.operation.name': 'email_claim_event' },
        async (span) => {
          const c = await deliveries.claim({
            ...key,
            eventType: event.type,
            taskId: event.data.task_id,
            hasRecipient: event.recipient !== null,
            recipient: event.recipient,
            claimToken,
          });
          span.setAttribute('email.claim_outcome', c.outcome);
          return c;
        },
        codeOf,
      );
    } catch (err) {
      const mapped = mapDatabaseError(err);
      // The call failed, but its commit may have gone through (the connection broke during it):
      // then the event is claimed under our token and would answer 409 until the lease ran out.
      // Nothing is sent under that token, so record it as failed once the database is back.
      if (mapped.code === 'database_unavailable') {
        lateWrites.add('release', () => deliveries.recordOutcome({ ...key, claimToken, ...RELEASED }), log);
      }
      throw mapped;
    } finally {
      metrics?.claim(secondsSince(claimStarted));
    }

    lateWrites.nudge();
    switch (claim.outcome) {
      case 'unknown_tenant':
        throw new WorkerError('unknown_tenant', `tenant "${tenantId}" has no email settings and no global configuration is set`);
      case 'duplicate':
        return { kind: 'duplicate' };
      case 'in_flight':
        throw new WorkerError('event_in_flight');
      case 'skipped_no_recipient':
        return { kind: 'skipped', reason: 'no_recipient' };
      case 'skipped_disabled':
        return { kind: 'skipped', reason: 'tenant_disabled' };
      case 'suppressed':
        return { kind: 'skipped', reason: 'recipient_suppressed', suppression: claim.reason };
      case 'tenant_paused':
        throw new WorkerError('tenant_paused', `tenant "${tenantId}" is paused by the reputation guard; resume it with POST /api/v1/admin/tenants/${tenantId}/resume`);
      case 'quota_exceeded':
        throw new WorkerError('quota_exceeded', `daily limit of ${claim.dailyLimit} emails reached for tenant "${tenantId}"`);
      case 'claimed':
        break;
    }

    const settings = claim.settings ?? globalSettings;
    if (!settings) {
      // The database only falls back to global when we passed a global limit; this is a bug guard.
      throw new WorkerError('internal_error', 'claimed without settings');
    }

    // Everything after the claim records an outcome, so the claim and its quota unit are released.
    let content: ReturnType<typeof renderWithFallback> | undefined;
    let templateVersion: number | null = null;
    let sent: { provider: ProviderName; messageId: string | null; fallbackUsed: boolean; sender: SenderChoice } | undefined;
    let failure: WorkerError | undefined;
    let lastSender: SenderChoice | undefined;
    try {
      const tenantTemplate = await templateFor(tenantId, event.type, claim.templateVersion);
      templateVersion = tenantTemplate?.version ?? null;
      const view = buildTemplateView(event, tenantId, config.outputMaxChars);
      content = renderWithFallback(tenantTemplate?.compiled ?? null, view);
      if (content.use === 'builtin_fallback') {
        metrics?.templateFallback(event.type);
        log.warn({ template_version: templateVersion, event_type: event.type, reason: content.fallbackReason }, "the tenant's template failed; sending the built-in one");
      }
      const rendered = content.content;
      // RFC 8058 one-click unsubscribe on the platform's own domain tier, unless the tenant set
      // its own List-Unsubscribe (that wins, on every tier).
      const base = config.feedback.publicBaseUrl;
      const oneClick =
        base && deps.unsubscribeTokens && !settings.listUnsubscribe
          ? await deps.unsubscribeTokens.link(base, { tenantId, recipient: event.recipient as string, eventType: event.type })
          : null;
      sent = await sendWithFallback(tenantId, settings, log, sendFits, (account) => {
        const choice = resolveSender({ tenantId, settings, account, fromPattern: config.tenantFromPattern, policy: config.senderDomainPolicy });
        lastSender = choice;
        const email = composeEmail({
          event,
          tenantId,
          recipient: event.recipient as string,
          content: rendered,
          sender: choice,
          replyToPattern: config.replyToPattern,
          replyToDomain: settings.replyToDomain,
          listUnsubscribe: settings.listUnsubscribe ?? (choice.tier === 'platform' ? oneClick : null),
          extraHeaders: settings.extraHeaders,
        });
        return { email, sender: choice };
      });
    } catch (err) {
      failure = mapDatabaseError(err);
    }
    const sender = sent?.sender ?? lastSender;

    const recordStarted = process.hrtime.bigint();
    const write = () =>
      deliveries.recordOutcome({
        ...key,
        claimToken: claim.claimToken,
        status: sent ? 'sent' : 'failed',
        provider: sent?.provider ?? settings.primary.provider,
        messageId: sent?.messageId ?? null,
        errorCode: failure?.code ?? null,
        templateSource: content?.use ?? null,
        templateVersion,
        senderTier: sender?.tier ?? null,
        senderNote: sender?.note ?? null,
      });
    const result = await inSpan('email_record_outcome', { ...DB_SPAN, 'db.operation.name': 'email_record_outcome' }, () => recordWithRetry(write, log));
    const recorded = result === 'ok';
    // The database is away: keep trying in the background, so the ledger catches up without the
    // broker redelivering (which, for a sent email, would resend it once the lease is out).
    if (result === 'error') lateWrites.add('outcome', write, log);
    metrics?.record(secondsSince(recordStarted), recorded);

    if (failure) throw failure;
    // The provider accepted the email: answer 2xx even if the ledger write failed, because a
    // redelivery would send it again. The claim keeps a redelivery out until the write lands.
    const s = sent as NonNullable<typeof sent>;
    const template = content?.use ?? 'builtin';
    annotateEventSpan({ 'email.fallback_used': s.fallbackUsed, 'email.template_source': template, 'email.sender_tier': s.sender.tier });
    return { kind: 'sent', provider: s.provider, messageId: s.messageId, fallbackUsed: s.fallbackUsed, recorded, template, senderTier: s.sender.tier };
  };

  /** The tenant's compiled template for this event type, from the cache or loaded once per version. */
  async function templateFor(tenantId: string, eventType: string, version: number | null) {
    if (version === null) return null;
    const hit = templates.get(tenantId, eventType, version);
    if (hit) return { compiled: hit, version };
    const stored = await inSpan('load template', { ...DB_SPAN, 'db.operation.name': 'select tenant_email_templates' }, () => deps.loadTemplate(tenantId, eventType), codeOf);
    if (!stored) return null; // deleted since the claim
    let compiled: CompiledTemplate | 'broken';
    try {
      compiled = compileTemplate(stored);
    } catch {
      compiled = 'broken';
    }
    templates.set(tenantId, eventType, stored.version, compiled);
    return { compiled, version: stored.version };
  }

  type Build = (account: ProviderAccount) => { email: OutgoingEmail; sender: SenderChoice };

  async function sendWithFallback(tenantId: string, settings: SenderSettings, log: Logger, sendFits: () => boolean, build: Build) {
    if (!sendFits()) throw new WorkerError('claim_lease_expiring');
    const off = (p: ProviderName) => deps.providerSwitch?.disabled(p) ?? false;
    if (off(settings.primary.provider)) {
      // The outage switch: straight to the fallback when it is in service; otherwise nothing is
      // sent and the broker retries once the provider is back.
      const fb = settings.fallback;
      if (!fb || off(fb.provider)) {
        metrics?.providerSwitched(settings.primary.provider, null);
        throw new WorkerError('provider_disabled', `${settings.primary.provider} is out of service (outage switch) and the tenant has no fallback in service`, { retryAfterSeconds: 60 });
      }
      log.warn({ provider: settings.primary.provider, fallback: fb.provider }, 'primary provider is out of service (outage switch); sending through the fallback');
      metrics?.providerSwitched(settings.primary.provider, fb.provider);
      return sendViaFallback(tenantId, settings.primary.provider, fb, build);
    }
    try {
      return { ...(await sendVia(tenantId, settings.primary, build)), fallbackUsed: false };
    } catch (err) {
      // An SDK's message is not trusted (it may quote the request): the log gets its name and code.
      const e = isWorkerError(err) ? err : new WorkerError('internal_error', undefined, { detail: { name: (err as Error)?.name, code: (err as { code?: string })?.code } });
      if (!settings.fallback || off(settings.fallback.provider) || !(e.retryable || FAILOVER_PERMANENT.has(e.code))) throw e;
      if (!sendFits()) {
        log.warn({ provider: settings.primary.provider, error_code: e.code, fallback: settings.fallback.provider }, "primary provider failed and the claim's lease leaves no time for the fallback; a redelivery tries again");
        throw e;
      }
      log.warn({ provider: settings.primary.provider, error_code: e.code, fallback: settings.fallback.provider }, 'primary provider failed; trying the fallback');
      return sendViaFallback(tenantId, settings.primary.provider, settings.fallback, build);
    }
  }

  /** A send through the tenant's fallback account, counted (tew_fallbacks_total) whichever way it ends. */
  async function sendViaFallback(tenantId: string, primary: ProviderName, fallback: ProviderAccount, build: Build) {
    let ok = false;
    try {
      const r = { ...(await sendVia(tenantId, fallback, build, 'fallback')), fallbackUsed: true };
      ok = true;
      return r;
    } finally {
      metrics?.fallback(primary, fallback.provider, ok);
    }
  }

  async function sendVia(tenantId: string, account: ProviderAccount, build: Build, role: 'primary' | 'fallback' = 'primary') {
    const { email, sender } = build(account);
    const client = providers.get(tenantId, account);
    const started = process.hrtime.bigint();
    const providerCode = (err: unknown) => (isWorkerError(err) ? err.code : 'internal_error');
    try {
      const { messageId } = await inSpan(
        `send ${account.provider}`,
        { 'email.provider': account.provider, 'email.provider_role': role, 'email.sender_tier': sender.tier },
        () => client.send(email),
        providerCode,
      );
      metrics?.send(account.provider, null, secondsSince(started));
      return { provider: account.provider, messageId, sender };
    } catch (err) {
      metrics?.send(account.provider, providerCode(err), secondsSince(started));
      throw err;
    }
  }
}
