import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PROVIDERS } from '../types';

/**
 * The worker's Prometheus metrics, served at GET /metrics. Every label has a bounded set of
 * values: event types outside EVENT_TYPES count as "other", error codes come from the registry in
 * errors.ts, providers from the five we support. There is no tenant label unless the platform
 * names tenants in METRICS_TENANT_LABELS (thousands of tenants × every series would swamp
 * Prometheus); tenants not on that list share tenant="".
 *
 * Nothing here sees a recipient, a key or an event body.
 */

/** Seconds. Provider calls sit between ~50 ms and the 10 s timeout; the claim is usually < 5 ms. */
const SEND_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const DB_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

export type EventResult = 'sent' | 'duplicate' | 'skipped' | 'rejected';

export interface MetricsOptions {
  eventTypes: readonly string[];
  /** Tenants that get their own label value; empty (the default) means no tenant label at all. */
  tenantLabels: readonly string[];
  /** Process metrics (CPU, RSS, event loop lag, GC); off in unit tests that count series. */
  processMetrics?: boolean;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly eventTypes: ReadonlySet<string>;
  private readonly tenants: ReadonlySet<string>;
  private readonly withTenant: boolean;

  private readonly events: Counter<string>;
  private readonly eventDuration: Histogram<string>;
  private readonly sendDuration: Histogram<string>;
  private readonly claimDuration: Histogram<string>;
  private readonly recordDuration: Histogram<string>;
  private readonly quotaRejections: Counter<string>;
  private readonly providerErrors: Counter<string>;
  private readonly fallbacks: Counter<string>;
  private readonly recordFailures: Counter<string>;
  private readonly templateFallbacks: Counter<string>;
  private readonly lateWritesDropped: Counter<string>;
  private readonly webhookRequests: Counter<string>;
  private readonly webhookEvents: Counter<string>;
  private readonly deliveryStatuses: Counter<string>;
  private readonly suppressionsAdded: Counter<string>;
  private readonly tenantsPaused: Counter<string>;
  private readonly outboxEvents: Counter<string>;
  private readonly deadLetters: Counter<string>;
  private readonly switched: Counter<string>;

