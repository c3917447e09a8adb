import { z } from 'zod';
import { oneLine } from '../core/text';
import { ENDPOINT_OVERRIDE_SETTING, PROVIDERS, type ProviderName, RESERVED_HEADERS } from '../types';
import { destinationHost, refusalReason, type Egress } from '../net/egress';
import type { FieldIssue } from '../errors';
import { EMAIL_ADDRESS } from '../core/emailAddress';

/**
 * The body of `PUT .../email-settings` and of `tenant-email settings put` (DESIGN §6).
 * `api_key` is write-only. On an update it may be left out to keep the stored key, as long as the
 * provider stays the same.
 */

const ONE_LINE = 'must be one line of printable characters (no CR, LF or other control characters)';
export const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;

export const emailAddress = z
  .string()
  .max(254)
  .refine(oneLine, ONE_LINE)
  .pipe(EMAIL_ADDRESS);

const secret = z.string().min(1, 'must not be empty').max(4096).refine(oneLine, ONE_LINE);

const providerSettings = z
  .record(z.string(), z.unknown())
  .refine((v) => JSON.stringify(v).length <= 16 * 1024, 'must be under 16 KB of JSON');

const providerName = z.enum(PROVIDERS, { message: `must be one of ${PROVIDERS.join(', ')}` });

/**
 * Extra headers a tenant may add to every email: `X-…` names (not the worker's own X-Tenant-ID,
 * X-Event-ID, X-Entity-Ref-ID) and a few informational ones. Nothing that routes or identifies
 * the message (From, To, Subject, Reply-To, Sender, Bcc, Message-ID, DKIM-Signature…) can be set;
 * values are one printable line.
 */
const ALLOWED_PLAIN_HEADERS = ['auto-submitted', 'precedence', 'organization'];
export const MAX_EXTRA_HEADERS = 10;
const headerName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/, 'must be a header name of letters, digits and dashes')
  .refine(
    (n) => (/^x-/i.test(n) || ALLOWED_PLAIN_HEADERS.includes(n.toLowerCase())) && !RESERVED_HEADERS.includes(n.toLowerCase()),
    `is not allowed: use an X-… name (not X-Tenant-ID, X-Event-ID or X-Entity-Ref-ID) or one of Auto-Submitted, Precedence, Organization`,
  );
const headerValue = z
  .string()
  .min(1, 'must not be empty')
  .max(200)
  .refine(oneLine, ONE_LINE);
