import { z } from 'zod';
import { IMPLEMENTED_PROVIDERS, PROVIDERS, type ProviderName } from './types';

/**
 * The body of `PUT .../email-settings` and of `tenant-email settings put` (DESIGN §6).
 * `api_key` is write-only. On an update it may be left out to keep the stored key, as long as the
 * provider stays the same.
 */

const noLineBreaks = (v: string) => !/[\r\n\0]/.test(v);
const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;

export const emailAddress = z
  .string()
  .max(254)
  .refine(noLineBreaks, 'must not contain line breaks')
  .pipe(z.email({ message: 'must be one email address' }));

const secret = z.string().min(1, 'must not be empty').max(4096).refine(noLineBreaks, 'must not contain line breaks');

const providerSettings = z
  .record(z.string(), z.unknown())
  .refine((v) => JSON.stringify(v).length <= 16 * 1024, 'must be under 16 KB of JSON');

const providerName = z.enum(PROVIDERS, { message: `must be one of ${PROVIDERS.join(', ')}` });

export const settingsInputSchema = z
  .object({
    provider: providerName,
    api_key: secret.optional(),
    from_email: emailAddress,
    from_name: z.string().max(200).refine(noLineBreaks, 'must not contain line breaks').nullable().optional(),
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

export interface FieldIssue {
  path: string;
  message: string;
}

const ENDPOINT_KEYS = ['base_url', 'endpoint'] as const;

/** Parse and check a settings body. Returns the field-level issues, never echoing a value. */
export function parseSettingsInput(
  body: unknown,
  opts: { allowProviderEndpointOverride: boolean },
): { ok: true; value: SettingsInput } | { ok: false; issues: FieldIssue[] } {
  const parsed = settingsInputSchema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      issues: parsed.error.issues.map((i) => ({
        path: i.path.join('.') || '(body)',
        // zod's messages describe the rule, not the value; unrecognized keys name the key only.
        message: i.message,
      })),
    };
  }
  const v = parsed.data;
  const issues: FieldIssue[] = [];
  const checkAccount = (prefix: string, provider: ProviderName, settings: Record<string, unknown>) => {
    if (!IMPLEMENTED_PROVIDERS.includes(provider)) {
      issues.push({ path: `${prefix}provider`, message: `provider "${provider}" is not available in this version (available: ${IMPLEMENTED_PROVIDERS.join(', ')})` });
    }
    for (const k of ENDPOINT_KEYS) {
      const url = settings[k];
      if (url === undefined) continue;
      if (!opts.allowProviderEndpointOverride) {
        issues.push({ path: `${prefix}provider_settings.${k}`, message: 'endpoint overrides are disabled on this platform (ALLOW_PROVIDER_ENDPOINT_OVERRIDE)' });
      } else if (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/.test(url)) {
        issues.push({ path: `${prefix}provider_settings.${k}`, message: 'must be an http(s) URL' });
      }
    }
  };
  checkAccount('', v.provider, v.provider_settings);
  if (v.fallback) checkAccount('fallback.', v.fallback.provider, v.fallback.provider_settings);
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: v };
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