  constructor(opts: MetricsOptions, inFlight: () => number, ledgerWritesPending: () => number = () => 0, providersDisabled: () => readonly string[] = () => []) {
    this.eventTypes = new Set(opts.eventTypes);
    this.tenants = new Set(opts.tenantLabels);
    this.withTenant = this.tenants.size > 0;
    const t = (names: string[]) => (this.withTenant ? [...names, 'tenant'] : names);
    const registers = [this.registry];

    this.events = new Counter({
      name: 'tew_events_total',
      help: 'Events answered, by result (sent, duplicate, skipped, rejected), event type, provider and error code.',
      labelNames: t(['result', 'event_type', 'provider', 'error_code']),
      registers,
    });
    this.eventDuration = new Histogram({
      name: 'tew_event_duration_seconds',
      help: 'Time from request to answer for POST /, by result.',
      labelNames: ['result'],
      buckets: SEND_BUCKETS,
      registers,
    });
    this.sendDuration = new Histogram({
      name: 'tew_provider_send_duration_seconds',
      help: 'Provider send latency by provider and result (ok or the error code).',
      labelNames: ['provider', 'result'],
      buckets: SEND_BUCKETS,
      registers,
    });
    this.claimDuration = new Histogram({
      name: 'tew_db_claim_duration_seconds',
      help: 'Latency of the claim round trip (email_claim_event: RLS context, settings, idempotency, quota, decrypt).',
      buckets: DB_BUCKETS,
      registers,
    });
    this.recordDuration = new Histogram({
      name: 'tew_db_record_duration_seconds',
      help: 'Latency of the outcome round trip (email_record_outcome).',
      buckets: DB_BUCKETS,
      registers,
    });
    this.quotaRejections = new Counter({
      name: 'tew_quota_rejections_total',
      help: "Events refused because the tenant's daily limit was used up.",
      labelNames: t(['event_type']),
      registers,
    });
    this.providerErrors = new Counter({
      name: 'tew_provider_errors_total',
      help: 'Failed provider calls by provider and error code (a fallback attempt counts separately).',
      labelNames: ['provider', 'error_code'],
      registers,
    });
    this.fallbacks = new Counter({
      name: 'tew_fallbacks_total',
      help: "Sends that went to the tenant's fallback provider, by primary and fallback provider and whether the fallback succeeded.",
      labelNames: ['provider', 'fallback_provider', 'result'],
      registers,
    });
    this.recordFailures = new Counter({
      name: 'tew_outcome_record_failures_total',
      help: 'Outcomes that could not be written right away (retried in the background, tew_ledger_writes_pending; README "Observability").',
      registers,
    });
    this.lateWritesDropped = new Counter({
      name: 'tew_ledger_writes_dropped_total',
      help: 'Ledger writes given up after the database stayed away (kind: outcome, or release of a claim whose answer was lost); an outcome dropped leaves the event’s ledger row claimed although its email went out.',
      labelNames: ['kind'],
      registers,
    });
    new Gauge({
      name: 'tew_ledger_writes_pending',
      help: 'Ledger writes waiting for the database (outcomes and claim releases retried in the background).',
      registers,
      collect() {
        this.set(ledgerWritesPending());
      },
    });
    this.templateFallbacks = new Counter({
      name: 'tew_template_fallbacks_total',
      help: "Emails sent with the built-in template because the tenant's template failed to compile or render.",
      labelNames: ['event_type'],
      registers,
    });
    new Gauge({
      name: 'tew_events_in_flight',
      help: 'Events being handled right now by this instance.',
      registers,
      collect() {
        this.set(inFlight());
      },
    });
    this.webhookRequests = new Counter({
      name: 'tew_webhook_requests_total',
      help: 'Provider webhook requests (DESIGN §9) by provider and result: ok, or the error code (webhook_unauthorized, webhook_forbidden, webhook_invalid_payload, database_unavailable, …).',
      labelNames: ['provider', 'result'],
      registers,
    });
    this.webhookEvents = new Counter({
      name: 'tew_webhook_events_total',
      help: 'Provider events in verified webhook requests by provider and what became of them: applied (changed a delivery), duplicate (seen before), stale (a status the delivery already had or outranked), unmatched (not a delivery of this worker), ignored (opens, clicks, sends).',
      labelNames: ['provider', 'result'],
      registers,
    });
    this.deliveryStatuses = new Counter({
      name: 'tew_delivery_status_total',
      help: 'Deliveries that moved to a status by provider and status (delivered, deferred, bounced_hard, bounced_soft, complained, unsubscribed, dropped).',
      labelNames: ['provider', 'status'],
      registers,
    });
    this.suppressionsAdded = new Counter({
      name: 'tew_suppressions_added_total',
      help: "Addresses added to a tenant's suppression list, by source (webhook, unsubscribe, admin).",
      labelNames: ['source'],
      registers,
    });
    this.tenantsPaused = new Counter({
      name: 'tew_tenants_paused_total',
      help: 'Tenants the reputation guard paused, by reason (complaint_rate, bounce_rate).',
      labelNames: ['reason'],
      registers,
    });
    this.outboxEvents = new Counter({
      name: 'tew_outbox_events_total',
      help: 'Delivery-feedback CloudEvents published to K_SINK from the outbox, by result (ok; failed: kept and tried again).',
      labelNames: ['result'],
      registers,
    });
    this.deadLetters = new Counter({
      name: 'tew_dead_letters_total',
      help: 'Dead letters stored (POST /dead-letters), by the error code the worker had answered (its registry code; http_<status> for an answer that was not ours) and whether it was the first time for that event.',
      labelNames: ['error_code', 'first'],
      registers,
    });
    this.switched = new Counter({
      name: 'tew_provider_switch_events_total',
      help: 'Events whose primary provider was out of service (the outage switch), by provider and where they went: the fallback provider, or "none" (answered 503 provider_disabled).',
      labelNames: ['provider', 'fallback_provider'],
      registers,
    });
    new Gauge({
      name: 'tew_provider_disabled',
      help: 'Providers out of service (the outage switch: PROVIDERS_DISABLED or `tenant-email providers disable`): 1 per provider switched off, 0 otherwise.',
      labelNames: ['provider'],
      registers,
      collect() {
        const off = providersDisabled();
        for (const p of PROVIDERS) this.set({ provider: p }, off.includes(p) ? 1 : 0);
      },
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'tew_' });
  }

