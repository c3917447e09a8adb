/**
 * Glossary
 *
 * - tenant: one customer of the platform, named by an id of 1-128 [A-Za-z0-9._:-]. Events carry
 *   it in the `tenant` CloudEvent extension (`ce-tenant` header) or in `data.tenant_id`.
 * - global: the configuration from the environment, used for events without a tenant and for
 *   tenants without settings. Its rows in the database are kept under GLOBAL_TENANT, an id no
 *   real tenant can have (parentheses are outside the tenant alphabet).
 * - event: one CloudEvent, identified by (tenant, source, id): the idempotency key.
 * - delivery: the ledger row for one event. It is the audit log and the source of stats.
 * - claim: a delivery row in status `claimed` with a lease. While the lease runs, a redelivery of
 *   the same event is answered 409; once it has expired, a redelivery may take the claim over.
 * - quota unit: one email counted against the tenant's daily limit (UTC day). Taken after the
 *   claim, in the same transaction, and given back when the send finally fails.
 */

export const GLOBAL_TENANT = '(global)';

export const TENANT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export const PROVIDERS = ['sendgrid', 'ses', 'postmark', 'smtp', 'resend'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
/** The providers whose delivery events come back through a webhook (SMTP has none: DSNs go to the envelope sender). */
export type WebhookProvider = Exclude<ProviderName, 'smtp'>;

/**
 * The setting in provider_settings that overrides an HTTP provider's API endpoint (DESIGN §6),
 * allowed only with ALLOW_PROVIDER_ENDPOINT_OVERRIDE. SMTP has none: its `host` is always the
 * tenant's. The SSRF guard checks this one setting when settings are saved and before each call.
 */
export const ENDPOINT_OVERRIDE_SETTING = {
  sendgrid: 'base_url',
  ses: 'endpoint',
  postmark: 'base_url',
  resend: 'base_url',
  smtp: null,
} as const satisfies Record<ProviderName, 'base_url' | 'endpoint' | null>;

/**
 * The mark in provider_settings of an account the platform provisioned and pays for. Only the
 * provisioning command sets it: the settings schemas refuse it from a tenant, and an update that
 * replaces the API key removes it (the account is then the tenant's own).
 */
export const PLATFORM_PAID_SETTING = 'platform_paid';

/** A custom sender domain's verification status, as its provider last reported it. */
export const DOMAIN_STATUSES = ['pending', 'verified', 'failed'] as const;
export type DomainStatus = (typeof DOMAIN_STATUSES)[number];

/** Decrypted credentials and settings for one provider account. Never logged. */
export interface ProviderAccount {
  readonly provider: ProviderName;
  readonly apiKey: string | null;
  readonly settings: Readonly<Record<string, unknown>>;
  /** Set by the platform's own configuration (the global account): its endpoint is not a tenant's choice. */
  readonly platformManaged?: boolean;
  /**
   * The platform pays for this account (the global account, or a SendGrid subuser the platform
   * provisioned for the tenant): with the default sender policy a tenant's own domain is sent
   * from through it only once verified (email/sender.ts).
   */
  readonly platformPaid?: boolean;
}

/** What the worker needs to send one tenant's email, as loaded by the claim. */
export interface SenderSettings {
  /** 'tenant' when the tenant's own row was used, 'global' for the environment's configuration. */
  readonly source: 'tenant' | 'global';
  readonly primary: ProviderAccount;
  readonly fallback: ProviderAccount | null;
  /** The tenant's own sender address; null means the platform tier (EMAIL_TENANT_FROM_PATTERN). */
  readonly fromEmail: string | null;
  readonly fromName: string | null;
  readonly replyToDomain: string | null;
  /** A List-Unsubscribe target (https URL or mailto), only when the tenant configured one. */
  readonly listUnsubscribe: string | null;
  /** Allow-listed extra headers the tenant configured (validated when saved). */
  readonly extraHeaders: Readonly<Record<string, string>>;
  /** from_email's domain as registered through the admin API, or null when it is not. */
  readonly fromDomain: { readonly status: DomainStatus; readonly provider: ProviderName } | null;
  /** Bumped on every write; part of the provider client cache key. */
  readonly version: number;
}

// --- sender tiers (email/sender.ts decides them; the ledger records them) ---
export type SenderTier = 'platform' | 'custom';
export type SenderNote = 'domain_not_registered' | 'domain_pending' | 'domain_failed' | 'domain_other_provider';
export const SENDER_DOMAIN_POLICIES = ['platform-paid', 'verified', 'provider'] as const;
export type SenderDomainPolicy = (typeof SENDER_DOMAIN_POLICIES)[number];

// --- templates (email/templates.ts compiles them; db/templates.ts stores them) ---
export const TEMPLATE_PARTS = ['subject', 'html', 'text'] as const;
export type TemplatePart = (typeof TEMPLATE_PARTS)[number];
export type TemplateSource = Partial<Record<TemplatePart, string | null>>;

/** Source size limits per part, in characters. */
export const TEMPLATE_MAX_CHARS: Record<TemplatePart, number> = { subject: 1000, html: 100_000, text: 100_000 };
/** Which template an email was rendered with (recorded in the ledger). */
export type TemplateUse = 'builtin' | 'tenant' | 'builtin_fallback';

// --- sender domains (providers' domain APIs report them; db/domains.ts stores them) ---
/** One DNS record the tenant must publish for its domain. */
export interface DomainRecord {
  type: string;
  name: string;
  value: string;
  priority?: number;
  /** The provider's view of this record, where it reports one (e.g. "verified", "pending"). */
  status?: string;
}

export interface DomainState {
  /** The provider's id for the domain (SES uses the domain name). */
  providerDomainId: string;
  status: DomainStatus;
  /** Empty when the provider did not return them this time (the stored ones are kept). */
  records: DomainRecord[];
}

// --- headers (email/compose.ts sets them; settings/input.ts keeps tenants' extra headers off them) ---
/** Headers the worker sets on every email itself: a tenant's extra headers may not name them. */
export const RESERVED_HEADERS: readonly string[] = ['x-tenant-id', 'x-event-id', 'x-entity-ref-id', 'list-unsubscribe', 'list-unsubscribe-post'];

/**
 * A dead letter as the store keeps it (intake/deadLetter.ts parses one from the broker's request;
 * db/deadLetters.ts stores it): the event as the broker sent it and the broker's error decoded.
 */
export interface DeadLetter {
  tenantId: string;
  eventSource: string;
  eventId: string;
  eventType: string | null;
  contentType: string | null;
  /** CloudEvent attributes without the knativeerror* extensions. */
  attributes: Record<string, string>;
  body: Buffer;
  bodyTruncated: boolean;
  httpStatus: number | null;
  errorDest: string | null;
  errorData: string | null;
  /** Our registry code, when the answer was one of ours ({"code": …}). */
  errorCode: string | null;
}