export const extraHeadersSchema = z
  .record(z.string(), headerValue)
  .superRefine((headers, ctx) => {
    const names = Object.keys(headers);
    if (names.length > MAX_EXTRA_HEADERS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_EXTRA_HEADERS} headers` });
    const seen = new Set<string>();
    for (const n of names) {
      const r = headerName.safeParse(n);
      if (!r.success) ctx.addIssue({ code: 'custom', path: [n], message: r.error.issues[0]?.message ?? 'is not allowed' });
      if (seen.has(n.toLowerCase())) ctx.addIssue({ code: 'custom', path: [n], message: 'is given twice (header names are case-insensitive)' });
      seen.add(n.toLowerCase());
    }
  });

/** `List-Unsubscribe` target: an https URL (one-click, RFC 8058) or a mailto: address. */
const listUnsubscribe = z
  .string()
  .max(500)
  .refine(oneLine, ONE_LINE)
  .refine((v) => /^https:\/\/[^\s<>]+$/.test(v) || /^mailto:[^\s<>@]+@[^\s<>@]+$/.test(v), 'must be an https:// URL or a mailto: address');

export const settingsInputSchema = z
  .object({
    provider: providerName,
    api_key: secret.optional(),
    from_email: emailAddress.nullable().optional(),
    list_unsubscribe: listUnsubscribe.nullable().optional(),
    extra_headers: extraHeadersSchema.optional(),
    from_name: z.string().max(200).refine(oneLine, ONE_LINE).nullable().optional(),
    reply_to_domain: z.string().regex(HOSTNAME, 'must be a domain name such as replies.example.com').nullable().optional(),
    provider_settings: providerSettings.default({}),
    enabled: z.boolean().default(true),
    daily_limit: z.number().int().min(0).max(100_000_000).default(1000),
    fallback: z
      .object({ provider: providerName, api_key: secret.optional(), provider_settings: providerSettings.default({}) })
      .strict()
      .nullable()
      .optional(),
  })
  .strict();

export type SettingsInput = z.infer<typeof settingsInputSchema>;

const httpUrl = z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http(s) URL');
const plainText = (max: number) => z.string().min(1).max(max).refine(oneLine, ONE_LINE);

/**
 * provider_settings per provider (DESIGN §6). Strict: an unknown key is a typo until proven
 * otherwise. `base_url`/`endpoint` are endpoint overrides, refused unless the platform allows them.
 */
export const PROVIDER_SETTINGS: Record<ProviderName, z.ZodObject> = {
  sendgrid: z.strictObject({ base_url: httpUrl.optional() }),
  ses: z.strictObject({
    region: z.string({ message: 'must be an AWS region such as eu-west-1' }).regex(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, 'must be an AWS region such as eu-west-1'),
    access_key_id: z.string().regex(/^[A-Z0-9]{16,128}$/, 'must be an AWS access key id').optional(),
    configuration_set: plainText(64).optional(),
    tenant_name: plainText(64).optional(),
    endpoint: httpUrl.optional(),
  }),
  postmark: z.strictObject({ message_stream: plainText(64).optional(), base_url: httpUrl.optional() }),
  smtp: z.strictObject({
    host: z.string({ message: 'is required: the SMTP server host name' }).regex(/^[A-Za-z0-9.-]{1,253}$|^\[?[0-9a-fA-F:.]+\]?$/, 'must be a host name or IP address'),
    port: z.number().int().min(1).max(65535).optional(),
    secure: z.boolean().optional(),
    require_tls: z.boolean().optional(),
    username: plainText(256).optional(),
  }),
  resend: z.strictObject({ base_url: httpUrl.optional() }),
};

/**
 * Everything a settings save checks (admin API and CLI): the body itself, then where its hosts
 * resolve to. The DNS step runs only once the body is valid.
 */
export async function validateSettingsInput(
  body: unknown,
  opts: { allowProviderEndpointOverride: boolean; platformTier: boolean; egress: Egress },
): Promise<{ ok: true; value: SettingsInput } | { ok: false; issues: FieldIssue[] }> {
  const parsed = parseSettingsInput(body, opts);
  if (!parsed.ok) return parsed;
  const issues = await checkDestinations(parsed.value, opts.egress, opts);
  return issues.length > 0 ? { ok: false, issues } : parsed;
}

/**
 * The save-time half of the SSRF guard: every tenant-chosen destination (the SMTP host, an
 * endpoint override) is resolved and refused when an address is internal. A name that does not
 * resolve yet is accepted (the tenant may publish it later); the connect-time check covers it.
 */
async function checkDestinations(value: SettingsInput, egress: Egress, opts: { allowProviderEndpointOverride: boolean }): Promise<FieldIssue[]> {
  const issues: FieldIssue[] = [];
  const accounts: Array<[string, ProviderName, Record<string, unknown>]> = [['', value.provider, value.provider_settings]];
  if (value.fallback) accounts.push(['fallback.', value.fallback.provider, value.fallback.provider_settings]);
  for (const [prefix, provider, settings] of accounts) {
    // Where this account makes the worker connect, when the tenant chooses it.
    const k = provider === 'smtp' ? 'host' : opts.allowProviderEndpointOverride ? ENDPOINT_OVERRIDE_SETTING[provider] : null;
    const raw = k === null ? undefined : settings[k];
    const host = typeof raw === 'string' ? destinationHost(raw) : undefined;
    if (host === undefined) continue;
    try {
      await egress.check(host);
    } catch (err) {
      if (refusalReason(err) === 'internal') {
        issues.push({ path: `${prefix}provider_settings.${k}`, message: 'resolves to a loopback, private, link-local or metadata address, which this platform does not allow (SMTP_ALLOWED_HOSTS, ALLOW_PRIVATE_SMTP_HOSTS)' });
      }
    }
  }
  return issues;
}

/** Whether the provider needs a stored secret with these settings (SES without a key id uses IRSA). */
export function needsApiKey(provider: ProviderName, settings: Record<string, unknown>): boolean {
  if (provider === 'ses') return typeof settings.access_key_id === 'string';
  if (provider === 'smtp') return typeof settings.username === 'string';
  return true;
}

/** Parse and check a settings body. Returns the field-level issues, never echoing a value. */
export function parseSettingsInput(
  body: unknown,
  opts: { allowProviderEndpointOverride: boolean; platformTier: boolean },
): { ok: true; value: SettingsInput } | { ok: false; issues: FieldIssue[] } {
  const parsed = settingsInputSchema.safeParse(body);
  if (!parsed.success) return { ok: false, issues: toIssues(parsed.error.issues, '') };
  const v = parsed.data;
  const issues: FieldIssue[] = [];
  if (!v.from_email && !opts.platformTier) {
    issues.push({ path: 'from_email', message: 'is required: this platform has no platform sender tier (EMAIL_TENANT_FROM_PATTERN)' });
  }
  const checkAccount = (prefix: string, provider: ProviderName, settings: Record<string, unknown>, apiKey: string | undefined) => {
    const ps = PROVIDER_SETTINGS[provider].safeParse(settings);
    if (!ps.success) issues.push(...toIssues(ps.error.issues, `${prefix}provider_settings.`));
    const override = ENDPOINT_OVERRIDE_SETTING[provider];
    if (override !== null && settings[override] !== undefined && !opts.allowProviderEndpointOverride) {
      issues.push({ path: `${prefix}provider_settings.${override}`, message: 'endpoint overrides are disabled on this platform (ALLOW_PROVIDER_ENDPOINT_OVERRIDE)' });
    }
    if (apiKey !== undefined && !needsApiKey(provider, settings)) {
      issues.push({
        path: `${prefix}api_key`,
        message: provider === 'ses' ? 'is the SES secret access key: set provider_settings.access_key_id too (or leave both out to use the default credential chain)' : 'is the SMTP password: set provider_settings.username too',
      });
    }
  };
  checkAccount('', v.provider, v.provider_settings, v.api_key);
  if (v.fallback) checkAccount('fallback.', v.fallback.provider, v.fallback.provider_settings, v.fallback.api_key);
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: v };
}

export function toIssues(list: ReadonlyArray<{ path: PropertyKey[]; message: string }>, prefix = ''): FieldIssue[] {
  // zod's messages describe the rule, not the value; unrecognized keys name the key only.
  return list.map((i) => ({ path: `${prefix}${i.path.map(String).join('.')}` || '(body)', message: i.message }));
}

/**
 * A non-secret hint for a key: a short vendor prefix (`SG.`, `re_`) and the last 4 characters,
 * and nothing at all for keys too short to spare them.
 */
export function keyHint(key: string): string {
  if (key.length < 16) return '…';
  const prefix = /^[A-Za-z]{1,3}[._]/.exec(key)?.[0] ?? '';
  return `${prefix}…${key.slice(-4)}`;
}
