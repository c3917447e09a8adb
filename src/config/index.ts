import { createHash } from 'node:crypto';
import { Egress, type EgressPolicy } from '../net/egress';
import type { ProviderName, SenderDomainPolicy } from '../types';
import { envSchema, type Env } from './env';
import { checkFromPattern } from '../core/platformAddress';
import { UsageError } from '../errors';

/**
 * Configuration is read from the environment once, validated, typed and frozen. A bad value
 * fails start-up with a message that says how to fix it. README.md has the same table.
 */

/** Reply events are codetether.email.sent and codetether.email.skipped. */
export const REPLY_EVENT_PREFIX = 'codetether.email.';

/**
 * How long before its claim's lease ends a send must be able to end (its PROVIDER_TIMEOUT_MS
 * included) for the worker to start it: room for a stalled event loop and clock rates.
 */
export const LEASE_MARGIN_MS = 2000;

/** The shortest lease that leaves room for one provider call: its timeout, the margin, and 1 s for the claim and the render. */
export function minClaimLeaseSeconds(providerTimeoutMs: number): number {
  return Math.ceil((providerTimeoutMs + LEASE_MARGIN_MS + 1000) / 1000);
}

export interface GlobalEmailConfig {
  readonly apiKey: string;
  readonly fromEmail: string;
  readonly fromName: string | null;
  readonly replyToDomain: string | null;
  readonly dailyLimit: number;
  readonly baseUrl: string | undefined;
}

export interface EncryptionKey {
  /** Fingerprint stored beside each ciphertext; says which key to decrypt it with. Not secret. */
  readonly id: string;
  readonly secret: string;
}

export interface Config {
  readonly port: number;
  /** Proxy hops in front of the worker whose X-Forwarded-For is trusted (express `trust proxy`). */
  readonly trustProxy: number;
  readonly logLevel: Env['LOG_LEVEL'];
  readonly databaseUrl: string | undefined;
  readonly migrationDatabaseUrl: string | undefined;
  readonly maintenanceDatabaseUrl: string | undefined;
  readonly dbPoolMax: number;
  readonly maxInFlightEvents: number;
  readonly dbConnectTimeoutSeconds: number;
  readonly dbStatementTimeoutMs: number;
  /**
   * DB_POOL_WAIT_MS: the longest an event's claim (its first database call) may take, the wait for
   * a connection included: in this pool, and behind PgBouncer in the pooler's queue. Past it the
   * event is answered 503 database_unavailable with Retry-After, so a saturated pool sheds load to
   * the broker's retries instead of queueing it in memory.
   */
  readonly dbPoolWaitMs: number;
  /** DB_POOLER: pgbouncer sends no start-up parameter PgBouncer refuses (statement_timeout). */
  readonly dbPooler: 'none' | 'pgbouncer';
  /** DB_PREPARED_STATEMENTS: default on, off with DB_POOLER=pgbouncer (PgBouncer < 1.21 in transaction mode cannot keep them). */
  readonly dbPreparedStatements: boolean;
  readonly workerDbRole: string;
  /** The admin API's own role (migrate grants it the admin key functions and revokes them from the worker role); the worker role when unset. */
  readonly adminDbRole: string;
  readonly encryptionKey: EncryptionKey | undefined;
  readonly previousEncryptionKey: EncryptionKey | undefined;
  readonly bodyLimitBytes: number;
  readonly eventTypes: readonly string[];
  readonly claimLeaseSeconds: number;
  readonly providerTimeoutMs: number;
  readonly outputMaxChars: number;
  readonly shutdownGraceMs: number;
  readonly allowProviderEndpointOverride: boolean;
  /** Where tenant-chosen SMTP hosts and endpoint overrides may point (SSRF guard). */
  readonly egress: EgressPolicy;
  readonly replyToPattern: string;
  /** The platform sender tier, e.g. noreply@{tenant}.mail.example.com; undefined when there is none. */
  readonly tenantFromPattern: string | undefined;
  /** verified: custom domains must be verified through …/email-domains; provider: trust the provider account. */
  readonly senderDomainPolicy: SenderDomainPolicy;
  readonly templateCacheSize: number;
  /** GET /metrics on the worker's port. */
  readonly metricsEnabled: boolean;
  /** Tenants that get their own `tenant` label in metrics; empty: no tenant label. */
  readonly metricsTenantLabels: readonly string[];
  /** Answer a sent/skipped event with a reply CloudEvent (codetether.email.sent/skipped) in the 202. */
  readonly replyEvents: boolean;
  readonly replyEventSource: string;
  readonly global: GlobalEmailConfig | undefined;
  /** For `sendgrid provision` only: the parent account's key, with subuser and api_keys scopes. */
  readonly sendgridMasterApiKey: string | undefined;
  /** SENDGRID_BASE_URL (only with ALLOW_PROVIDER_ENDPOINT_OVERRIDE): global sends and provisioning. */
  readonly sendgridBaseUrl: string | undefined;
  /** Undefined when the admin API is off. Without a JWT secret or JWKS, it takes API keys only. */
  readonly admin: AdminConfig | undefined;
  /** Delivery feedback (DESIGN §9): webhooks, suppression, reputation guard, one-click unsubscribe. */
  readonly feedback: FeedbackConfig;
  /** Serve POST /dead-letters (the chart's Triggers dead-letter there). */
  readonly deadLetterStore: boolean;
  /** `dead-letters purge` deletes what is older. */
  readonly deadLetterRetentionDays: number;
  /** The broker's ingress URL: where dead letters are replayed to. */
  readonly brokerUrl: string | undefined;
  /** Resuming a paused tenant replays its tenant_paused dead letters (needs brokerUrl). */
  readonly replayPausedOnResume: boolean;
  /** The outage switch's fixed part (PROVIDERS_DISABLED); the database's part is refreshed every providerSwitchRefreshMs. */
  readonly providersDisabled: readonly ProviderName[];
  readonly providerSwitchRefreshMs: number;
}

