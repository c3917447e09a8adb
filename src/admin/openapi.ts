import { z } from 'zod';
import { ERRORS } from '../errors';
import { PROVIDER_SETTINGS, settingsInputSchema } from '../settings/input';
import { PROVIDERS } from '../types';
import { DOMAIN_STATUSES } from '../types';
import { SUPPRESSION_REASONS } from '../db/feedback';
import { suppressionBody, suppressionQuery, thresholdsBody, webhookBodies } from './feedbackRoutes';
import { deadLetterQuery, deadLetterReplayBody } from './deadLetterRoutes';
import { EVENT_TYPE_PATTERN, daysQuery, domainBody, domainVerifyBody, previewBody, templateBody, testEmailBody } from '../settings/schemas';

/**
 * The OpenAPI 3.1 document of the admin API, built from the same zod schemas that validate the
 * requests, so the two cannot drift. Served at /api/v1/admin/openapi.json and kept in
 * docs/openapi.json (`npm run docs:openapi`; a test fails when the copy is stale).
 */

const json = (schema: z.ZodType) => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
};

const maskedAccount = z.object({
  provider: z.enum(PROVIDERS),
  api_key_set: z.boolean(),
  api_key_masked: z.string().nullable().describe('vendor prefix and last 4 characters at most, e.g. SG.…wxyz'),
  provider_settings: z.record(z.string(), z.unknown()),
});
const maskedSettings = maskedAccount.extend({
  tenant_id: z.string(),
  platform_paid: z.boolean().describe('the platform provisioned and pays for this account (tenant-email sendgrid provision): the from_email domain must be verified before it is sent from'),
  from_email: z.string().nullable().describe('null: the platform tier (EMAIL_TENANT_FROM_PATTERN) is the sender'),
  from_name: z.string().nullable(),
  reply_to_domain: z.string().nullable(),
  enabled: z.boolean(),
  daily_limit: z.number().int(),
  list_unsubscribe: z.string().nullable(),
  extra_headers: z.record(z.string(), z.string()),
  fallback: maskedAccount.nullable(),
  key_id: z.string().describe('fingerprint of the encryption key of this row'),
  version: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});
const int = () => z.number().int();
const counts = {
  sent: int(), failed: int(), skipped: int(), quota_exceeded: int(), in_flight: int(), duplicates: int(),
  suppressed: int().describe('not sent: the recipient is on the suppression list'),
  paused: int().describe('not sent: the reputation guard had paused the tenant'),
  delivered: int(), deferred: int(), bounced: int(), bounced_hard: int(), bounced_soft: int(), complained: int(), unsubscribed: int(), dropped: int(),
  rates: z.object({ delivered: z.number(), bounced: z.number(), complained: z.number(), unsubscribed: z.number() }).describe('fractions of sent'),
};
const stats = z.object({
  tenant_id: z.string(),
  days: z.number().int(),
  today: z.object({ day: z.string(), used: z.number().int(), daily_limit: z.number().int().nullable() }),
  by_day: z.array(z.object({ day: z.string(), ...counts })),
  by_provider: z.record(z.string(), z.object({ sent: z.number().int(), failed: z.number().int() })),
  totals: z.object(counts),
});
const verifyResult = z.object({ provider: z.string(), ok: z.boolean(), code: z.string().optional(), message: z.string().optional() });
const error = z.object({
  code: z.enum(Object.keys(ERRORS) as [string, ...string[]]),
  message: z.string(),
  issues: z.array(z.object({ path: z.string(), message: z.string(), line: z.number().int().optional(), column: z.number().int().optional() })).optional(),
});

