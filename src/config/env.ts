import { z } from 'zod';
import { PROVIDERS, SENDER_DOMAIN_POLICIES } from '../types';
import { isEmailAddress } from '../core/emailAddress';

/** The environment variables the worker reads, each with its type, bounds, default and the message a bad value gets. */

const MIN_KEY_BYTES = 32;

const bool = (dflt: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
    .optional()
    .transform((v) => (v === undefined ? dflt : v === 'true' || v === '1' || v === 'yes'));

const int = (dflt: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return dflt;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

const ratio = (dflt: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return dflt;
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0 || n > 1) {
        ctx.addIssue({ code: 'custom', message: 'must be a fraction above 0 and at most 1, e.g. 0.003 for 0.3%' });
        return z.NEVER;
      }
      return n;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const postgresUrl = optionalString.refine(
  (v) => v === undefined || /^postgres(ql)?:\/\//.test(v),
  'must be a postgres:// or postgresql:// URL, e.g. postgres://email_worker:PASSWORD@db:5432/app',
);

// Random keys in any encoding use many symbols: 32 hex digits have 8 or more distinct ones with
// overwhelming probability. Fewer means a placeholder (`aaaa…`, `changeme…`), not a key.
const MIN_KEY_SYMBOLS = 8;
const encryptionKey = optionalString
  .refine(
    (v) => v === undefined || Buffer.byteLength(v, 'utf8') >= MIN_KEY_BYTES,
    `must be at least ${MIN_KEY_BYTES} bytes of random data; generate one with \`tenant-email keys generate\` or \`openssl rand -base64 48\``,
  )
  .refine(
    (v) => v === undefined || Buffer.byteLength(v, 'utf8') < MIN_KEY_BYTES || new Set(v).size >= MIN_KEY_SYMBOLS,
    `uses fewer than ${MIN_KEY_SYMBOLS} distinct characters, so it is not random data; generate one with \`tenant-email keys generate\` or \`openssl rand -base64 48\``,
  );

export const envSchema = z.object({
  PORT: int(8080, 1, 65535),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: postgresUrl,
  MIGRATION_DATABASE_URL: postgresUrl,
  MAINTENANCE_DATABASE_URL: postgresUrl,
  DB_POOL_MAX: int(4, 1, 200),
  MAX_IN_FLIGHT_EVENTS: int(128, 1, 100_000),
  DB_CONNECT_TIMEOUT_SECONDS: int(5, 1, 120),
  DB_STATEMENT_TIMEOUT_MS: int(5000, 100, 600000),
  DB_POOL_WAIT_MS: int(2000, 10, 600000),
  WORKER_DB_ROLE: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a plain lower-case PostgreSQL role name')
    .default('email_worker'),
  ADMIN_DB_ROLE: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a plain lower-case PostgreSQL role name')
    .optional(),
  DB_ENCRYPTION_KEY: encryptionKey,
  DB_ENCRYPTION_KEY_PREVIOUS: encryptionKey,
  BODY_LIMIT_BYTES: int(256 * 1024, 1024, 10 * 1024 * 1024),
  EVENT_TYPES: z
    .string()
    .default('codetether.task.created')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean)),
  CLAIM_LEASE_SECONDS: int(30, 5, 86400),
  PROVIDER_TIMEOUT_MS: int(10000, 100, 120000),
  OUTPUT_MAX_CHARS: int(100 * 1024, 1024, 5 * 1024 * 1024),
  SHUTDOWN_GRACE_MS: int(25000, 0, 600000),
  ALLOW_PROVIDER_ENDPOINT_OVERRIDE: bool(false),
  ALLOW_PRIVATE_SMTP_HOSTS: bool(false),
  SMTP_ALLOWED_HOSTS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine(
      (v) => v.every((h) => /^[A-Za-z0-9.-]{1,253}$/.test(h) || /^\[?[0-9a-fA-F:.]+\]?(\/\d{1,3})?$/.test(h)),
      'must be a comma-separated list of host names, IP addresses or CIDRs, e.g. relay.mail.svc.cluster.local,10.20.0.0/16',
    ),
  REPLY_TO_PATTERN: z
    .string()
    .default('reply+{task_id}@{domain}')
    .refine((v) => v.includes('{domain}'), 'must contain {domain}, e.g. reply+{task_id}@{domain}'),
  EMAIL_TENANT_FROM_PATTERN: optionalString,
  SENDER_DOMAIN_POLICY: z.enum(SENDER_DOMAIN_POLICIES, { message: `must be one of ${SENDER_DOMAIN_POLICIES.join(', ')}` }).default('platform-paid'),
  TEMPLATE_CACHE_SIZE: int(1000, 1, 1_000_000),
  METRICS_ENABLED: bool(true),
  METRICS_TENANT_LABELS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine((v) => v.length <= 100, 'at most 100 tenants may get their own metrics label (each one multiplies the series)'),
  REPLY_EVENTS: bool(false),
  REPLY_EVENT_SOURCE: z
    .string()
    .default('/tenant-email-worker')
    .refine((v) => v.trim() !== '' && v.length <= 256, 'must be a non-empty URI-reference, e.g. /tenant-email-worker'),
  SENDGRID_API_KEY: optionalString,
  SENDGRID_FROM_EMAIL: optionalString.refine((v) => v === undefined || isEmailAddress(v), 'must be an email address'),
  SENDGRID_FROM_NAME: optionalString,
  SENDGRID_BASE_URL: optionalString,
  SENDGRID_MASTER_API_KEY: optionalString,
  GLOBAL_REPLY_TO_DOMAIN: optionalString,
  GLOBAL_DAILY_LIMIT: int(1000, 0, 100_000_000),
  ADMIN_API_ENABLED: bool(true),
  // Unset: on where the admin API is off (the chart's Knative worker), off where it is on (the
  // public admin Deployment), so the store is never served on the public listener.
  DEAD_LETTER_STORE: z.enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' }).optional(),
  DEAD_LETTER_RETENTION_DAYS: int(30, 1, 3650),
  DB_POOLER: z.enum(['none', 'pgbouncer'], { message: 'must be none or pgbouncer' }).default('none'),
  DB_PREPARED_STATEMENTS: z.enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' }).optional(),
  REPLAY_PAUSED_ON_RESUME: bool(true),
  PROVIDERS_DISABLED: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const list = (v ?? '').split(',').map((x) => x.trim()).filter(Boolean);
      const bad = list.filter((x) => !(PROVIDERS as readonly string[]).includes(x));
      if (bad.length > 0) {
        ctx.addIssue({ code: 'custom', message: `unknown provider ${bad.join(', ')}; one or more of ${PROVIDERS.join(', ')}, comma-separated` });
        return z.NEVER;
      }
      return list as (typeof PROVIDERS)[number][];
    }),
  PROVIDER_SWITCH_REFRESH_MS: int(5000, 100, 600_000),
  BROKER_URL: optionalString.refine((v) => v === undefined || /^https?:\/\/\S+$/.test(v), 'must be the http(s) URL of the broker ingress'),
  ADMIN_AUTH_FAILURE_LIMIT: int(20, 1, 100_000),
  TRUST_PROXY: int(0, 0, 10),
  ADMIN_JWT_SECRET: optionalString.refine(
    (v) => v === undefined || Buffer.byteLength(v, 'utf8') >= 32,
    'must be at least 32 bytes (HS256 secret); generate one with `openssl rand -base64 48`',
  ),
  ADMIN_JWT_JWKS_URL: optionalString.refine((v) => v === undefined || /^https?:\/\//.test(v), 'must be an http(s) URL'),
  ADMIN_JWT_ISSUER: optionalString,
  ADMIN_JWT_AUDIENCE: optionalString,
  PUBLIC_BASE_URL: optionalString.refine(
    (v) => v === undefined || (/^https:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~-]+)*$/.test(v)),
    'must be the https URL the admin API is reachable at from the internet, without a trailing slash, e.g. https://email.example.com',
  ),
  WEBHOOK_MAX_AGE_SECONDS: int(600, 60, 86_400),
  // Set by a Knative SinkBinding (or by hand): where delivery-feedback events are published.
  K_SINK: optionalString.refine((v) => v === undefined || /^https?:\/\/[^\s]+$/.test(v), 'must be an http(s) URL (a Knative SinkBinding sets it)'),
  K_CE_OVERRIDES: optionalString.refine((v) => {
    if (v === undefined) return true;
    try {
      const o = JSON.parse(v) as { extensions?: unknown };
      return typeof o === 'object' && o !== null && (o.extensions === undefined || (typeof o.extensions === 'object' && o.extensions !== null));
    } catch {
      return false;
    }
  }, 'must be JSON like {"extensions": {"name": "value"}} (a Knative SinkBinding sets it)'),
  SNS_CERT_HOST_PATTERN: optionalString.refine((v) => {
    if (v === undefined) return true;
    try {
      new RegExp(v);
      return true;
    } catch {
      return false;
    }
  }, 'must be a regular expression'),
  SOFT_BOUNCE_SUPPRESS_AFTER: int(3, 0, 1000),
  REPUTATION_COMPLAINT_THRESHOLD: ratio(0.003),
  REPUTATION_BOUNCE_THRESHOLD: ratio(0.05),
  REPUTATION_MIN_VOLUME: int(500, 1, 100_000_000),
  REPUTATION_WINDOW_DAYS: int(7, 1, 90),
});

export type Env = z.infer<typeof envSchema>;
