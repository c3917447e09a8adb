import { z } from 'zod';
import { ERRORS } from '../errors';
import { PROVIDER_SETTINGS, settingsInputSchema } from '../settingsInput';
import { PROVIDERS } from '../types';
import { daysQuery, testEmailBody } from './schemas';

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
const counts = { sent: z.number().int(), failed: z.number().int(), skipped: z.number().int(), quota_exceeded: z.number().int(), in_flight: z.number().int(), duplicates: z.number().int() };
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
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

export function buildOpenApi(version: string): Record<string, unknown> {
  const ok = (description: string, schema?: z.ZodType) => ({ description, ...(schema ? { content: { 'application/json': { schema: json(schema) } } } : {}) });
  const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
  const common = { '401': err('unauthorized'), '403': err('forbidden'), '400': err('invalid_request') };
  const tenantParam = { name: 'tenant_id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } };
  return {
    openapi: '3.1.0',
    info: {
      title: 'tenant-email-worker admin API',
      version,
      description: 'Per-tenant email settings, verification, test sends and stats. api_key is write-only.',
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
      '/tenants/{tenant_id}/email-stats': {
        parameters: [tenantParam, { name: 'days', in: 'query', required: false, schema: json(daysQuery) }],
        get: { summary: 'Deliveries per day, status and provider; today against the daily limit', responses: { '200': ok('stats', stats), ...common } },
      },
    },
  };
}