const webhookProviders = z.enum(['sendgrid', 'ses', 'postmark', 'resend']);
const maskedWebhook = z.object({
  provider: webhookProviders,
  public_key: z.string().nullable(),
  signing_secret_set: z.boolean(),
  signing_secret_hint: z.string().nullable(),
  topic_arns: z.array(z.string()),
  basic_username: z.string().nullable(),
  basic_password_set: z.boolean(),
  provider_webhook_id: z.string().nullable(),
  registered_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  webhook_url: z.string().describe('where the provider must POST its events (PUBLIC_BASE_URL + path; the path alone when PUBLIC_BASE_URL is not set)'),
  public_base_url_set: z.boolean(),
  basic_auth: z.object({ username: z.string(), password: z.string(), note: z.string() }).optional().describe('Postmark only, in the answer to PUT: shown once'),
  webhook_url_with_credentials: z.string().optional().describe('Postmark only, in the answer to PUT: the URL to paste into Postmark'),
});
const suppression = z.object({
  address: z.string(),
  reason: z.enum(SUPPRESSION_REASONS),
  source: z.enum(['webhook', 'unsubscribe', 'admin']),
  provider: z.string().nullable(),
  detail: z.string().nullable(),
  created_by: z.string().nullable(),
  created_at: z.string(),
});
const reputation = z.object({
  paused: z.boolean(),
  paused_at: z.string().nullable(),
  paused_reason: z.enum(['complaint_rate', 'bounce_rate']).nullable(),
  paused_detail: z.record(z.string(), z.unknown()).nullable(),
  complaint_threshold: z.number().describe("in force: the tenant's own when lower than the platform's"),
  bounce_threshold: z.number(),
  resumed_at: z.string().nullable(),
  resumed_by: z.string().nullable(),
});

const deadLetter = z.object({
  tenant_id: z.string(), event_source: z.string(), event_id: z.string(), event_type: z.string().nullable(),
  http_status: z.number().int().nullable().describe('what the worker answered the broker (knativeerrorcode)'),
  error_code: z.string().nullable().describe('its error code, when the answer was the worker\'s'),
  error_data: z.string().nullable(), error_dest: z.string().nullable(),
  dead_lettered: z.number().int(), first_received_at: z.string(), received_at: z.string(),
  replays: z.number().int(), replayed_at: z.string().nullable(), replay_status: z.number().int().nullable(), body_truncated: z.boolean(),
});
const replayReport = z.object({
  target: z.string(), dry_run: z.boolean(), selected: z.number().int(), replayed: z.number().int(),
  answers: z.record(z.string(), z.number().int()),
  events: z.array(z.object({ tenant_id: z.string(), event_source: z.string(), event_id: z.string(), error_code: z.string().nullable(), status: z.number().int().nullable() })),
});

const storedTemplate = z.object({
  tenant_id: z.string(),
  event_type: z.string(),
  subject: z.string().nullable(),
  html: z.string().nullable(),
  text: z.string().nullable(),
  version: z.number().int().describe('new on every save; the worker caches compiled templates by it'),
  created_at: z.string(),
  updated_at: z.string(),
});
const preview = z.object({
  template: z.enum(['body', 'tenant', 'builtin']).describe('which template was rendered'),
  version: z.number().int().nullable(),
  subject: z.string(),
  html: z.string(),
  text: z.string(),
  from: z
    .union([
      z.object({ email: z.string(), name: z.string().nullable(), tier: z.enum(['platform', 'custom']), note: z.string().nullable() }),
      z.object({ error: z.string(), message: z.string() }),
    ])
    .nullable()
    .describe('who the email would be from now (null: the tenant has no settings)'),
});
const dnsRecord = z.object({ type: z.string(), name: z.string(), value: z.string(), priority: z.number().int().optional(), status: z.string().optional() });
const storedDomain = z.object({
  domain: z.string(),
  provider: z.enum(PROVIDERS),
  provider_domain_id: z.string(),
  status: z.enum(DOMAIN_STATUSES),
  dns_records: z.array(dnsRecord).describe('publish these in DNS, then POST …/verify'),
  verified_at: z.string().nullable(),
  checked_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});