export interface FeedbackConfig {
  /** Where the admin API's server is reachable from the internet; unset, no List-Unsubscribe link is added. */
  readonly publicBaseUrl: string | undefined;
  /** A signed webhook request older than this (SendGrid's timestamp) is refused as a replay. */
  readonly webhookMaxAgeSeconds: number;
  /** Hosts SNS signing certificates may come from (AWS's own pattern unless a test sets SNS_CERT_HOST_PATTERN). */
  readonly snsCertHostPattern: RegExp;
  readonly softBounceLimit: number;
  readonly complaintThreshold: number;
  readonly bounceThreshold: number;
  readonly minVolume: number;
  readonly windowDays: number;
  /** K_SINK: status changes are published there through the outbox; undefined: not published. */
  readonly sink: string | undefined;
  /** K_CE_OVERRIDES extensions (string values only) every published event carries. */
  readonly sinkExtensions: Readonly<Record<string, string>>;
}

/** Where SNS signing certificates come from: sns.<region>.amazonaws.com(.cn). */
export const SNS_CERT_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

export interface AdminConfig {
  /** Failed authentications (401) a client address may have per minute before it gets 429. */
  readonly authFailureLimit: number;
  readonly jwtSecret: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
}

/** The key id is a fingerprint: enough to tell keys apart, useless for guessing one. */
export function keyId(secret: string): string {
  return createHash('sha256').update('tenant-email-worker key id\0').update(secret).digest('hex').slice(0, 16);
}

