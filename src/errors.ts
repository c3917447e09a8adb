/**
 * The one error registry. Every answer the worker gives that is not a plain 2xx comes from here:
 * a stable code, the HTTP status Knative reacts to, whether a redelivery can help, and one line
 * that says what happened. README.md lists the same table (a test keeps them in step).
 *
 * Knative retries no response, 5xx, 404, 408, 409 and 429; any other non-2xx goes to the dead
 * letter sink at once. `retryable` is derived from the status by that rule, so the two cannot disagree.
 */
export interface ErrorSpec {
  readonly status: number;
  readonly description: string;
}

/** Knative's delivery rule: these statuses are retried, every other non-2xx is dead-lettered. */
export function knativeRetries(status: number): boolean {
  return status >= 500 || status === 404 || status === 408 || status === 409 || status === 429;
}

export const ERRORS = {
  // --- the event itself (never retried: a redelivery would be the same bytes) ---
  invalid_event: { status: 400, description: 'The request is not a valid CloudEvent 1.0 (a required attribute is missing or malformed).' },
  missing_event_id: { status: 400, description: 'A structured-mode event has no "id"; the worker will not invent one, because the id is the idempotency key.' },
  unsupported_media_type: { status: 415, description: 'The content type is not JSON (binary mode) or application/cloudevents+json (structured mode).' },
  batch_not_supported: { status: 415, description: 'Batched CloudEvents (application/cloudevents-batch+json) are not accepted; send one event per request.' },
  body_too_large: { status: 413, description: 'The request body is larger than BODY_LIMIT_BYTES.' },
  invalid_json: { status: 400, description: 'The body or the event data is not valid JSON.' },
  invalid_data: { status: 400, description: 'The event data does not match the schema (task_id required, notify_email one valid address, field types).' },
  unsupported_event_type: { status: 400, description: 'The event type is not one of EVENT_TYPES.' },
  invalid_tenant_id: { status: 400, description: 'The tenant id is not 1-128 characters of [A-Za-z0-9._:-].' },
  tenant_mismatch: { status: 400, description: 'The ce-tenant attribute and data.tenant_id are both present and differ.' },

  // --- the tenant (dead-lettered; replay once fixed) ---
  unknown_tenant: { status: 422, description: 'The tenant has no email settings and no global configuration is set to fall back to.' },
  sender_not_configured: { status: 422, description: 'The tenant has no from_email and EMAIL_TENANT_FROM_PATTERN is not set (or gives no valid address for this tenant).' },
  sender_domain_unverified: { status: 422, description: "The from_email's domain is not verified at the sending provider (…/email-domains) and there is no platform tier (EMAIL_TENANT_FROM_PATTERN) to send from instead." },
  quota_exceeded: { status: 422, description: "The tenant's daily limit is used up; the event lands in the dead letter sink and can be replayed after midnight UTC." },
  tenant_paused: { status: 422, description: "The reputation guard paused the tenant (its complaint or hard-bounce rate passed the threshold, DESIGN §9); nothing was sent. The event lands in the dead letter sink and can be replayed after POST …/tenants/{t}/resume." },

  // --- concurrency ---
  event_in_flight: { status: 409, description: 'The same event is being sent by another request right now; Knative retries later and finds it done.' },
  claim_lease_expiring: { status: 503, description: "Nothing was sent: a provider call started now could outlast the event's claim (CLAIM_LEASE_SECONDS minus PROVIDER_TIMEOUT_MS and a 2 s margin had passed since the claim, e.g. on a stalled machine). A redelivery sends it." },

  // --- the provider ---
  provider_rate_limited: { status: 429, description: 'The provider asked to slow down (HTTP 429); Retry-After says when to come back.' },
  provider_auth_failed: { status: 422, description: "The provider rejected the tenant's credentials (401)." },
  provider_forbidden: { status: 422, description: "The provider refused the request for this account (403: unverified sender, missing scope, suspended account)." },
  provider_rejected: { status: 422, description: 'The provider rejected the message itself (400: sender, recipient or content), or answered with a redirect, which is not followed.' },
  provider_payload_too_large: { status: 422, description: 'The provider rejected the message as too large (413).' },
  provider_unavailable: { status: 503, description: 'The provider answered with a server error (5xx) or is in maintenance.' },
  provider_deferred: { status: 503, description: 'The SMTP server deferred the message (4xx reply); Retry-After suggests when to try again.' },
  provider_timeout: { status: 503, description: 'The provider did not answer within PROVIDER_TIMEOUT_MS.' },
  provider_disabled: { status: 503, description: "Ops took the tenant's provider out of service (the outage switch: PROVIDERS_DISABLED or `tenant-email providers disable`) and the tenant has no fallback provider in service; nothing was sent. The broker retries; the event is sent once the provider is back or a fallback is set." },
  provider_network: { status: 503, description: 'The provider could not be reached (connection refused, reset, DNS).' },
  destination_forbidden: { status: 422, description: "The tenant's SMTP host or endpoint override resolves to a loopback, private, link-local or metadata address, which this platform does not allow (SMTP_ALLOWED_HOSTS, ALLOW_PRIVATE_SMTP_HOSTS)." },

  // --- the platform ---
  database_unavailable: { status: 503, description: 'PostgreSQL could not be reached or the query timed out.' },
  settings_undecryptable: { status: 503, description: "The tenant's credentials were encrypted with a key this worker does not hold (set DB_ENCRYPTION_KEY_PREVIOUS during rotation)." },
  overloaded: { status: 503, description: 'MAX_IN_FLIGHT_EVENTS events are already being handled by this instance; the broker retries (Retry-After: 1).' },
  shutting_down: { status: 503, description: 'The worker is draining after SIGTERM; the broker retries on another instance.' },
  internal_error: { status: 500, description: 'An unexpected error; the details are in the worker log under the same request.' },

  // --- the admin API (/api/v1/admin) ---
  unauthorized: { status: 401, description: 'Admin API: no bearer token, or one that is malformed, badly signed, expired or for another issuer/audience.' },
  too_many_auth_failures: { status: 429, description: 'Admin API: this client failed authentication ADMIN_AUTH_FAILURE_LIMIT times within a minute; Retry-After says when it may try again.' },
  forbidden: { status: 403, description: 'Admin API: the token is valid but its role may not act on this tenant (tenant_admin acts only on its own tenant).' },
  invalid_request: { status: 400, description: 'Admin API: the body or a parameter is invalid; `issues` lists each field and what is wrong.' },
  settings_not_found: { status: 404, description: 'Admin API: the tenant has no email settings.' },
  tenant_not_found: { status: 404, description: "Admin API: the tenant has no row in the platform's tenants table." },
  template_not_found: { status: 404, description: 'Admin API: the tenant has no template for this event type.' },
  domain_not_found: { status: 404, description: 'Admin API: the tenant has not registered this sender domain.' },
  domain_api_unsupported: { status: 422, description: "Admin API: the tenant's provider has no domain API (SMTP). An SMTP relay decides itself which senders it accepts, so the worker sends an SMTP tenant's from_email as given." },
  template_render_failed: { status: 422, description: 'Admin API (preview): the template compiled but failed on this data (the worker would send the built-in template instead and record builtin_fallback).' },
  account_token_required: { status: 400, description: 'Admin API: Postmark manages domains with an account token (not the server token); send it as account_token. It is used for this request only and never stored.' },
  webhook_not_configured: { status: 404, description: 'Admin API: the tenant has no webhook set up for this provider (PUT …/email-webhooks/{provider}).' },
  suppression_not_found: { status: 404, description: "Admin API: the address is not on the tenant's suppression list." },
  broker_url_required: { status: 422, description: "Admin API: BROKER_URL (the broker's ingress) is not set, so there is nowhere to replay dead letters to." },
  public_base_url_required: { status: 422, description: 'Admin API: PUBLIC_BASE_URL is not set, so there is no public URL to register at the provider.' },
  webhook_registration_unsupported: { status: 422, description: "Admin API: this provider's webhooks cannot be registered through its API with the tenant's credentials (SES publishes through SNS: subscribe the URL to the topic; SMTP has no webhooks)." },

  // --- provider webhooks (/api/v1/webhooks) and unsubscribe (/api/v1/unsubscribe) ---
  webhook_unauthorized: { status: 401, description: 'Webhook: the signature, timestamp or credentials do not verify for this tenant (or the tenant has no webhook set up for this provider). Nothing was written.' },
  webhook_forbidden: { status: 403, description: "Webhook: the SNS message is signed but its TopicArn is not one the tenant registered. Nothing was written." },
  webhook_invalid_payload: { status: 400, description: 'Webhook: the verified body is not the JSON this provider sends. Nothing was written.' },
  unsubscribe_invalid_token: { status: 400, description: 'Unsubscribe: the link is not one this platform signed (altered, truncated or forged).' },
  api_key_required: { status: 400, description: 'Admin API: api_key is required when settings are created or the provider changes.' },

  // --- plain HTTP ---
  not_found: { status: 404, description: 'No such route. (Events are POSTed to /.)' },
  method_not_allowed: { status: 405, description: 'Only POST is accepted on /.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * An error the worker answers with. The message is written by us and is safe to show; nothing
 * from a provider SDK or the database is ever attached (SDK errors carry request headers, and
 * with them the tenant's API key), so `cause` is deliberately not supported.
 */
/** What an error said, safe for a log line: its name, code and (when trusted) message. */
export interface ErrorDetail {
  name?: string;
  code?: string;
  message?: string;
}

/** One thing wrong with a request body, by where it is: what `invalid_request` answers list. */
export interface FieldIssue {
  path: string;
  message: string;
  /** Templates: where in the part the problem is (1-based line and column). */
  line?: number;
  column?: number;
}

export class WorkerError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly retryAfterSeconds: number | undefined;
  /** For the log only, never an answer: what the error this one stands for said (name, code, message). */
  readonly detail: ErrorDetail | undefined;
  /** Each field that is wrong (the admin API answers them as `issues`). */
  readonly issues: readonly FieldIssue[] | undefined;

  constructor(code: ErrorCode, message?: string, opts: { retryAfterSeconds?: number; detail?: ErrorDetail; issues?: readonly FieldIssue[] } = {}) {
    super(message ?? ERRORS[code].description);
    this.name = 'WorkerError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = knativeRetries(this.status);
    this.retryAfterSeconds = opts.retryAfterSeconds;
    this.detail = opts.detail;
    this.issues = opts.issues;
  }
}

/** `400 invalid_request` listing each field that is wrong; the message sums them up. */
export function invalidRequest(issues: readonly FieldIssue[]): WorkerError {
  return new WorkerError('invalid_request', issues.map((i) => `${i.path}${i.line ? ` (line ${i.line})` : ''}: ${i.message}`).join('; ').slice(0, 300), { issues });
}

/**
 * Misuse at start-up or on the command line: a bad setting or argument, an unsafe database role,
 * a database that does not answer, a port in use. Never an HTTP answer: the process prints the
 * message (ours, with no secret in it) and exits 1. Everything an HTTP caller can see is a
 * WorkerError with a registry code; these two are the only error shapes.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function isWorkerError(err: unknown): err is WorkerError {
  return err instanceof WorkerError;
}

/** The JSON body of an error answer. Kept short: Knative copies ~1 KB of it into the DLS event. */
export function errorBody(err: WorkerError): { code: ErrorCode; message: string } {
  const message = err.message.length > 400 ? `${err.message.slice(0, 397)}...` : err.message;
  return { code: err.code, message };
}

/**
 * What went wrong reading a request body, from body-parser's error (the worker and the admin API
 * each turn it into their own registry code): too large, an unsupported encoding or charset,
 * cut short, not JSON, or any other of its own 4xx (a corrupt gzip body, say). null: not a
 * body-parser client error, so a 500.
 */
type BodyErrorKind = 'too_large' | 'unsupported' | 'incomplete' | 'not_json' | 'undecodable';

/**
 * The answer to a request whose body could not be read, or null when `err` is not body-parser's
 * (a bug: the caller answers 500). One table for both surfaces: events answer in the event's
 * codes (invalid_event), the admin API in its own (invalid_request, naming the body).
 */
export function bodyReadError(err: unknown, surface: 'event' | 'admin', limit: string): WorkerError | null {
  const kind = bodyErrorKind(err);
  if (kind === null) return null;
  if (kind === 'too_large') return new WorkerError('body_too_large', surface === 'event' ? `the body exceeds ${limit}` : `the body is larger than ${limit}`);
  if (kind === 'unsupported') return new WorkerError('unsupported_media_type', 'unsupported content encoding or charset');
  if (surface === 'admin') {
    const what = { not_json: 'is not valid JSON', incomplete: 'was incomplete', undecodable: 'could not be decoded (body encoding or URL escapes)' }[kind];
    return invalidRequest([{ path: '(body)', message: what }]);
  }
  return new WorkerError('invalid_event', kind === 'incomplete' ? 'the request body was incomplete' : 'the request could not be decoded (body encoding or URL escapes)');
}

function bodyErrorKind(err: unknown): BodyErrorKind | null {
  const e = (err ?? {}) as { type?: unknown; status?: unknown };
  if (e.type === 'entity.too.large') return 'too_large';
  if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return 'unsupported';
  if (e.type === 'request.aborted' || e.type === 'request.size.invalid') return 'incomplete';
  if (e.type === 'entity.parse.failed') return 'not_json';
  return typeof e.status === 'number' && e.status >= 400 && e.status < 500 ? 'undecodable' : null;
}