  /** A label value for an event type that cannot grow without bound. */
  eventType(type: string | undefined): string {
    return type !== undefined && this.eventTypes.has(type) ? type : 'other';
  }

  private tenantLabel(tenant: string | null | undefined): Record<string, string> {
    if (!this.withTenant) return {};
    return { tenant: tenant && this.tenants.has(tenant) ? tenant : '' };
  }

  event(o: { result: EventResult; eventType?: string; provider?: string | null; errorCode?: string | null; tenant?: string | null; seconds: number }): void {
    this.events.inc({
      result: o.result,
      event_type: this.eventType(o.eventType),
      provider: o.provider ?? '',
      error_code: o.errorCode ?? '',
      ...this.tenantLabel(o.tenant),
    });
    this.eventDuration.observe({ result: o.result }, o.seconds);
    if (o.errorCode === 'quota_exceeded') this.quotaRejections.inc({ event_type: this.eventType(o.eventType), ...this.tenantLabel(o.tenant) });
  }

  send(provider: string, errorCode: string | null, seconds: number): void {
    this.sendDuration.observe({ provider, result: errorCode ?? 'ok' }, seconds);
    if (errorCode) this.providerErrors.inc({ provider, error_code: errorCode });
  }

  fallback(provider: string, fallbackProvider: string, ok: boolean): void {
    this.fallbacks.inc({ provider, fallback_provider: fallbackProvider, result: ok ? 'ok' : 'failed' });
  }

  claim(seconds: number): void {
    this.claimDuration.observe(seconds);
  }

  record(seconds: number, ok: boolean): void {
    this.recordDuration.observe(seconds);
    if (!ok) this.recordFailures.inc();
  }

  lateWriteDropped(kind: 'outcome' | 'release'): void {
    this.lateWritesDropped.inc({ kind });
  }

  webhook(provider: string, result: string): void {
    this.webhookRequests.inc({ provider, result });
  }

  webhookEventCounts(provider: string, counts: Record<'applied' | 'duplicate' | 'stale' | 'unmatched' | 'ignored', number>): void {
    for (const [result, n] of Object.entries(counts)) if (n > 0) this.webhookEvents.inc({ provider, result }, n);
  }

  deliveryStatus(provider: string, statuses: Record<string, number>): void {
    for (const [status, n] of Object.entries(statuses)) if (n > 0) this.deliveryStatuses.inc({ provider, status }, n);
  }

  suppressed(source: 'webhook' | 'unsubscribe' | 'admin', n = 1): void {
    if (n > 0) this.suppressionsAdded.inc({ source }, n);
  }

  providerSwitched(provider: string, fallback: string | null): void {
    this.switched.inc({ provider, fallback_provider: fallback ?? 'none' });
  }


  deadLetter(errorCode: string, first: boolean): void {
    this.deadLetters.inc({ error_code: errorCode, first: String(first) });
  }

  outboxPublished(result: 'ok' | 'failed', n: number): void {
    this.outboxEvents.inc({ result }, n);
  }

  tenantPaused(reason: string): void {
    this.tenantsPaused.inc({ reason });
  }

  templateFallback(eventType: string): void {
    this.templateFallbacks.inc({ event_type: this.eventType(eventType) });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** Seconds since a process.hrtime.bigint() reading. */
export function secondsSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}