function ceOverrides(json: string | undefined): Record<string, string> {
  const ext = json ? (JSON.parse(json) as { extensions?: Record<string, unknown> }).extensions ?? {} : {};
  return Object.fromEntries(Object.entries(ext).filter(([k, v]) => /^[a-z0-9]{1,20}$/.test(k) && typeof v === 'string')) as Record<string, string>;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new UsageError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;

  if (e.DB_ENCRYPTION_KEY_PREVIOUS && !e.DB_ENCRYPTION_KEY) {
    throw new UsageError('invalid configuration:\n  DB_ENCRYPTION_KEY_PREVIOUS is set but DB_ENCRYPTION_KEY is not; set the new key too.');
  }
  if (e.SENDGRID_API_KEY && !e.SENDGRID_FROM_EMAIL) {
    throw new UsageError('invalid configuration:\n  SENDGRID_API_KEY is set but SENDGRID_FROM_EMAIL is not; the global configuration needs both.');
  }
  const patternProblem = e.EMAIL_TENANT_FROM_PATTERN === undefined ? null : checkFromPattern(e.EMAIL_TENANT_FROM_PATTERN);
  if (patternProblem) throw new UsageError(`invalid configuration:\n  EMAIL_TENANT_FROM_PATTERN: ${patternProblem}`);
  const loop = e.EVENT_TYPES.filter((t) => t.startsWith(REPLY_EVENT_PREFIX));
  if (e.REPLY_EVENTS && loop.length > 0) {
    throw new UsageError(
      `invalid configuration:\n  REPLY_EVENTS=true while EVENT_TYPES includes ${loop.join(', ')}: the worker would answer its own replies. Drop those types or turn reply events off.`,
    );
  }
  if (e.CLAIM_LEASE_SECONDS < minClaimLeaseSeconds(e.PROVIDER_TIMEOUT_MS)) {
    throw new UsageError(
      `invalid configuration:\n  CLAIM_LEASE_SECONDS (${e.CLAIM_LEASE_SECONDS}) is too short for PROVIDER_TIMEOUT_MS (${e.PROVIDER_TIMEOUT_MS}): a send starts only while it can end ${LEASE_MARGIN_MS / 1000} s before the claim's lease does, so no event could be sent. Set CLAIM_LEASE_SECONDS to at least ${minClaimLeaseSeconds(e.PROVIDER_TIMEOUT_MS)} (the default, 30, fits PROVIDER_TIMEOUT_MS up to ${30_000 - LEASE_MARGIN_MS - 1000}).`,
    );
  }
  if (e.SENDGRID_BASE_URL && !e.ALLOW_PROVIDER_ENDPOINT_OVERRIDE) {
    throw new UsageError('invalid configuration:\n  SENDGRID_BASE_URL needs ALLOW_PROVIDER_ENDPOINT_OVERRIDE=true (endpoint overrides are for tests and proxies).');
  }

  const toKey = (secret: string | undefined): EncryptionKey | undefined =>
    secret === undefined ? undefined : Object.freeze({ id: keyId(secret), secret });

  const config: Config = {
    port: e.PORT,
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    migrationDatabaseUrl: e.MIGRATION_DATABASE_URL ?? e.DATABASE_URL,
    maintenanceDatabaseUrl: e.MAINTENANCE_DATABASE_URL,
    dbPoolMax: e.DB_POOL_MAX,
    maxInFlightEvents: e.MAX_IN_FLIGHT_EVENTS,
    dbConnectTimeoutSeconds: e.DB_CONNECT_TIMEOUT_SECONDS,
    dbStatementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
    dbPoolWaitMs: e.DB_POOL_WAIT_MS,
    dbPooler: e.DB_POOLER,
    dbPreparedStatements: e.DB_PREPARED_STATEMENTS === undefined ? e.DB_POOLER !== 'pgbouncer' : ['true', '1', 'yes'].includes(e.DB_PREPARED_STATEMENTS),
    workerDbRole: e.WORKER_DB_ROLE,
    adminDbRole: e.ADMIN_DB_ROLE ?? e.WORKER_DB_ROLE,
    encryptionKey: toKey(e.DB_ENCRYPTION_KEY),
    previousEncryptionKey: toKey(e.DB_ENCRYPTION_KEY_PREVIOUS),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    eventTypes: Object.freeze(e.EVENT_TYPES),
    claimLeaseSeconds: e.CLAIM_LEASE_SECONDS,
    providerTimeoutMs: e.PROVIDER_TIMEOUT_MS,
    outputMaxChars: e.OUTPUT_MAX_CHARS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    allowProviderEndpointOverride: e.ALLOW_PROVIDER_ENDPOINT_OVERRIDE,
    egress: Object.freeze({ allowPrivate: e.ALLOW_PRIVATE_SMTP_HOSTS, allowedHosts: Object.freeze(e.SMTP_ALLOWED_HOSTS) }),
    replyToPattern: e.REPLY_TO_PATTERN,
    tenantFromPattern: e.EMAIL_TENANT_FROM_PATTERN,
    senderDomainPolicy: e.SENDER_DOMAIN_POLICY,
    templateCacheSize: e.TEMPLATE_CACHE_SIZE,
    metricsEnabled: e.METRICS_ENABLED,
    metricsTenantLabels: Object.freeze(e.METRICS_TENANT_LABELS),
    replyEvents: e.REPLY_EVENTS,
    replyEventSource: e.REPLY_EVENT_SOURCE,
    global:
      e.SENDGRID_API_KEY && e.SENDGRID_FROM_EMAIL
        ? Object.freeze({
            apiKey: e.SENDGRID_API_KEY,
            fromEmail: e.SENDGRID_FROM_EMAIL,
            fromName: e.SENDGRID_FROM_NAME ?? null,
            replyToDomain: e.GLOBAL_REPLY_TO_DOMAIN ?? null,
            dailyLimit: e.GLOBAL_DAILY_LIMIT,
            baseUrl: e.SENDGRID_BASE_URL,
          })
        : undefined,
    sendgridMasterApiKey: e.SENDGRID_MASTER_API_KEY,
    sendgridBaseUrl: e.SENDGRID_BASE_URL,
    feedback: Object.freeze({
      publicBaseUrl: e.PUBLIC_BASE_URL,
      webhookMaxAgeSeconds: e.WEBHOOK_MAX_AGE_SECONDS,
      snsCertHostPattern: e.SNS_CERT_HOST_PATTERN ? new RegExp(e.SNS_CERT_HOST_PATTERN) : SNS_CERT_HOST,
      softBounceLimit: e.SOFT_BOUNCE_SUPPRESS_AFTER,
      complaintThreshold: e.REPUTATION_COMPLAINT_THRESHOLD,
      bounceThreshold: e.REPUTATION_BOUNCE_THRESHOLD,
      minVolume: e.REPUTATION_MIN_VOLUME,
      windowDays: e.REPUTATION_WINDOW_DAYS,
      sink: e.K_SINK,
      sinkExtensions: Object.freeze(ceOverrides(e.K_CE_OVERRIDES)),
    }),
    deadLetterStore: e.DEAD_LETTER_STORE === undefined ? !e.ADMIN_API_ENABLED : ['true', '1', 'yes'].includes(e.DEAD_LETTER_STORE),
    deadLetterRetentionDays: e.DEAD_LETTER_RETENTION_DAYS,
    brokerUrl: e.BROKER_URL,
    replayPausedOnResume: e.REPLAY_PAUSED_ON_RESUME,
    providersDisabled: Object.freeze(e.PROVIDERS_DISABLED),
    providerSwitchRefreshMs: e.PROVIDER_SWITCH_REFRESH_MS,
    admin: e.ADMIN_API_ENABLED
        ? Object.freeze({ authFailureLimit: e.ADMIN_AUTH_FAILURE_LIMIT, jwtSecret: e.ADMIN_JWT_SECRET, jwksUrl: e.ADMIN_JWT_JWKS_URL, issuer: e.ADMIN_JWT_ISSUER, audience: e.ADMIN_JWT_AUDIENCE })
        : undefined,
  };
  if (e.ADMIN_JWT_SECRET && e.ADMIN_JWT_JWKS_URL) {
    throw new UsageError('invalid configuration:\n  set ADMIN_JWT_SECRET (HS256) or ADMIN_JWT_JWKS_URL, not both.');
  }
  if (config.previousEncryptionKey && config.encryptionKey && config.previousEncryptionKey.id === config.encryptionKey.id) {
    throw new UsageError('invalid configuration:\n  DB_ENCRYPTION_KEY_PREVIOUS equals DB_ENCRYPTION_KEY; unset it once rotation is done.');
  }
  try {
    new Egress(config.egress);
  } catch {
    throw new UsageError('invalid configuration:\n  SMTP_ALLOWED_HOSTS: an entry with a / is not a CIDR (or its prefix is out of range), e.g. 10.20.0.0/16 or fd00::/8');
  }
  return Object.freeze(config);
}