export function buildOpenApi(version: string): Record<string, unknown> {
  const ok = (description: string, schema?: z.ZodType) => ({ description, ...(schema ? { content: { 'application/json': { schema: json(schema) } } } : {}) });
  const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
  const common = { '401': err('unauthorized'), '403': err('forbidden'), '400': err('invalid_request') };
  const tenantParam = { name: 'tenant_id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } };
  const eventTypeParam = { name: 'event_type', in: 'path', required: true, schema: { type: 'string', pattern: EVENT_TYPE_PATTERN.source } };
  const domainParam = { name: 'domain', in: 'path', required: true, schema: { type: 'string', examples: ['mail.example.com'] } };
  return {
    openapi: '3.1.0',
    info: {
      title: 'tenant-email-worker admin API',
      version,
      description: 'Per-tenant email settings, templates, sender domains, verification, test sends, stats, and delivery feedback (webhook set-up, suppression list, reputation guard). api_key, account_token and webhook secrets are write-only. The provider webhooks and the unsubscribe links are served beside it under /api/v1 (their own servers entry).',
    },
    servers: [{ url: '/api/v1/admin' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A JWT (role, tenant_id claims) or an admin API key tew_<prefix>_<secret>' } },
      schemas: {
        SettingsInput: json(settingsInputSchema),
        Settings: json(maskedSettings),
        Error: json(error),
        ...Object.fromEntries(Object.entries(PROVIDER_SETTINGS).map(([p, s]) => [`ProviderSettings_${p}`, json(s)])),
      },
    },
    paths: {
      '/tenants/{tenant_id}/email-settings': {
        parameters: [tenantParam],
        put: {
          summary: 'Create or replace the settings (api_key may be left out to keep the stored one, same provider)',
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/SettingsInput' } } } },
          responses: { '200': ok('replaced', maskedSettings), '201': ok('created', maskedSettings), ...common, '404': err('tenant_not_found') },
        },
        get: { summary: 'Read the settings, key masked', responses: { '200': ok('the settings', maskedSettings), ...common, '404': err('settings_not_found') } },
        delete: { summary: 'Delete the settings', responses: { '204': ok('deleted'), ...common, '404': err('settings_not_found') } },
      },
      '/tenants/{tenant_id}/email-settings/verify': {
        parameters: [tenantParam],
        post: { summary: 'Check the credentials with the provider, sending nothing', responses: { '200': ok('result per account', z.object({ ok: z.boolean(), primary: verifyResult, fallback: verifyResult.nullable() })), ...common } },
      },
      '/tenants/{tenant_id}/email-settings/test': {
        parameters: [tenantParam],
        post: {
          summary: 'Send a test email (counts against the daily quota)',
          requestBody: { required: true, content: { 'application/json': { schema: json(testEmailBody) } } },
          responses: { '200': ok('sent or skipped', z.object({ sent: z.boolean(), event_id: z.string(), provider: z.string().optional(), message_id: z.string().nullable().optional() })), ...common, '422': err('provider or quota rejection'), '503': err('provider or database unavailable') },
        },
      },
      '/tenants/{tenant_id}/email-templates': {
        parameters: [tenantParam],
        get: { summary: "List the tenant's templates", responses: { '200': ok('templates', z.object({ templates: z.array(storedTemplate.pick({ event_type: true, version: true, updated_at: true })) })), ...common } },
      },
      '/tenants/{tenant_id}/email-templates/{event_type}': {
        parameters: [tenantParam, eventTypeParam],
        put: {
          summary: 'Create or replace the template of an event type (Handlebars; parts left out use the built-in ones). A template that does not compile is refused with the line and reason.',
          requestBody: { required: true, content: { 'application/json': { schema: json(templateBody) } } },
          responses: { '200': ok('replaced', storedTemplate), '201': ok('created', storedTemplate), ...common },
        },
        get: { summary: 'Read the template', responses: { '200': ok('the template', storedTemplate), ...common, '404': err('template_not_found') } },
        delete: { summary: 'Delete the template (the built-in one is used again)', responses: { '204': ok('deleted'), ...common, '404': err('template_not_found') } },
      },
      '/tenants/{tenant_id}/email-templates/{event_type}/preview': {
        parameters: [tenantParam, eventTypeParam],
        post: {
          summary: 'Render the saved (or the given) template with sample (or the given) event data; sends nothing. Accept: text/html answers the HTML part alone, sandboxed by CSP.',
          requestBody: { required: false, content: { 'application/json': { schema: json(previewBody) } } },
          responses: {
            '200': { description: 'the rendered parts', content: { 'application/json': { schema: json(preview) }, 'text/html': { schema: { type: 'string' } } } },
            ...common,
            '422': err('template_render_failed'),
          },
        },
      },
      '/tenants/{tenant_id}/email-domains': {
        parameters: [tenantParam],
        get: { summary: "List the tenant's sender domains and their status", responses: { '200': ok('domains', z.object({ domains: z.array(storedDomain) })), ...common } },
        post: {
          summary: "Register a sender domain with the tenant's provider; answers the DNS records to publish",
          requestBody: { required: true, content: { 'application/json': { schema: json(domainBody) } } },
          responses: {
            '200': ok('already registered; state refreshed', storedDomain),
            '201': ok('registered', storedDomain),
            ...common,
            '404': err('settings_not_found'),
            '422': err('domain_api_unsupported or a provider rejection'),
            '503': err('provider unavailable'),
          },
        },
      },
      '/tenants/{tenant_id}/email-domains/{domain}': {
        parameters: [tenantParam, domainParam],
        get: { summary: 'Read one sender domain', responses: { '200': ok('the domain', storedDomain), ...common, '404': err('domain_not_found') } },
        delete: { summary: 'Forget a sender domain here (the provider keeps its own record); the tenant sends on the platform tier until it is registered again', responses: { '204': ok('deleted'), ...common, '404': err('domain_not_found') } },
      },
      '/tenants/{tenant_id}/email-domains/{domain}/verify': {
        parameters: [tenantParam, domainParam],
        post: {
          summary: 'Ask the provider whether the DNS records are in place and store the status; the worker sends from the domain once it is verified',
          requestBody: { required: false, content: { 'application/json': { schema: json(domainVerifyBody) } } },
          responses: { '200': ok('the domain with its new status', storedDomain), ...common, '404': err('domain_not_found'), '422': err('provider rejection'), '503': err('provider unavailable') },
        },
      },
      '/tenants/{tenant_id}/email-webhooks/{provider}': {
        parameters: [tenantParam, { name: 'provider', in: 'path', required: true, schema: json(webhookProviders) }],
        put: {
          summary: "Store the webhook's verification material: SendGrid public_key, SES topic_arns, Resend signing_secret (encrypted, never returned); for Postmark the worker generates basic-auth credentials and shows them once",
          requestBody: { required: true, content: { 'application/json': { schema: { oneOf: Object.values(webhookBodies).map((b) => json(b)) } } } },
          responses: { '200': ok('replaced', maskedWebhook), '201': ok('created', maskedWebhook), ...common },
        },
        get: { summary: 'Read the webhook set-up, secrets masked', responses: { '200': ok('the set-up', maskedWebhook), ...common, '404': err('webhook_not_configured') } },
        delete: { summary: 'Forget the set-up: the provider\'s requests are refused (401) from now on', responses: { '204': ok('deleted'), ...common, '404': err('webhook_not_configured') } },
      },
      '/tenants/{tenant_id}/email-webhooks/{provider}/register': {
        parameters: [tenantParam, { name: 'provider', in: 'path', required: true, schema: json(webhookProviders) }],
        post: {
          summary: "Register the delivery webhook at the provider with the tenant's own credentials (SendGrid: the Event Webhook with signing on, storing its verification key; Postmark: a server webhook with generated basic auth; Resend: a webhook, storing its signing secret). Registering again updates the same webhook. Needs PUBLIC_BASE_URL.",
          responses: {
            '200': ok('registered', maskedWebhook.extend({ events: z.array(z.string()).describe('the provider event types subscribed') })),
            ...common,
            '404': err('settings_not_found'),
            '422': err('public_base_url_required, webhook_registration_unsupported (SES, SMTP) or a provider rejection'),
            '503': err('provider unavailable'),
          },
        },
      },
      '/tenants/{tenant_id}/suppressions': {
        parameters: [tenantParam, ...Object.keys(suppressionQuery.shape).map((name) => ({ name, in: 'query', required: false, schema: json(suppressionQuery.shape[name as keyof typeof suppressionQuery.shape]) }))],
        get: { summary: 'One page of the suppression list in address order; pass next_cursor as cursor for the next', responses: { '200': ok('a page', z.object({ items: z.array(suppression), next_cursor: z.string().nullable() })), ...common } },
      },
      '/tenants/{tenant_id}/suppressions/{address}': {
        parameters: [tenantParam, { name: 'address', in: 'path', required: true, schema: { type: 'string', format: 'email' } }],
        get: { summary: 'Whether an address is suppressed, and why', responses: { '200': ok('the entry', suppression), ...common, '404': err('suppression_not_found') } },
        put: {
          summary: 'Suppress an address by hand (reason manual); who did it is taken from the token',
          requestBody: { required: false, content: { 'application/json': { schema: json(suppressionBody) } } },
          responses: { '200': ok('already suppressed (first reason kept)', suppression), '201': ok('added', suppression), ...common },
        },
        delete: {
          summary: 'Remove an address (it is mailed again); ?note= says why, recorded with who',
          parameters: [{ name: 'note', in: 'query', required: false, schema: { type: 'string', maxLength: 500 } }],
          responses: { '204': ok('removed'), ...common, '404': err('suppression_not_found') },
        },
      },
      '/tenants/{tenant_id}/reputation': {
        parameters: [tenantParam],
        get: { summary: "The reputation guard's state and the thresholds in force", responses: { '200': ok('state', reputation), ...common } },
        put: {
          summary: "The tenant's own thresholds (fractions); they may only be lower than the platform's. null: the platform's",
          requestBody: { required: true, content: { 'application/json': { schema: json(thresholdsBody) } } },
          responses: { '200': ok('state', reputation), ...common },
        },
      },
      '/tenants/{tenant_id}/resume': {
        parameters: [tenantParam],
        post: { summary: 'Lift the reputation guard\'s pause; replay the tenant_paused dead letters afterwards. The rolling window restarts on this day.', responses: { '200': ok('state', reputation.extend({ resumed: z.boolean() })), ...common } },
      },
      '/tenants/{tenant_id}/dead-letters': {
        parameters: [tenantParam, ...Object.keys(deadLetterQuery.shape).map((name) => ({ name, in: 'query', required: false, schema: json(deadLetterQuery.shape[name as keyof typeof deadLetterQuery.shape]) }))],
        get: { summary: "The tenant's dead letters (oldest first) and their counts by error code", responses: { '200': ok('dead letters', z.object({ items: z.array(deadLetter), counts: z.record(z.string(), z.number().int()), total: z.number().int() })), ...common } },
      },
      '/tenants/{tenant_id}/dead-letters/replay': {
        parameters: [tenantParam],
        post: {
          summary: "Send the matching dead letters again, each as it was received, to the broker's ingress (BROKER_URL); records each answer. The ledger makes a replay of an event already sent a 202 that sends nothing.",
          requestBody: { required: false, content: { 'application/json': { schema: json(deadLetterReplayBody) } } },
          responses: { '200': ok('what was replayed', replayReport), ...common, '422': err('broker_url_required') },
        },
      },
      '/webhooks/{provider}/{tenant_id}': {
        servers: [{ url: '/api/v1' }],
        parameters: [{ name: 'provider', in: 'path', required: true, schema: json(webhookProviders) }, tenantParam],
        post: {
          summary: "A provider's delivery events (DESIGN §9). Authenticated by the provider's own scheme, not a bearer token: SendGrid ECDSA signature, SNS message signature and registered TopicArn, Postmark basic auth, Resend Svix signature. 200 only after the change is committed.",
          security: [],
          requestBody: { required: true, content: { 'application/json': { schema: {} }, 'text/plain': { schema: { type: 'string' } } } },
          responses: {
            '200': ok('applied', z.object({ received: int(), applied: int(), duplicates: int().optional(), unmatched: int().optional(), ignored: int().optional(), suppressed: int().optional() })),
            '400': err('webhook_invalid_payload'),
            '401': err('webhook_unauthorized'),
            '403': err('webhook_forbidden'),
            '503': err('database_unavailable (the provider retries)'),
          },
        },
      },
      '/unsubscribe/{token}': {
        servers: [{ url: '/api/v1' }],
        parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: 'A confirmation page with a button; changes nothing (mail scanners follow GET links)', security: [], responses: { '200': { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } }, '400': { description: 'unsubscribe_invalid_token (HTML page)' } } },
        post: {
          summary: 'RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click): the recipient is added to the tenant\'s suppression list',
          security: [],
          requestBody: { required: false, content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', properties: { 'List-Unsubscribe': { type: 'string', const: 'One-Click' } } } } } },
          responses: { '200': { description: 'unsubscribed (HTML page)' }, '400': { description: 'unsubscribe_invalid_token (HTML page)' }, '503': { description: 'database unavailable (HTML page)' } },
        },
      },
      '/tenants/{tenant_id}/email-stats': {
        parameters: [tenantParam, { name: 'days', in: 'query', required: false, schema: json(daysQuery) }],
        get: { summary: 'Deliveries per day, status and provider; today against the daily limit', responses: { '200': ok('stats', stats), ...common } },
      },
    },
  };
}
