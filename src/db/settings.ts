import type { EncryptionKey } from '../config';
import { keyHint, needsApiKey, type SettingsInput } from '../settings/input';
import { PLATFORM_PAID_SETTING, type ProviderAccount, type ProviderName, type SenderSettings } from '../types';
import { type Sql, callDeadline, localStatementTimeout } from './connect';
import { beginWithin } from './deadline';
import type { KeyRing } from '../config/require';
import { WorkerError } from '../errors';

/** pgcrypto options: AES-256, no compression (length oracle), a single S2K pass (the key is random). */
export const PGP_OPTIONS = 'cipher-algo=aes256, compress-algo=0, s2k-mode=1';

export interface MaskedAccount {
  provider: string;
  api_key_set: boolean;
  api_key_masked: string | null;
  provider_settings: Record<string, unknown>;
}

export interface MaskedSettings extends MaskedAccount {
  tenant_id: string;
  /** The platform provisioned and pays for the primary account (PLATFORM_PAID_SETTING). */
  platform_paid: boolean;
  from_email: string | null;
  from_name: string | null;
  reply_to_domain: string | null;
  list_unsubscribe: string | null;
  extra_headers: Record<string, string>;
  enabled: boolean;
  daily_limit: number;
  fallback: MaskedAccount | null;
  key_id: string;
  version: number;
  created_at: string;
  updated_at: string;
}

/**
 * A stored account as the sender sees it: the platform's mark (PLATFORM_PAID_SETTING) becomes
 * `platformPaid` and leaves the provider settings the SDK is given.
 */
export function storedAccount(provider: ProviderName, apiKey: string | null, stored: Record<string, unknown> | null): ProviderAccount {
  const { [PLATFORM_PAID_SETTING]: paid, ...settings } = stored ?? {};
  return paid === true ? { provider, apiKey, settings, platformPaid: true } : { provider, apiKey, settings };
}

/** The key of the ring that a row's key_id names, or undefined when this process holds none. */
export function keyFor(keys: KeyRing, keyId: string): EncryptionKey | undefined {
  return [keys.current, keys.previous].find((k) => k?.id === keyId);
}

/**
 * Run `fn` in a transaction whose row-level-security context is `tenantId`. On a pool made by
 * createSql the transaction must start within the pool's deadline (db/deadline.ts beginWithin).
 */
export async function withTenant<T>(sql: Sql, tenantId: string, fn: (tx: Sql) => Promise<T>): Promise<T> {
  const timeout = localStatementTimeout(sql);
  return beginWithin(callDeadline(sql), async (checkStart) =>
    (await sql.begin(async (tx) => {
      checkStart();
      // Behind a pooler the statement timeout travels with the tenant context, in the same statement.
      if (timeout === undefined) await tx`SELECT set_config('app.current_tenant_id', ${tenantId}, true)`;
      else await tx`SELECT set_config('app.current_tenant_id', ${tenantId}, true), set_config('statement_timeout', ${`${timeout}ms`}, true)`;
      return fn(tx as unknown as Sql);
    })) as T,
  );
}

/**
 * Create or replace a tenant's settings. Secrets are encrypted in the database with the current
 * key (always a bind parameter). A secret left out of an update is kept, re-encrypted under the
 * current key, so one row never mixes keys. `platformPaid` marks the primary account as one the
 * platform provisioned and pays for (the SendGrid subuser command); the mark stays while an
 * update keeps the stored key and goes when a new key is given.
 */
export async function putSettings(
  sql: Sql,
  keys: KeyRing,
  tenantId: string,
  input: SettingsInput,
  opts: { platformPaid?: boolean } = {},
): Promise<{ created: boolean }> {
  return withTenant(sql, tenantId, async (tx) => {
    const [existing] = await tx`
      SELECT provider, fallback_provider, key_id,
             api_key_encrypted IS NOT NULL AS has_key, fallback_api_key_encrypted IS NOT NULL AS has_fallback_key
      FROM tenant_email_settings WHERE tenant_id = ${tenantId} FOR UPDATE`;

    const fb = input.fallback ?? null;
    const primaryNeedsKey = needsApiKey(input.provider, input.provider_settings);
    const fallbackNeedsKey = !!fb && needsApiKey(fb.provider, fb.provider_settings);
    // A key left out of an update is kept when the account still needs one from the same provider.
    const keepKey = input.api_key === undefined && primaryNeedsKey && !!existing && existing.provider === input.provider && existing.has_key;
    const keepFallbackKey = !!fb && fb.api_key === undefined && fallbackNeedsKey && !!existing && existing.fallback_provider === fb.provider && existing.has_fallback_key;
    if (input.api_key === undefined && primaryNeedsKey && !keepKey) {
      throw new WorkerError('api_key_required', 'api_key is required when settings are created or the provider changes');
    }
    if (fb && fb.api_key === undefined && fallbackNeedsKey && !keepFallbackKey) {
      throw new WorkerError('api_key_required', 'fallback.api_key is required when a fallback is added or its provider changes');
    }
    let oldKey = keys.current.secret;
    if ((keepKey || keepFallbackKey) && existing) {
      const held = keyFor(keys, existing.key_id);
      if (!held) throw new WorkerError('settings_undecryptable', 'the stored key was encrypted with a key this process does not hold; send api_key again');
      oldKey = held.secret;
    }

    const [{ owned }] = (await tx`
      SELECT value = 'owned' AS owned FROM email_worker_meta WHERE key = 'tenants_table'`) as unknown as [{ owned: boolean }];
    if (owned) {
      await tx`INSERT INTO tenants (id) VALUES (${tenantId}) ON CONFLICT (id) DO NOTHING`;
    }

    const cur = keys.current.secret;
    const apiKey = input.api_key ?? null;
    const fbKey = fb?.api_key ?? null;
    try {
      const [row] = await tx`
        INSERT INTO tenant_email_settings AS s (
          tenant_id, provider, api_key_encrypted, api_key_hint, from_email, from_name, reply_to_domain,
          provider_settings, enabled, daily_limit, fallback_provider, fallback_api_key_encrypted,
          fallback_api_key_hint, fallback_provider_settings, key_id, list_unsubscribe, extra_headers)
        VALUES (
          ${tenantId}, ${input.provider},
          CASE WHEN ${apiKey}::text IS NULL THEN NULL ELSE pgp_sym_encrypt(${apiKey}::text, ${cur}::text, ${PGP_OPTIONS}) END,
          ${apiKey === null ? null : keyHint(apiKey)}, ${input.from_email ?? null}, ${input.from_name ?? null}, ${input.reply_to_domain ?? null},
          ${tx.json((opts.platformPaid ? { ...input.provider_settings, [PLATFORM_PAID_SETTING]: true } : input.provider_settings) as never)},
          ${input.enabled}, ${input.daily_limit}, ${fb?.provider ?? null},
          CASE WHEN ${fbKey}::text IS NULL THEN NULL ELSE pgp_sym_encrypt(${fbKey}::text, ${cur}::text, ${PGP_OPTIONS}) END,
          ${fbKey === null ? null : keyHint(fbKey)}, ${tx.json((fb?.provider_settings ?? {}) as never)}, ${keys.current.id},
          ${input.list_unsubscribe ?? null}, ${tx.json((input.extra_headers ?? {}) as never)})
        ON CONFLICT (tenant_id) DO UPDATE SET
          provider = EXCLUDED.provider,
          api_key_encrypted = CASE
            WHEN ${keepKey} THEN pgp_sym_encrypt(pgp_sym_decrypt(s.api_key_encrypted, ${oldKey}::text), ${cur}::text, ${PGP_OPTIONS})
            ELSE EXCLUDED.api_key_encrypted END,
          api_key_hint = CASE WHEN ${keepKey} THEN s.api_key_hint ELSE EXCLUDED.api_key_hint END,
          from_email = EXCLUDED.from_email,
          from_name = EXCLUDED.from_name,
          reply_to_domain = EXCLUDED.reply_to_domain,
          provider_settings = CASE
            WHEN ${keepKey} AND s.provider_settings ? ${PLATFORM_PAID_SETTING}::text
            THEN EXCLUDED.provider_settings || jsonb_build_object(${PLATFORM_PAID_SETTING}::text, true)
            ELSE EXCLUDED.provider_settings END,
          enabled = EXCLUDED.enabled,
          daily_limit = EXCLUDED.daily_limit,
          fallback_provider = EXCLUDED.fallback_provider,
          fallback_api_key_encrypted = CASE
            WHEN ${keepFallbackKey} THEN pgp_sym_encrypt(pgp_sym_decrypt(s.fallback_api_key_encrypted, ${oldKey}::text), ${cur}::text, ${PGP_OPTIONS})
            ELSE EXCLUDED.fallback_api_key_encrypted END,
          fallback_api_key_hint = CASE WHEN ${keepFallbackKey} THEN s.fallback_api_key_hint ELSE EXCLUDED.fallback_api_key_hint END,
          fallback_provider_settings = EXCLUDED.fallback_provider_settings,
          key_id = EXCLUDED.key_id,
          list_unsubscribe = EXCLUDED.list_unsubscribe,
          extra_headers = EXCLUDED.extra_headers,
          version = s.version + 1,
          updated_at = now()
        RETURNING (xmax = 0) AS created`;
      return { created: Boolean(row?.created) };
    } catch (err) {
      if ((err as { code?: string }).code === '23503') {
        throw new WorkerError(
          'tenant_not_found',
          owned
            ? `tenant "${tenantId}" could not be created`
            : `tenant "${tenantId}" has no row in the platform's tenants table; create the tenant there first`,
        );
      }
      throw err;
    }
  });
}

export async function getSettings(sql: Sql, tenantId: string): Promise<MaskedSettings | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`
      SELECT tenant_id, provider, api_key_encrypted IS NOT NULL AS api_key_set, api_key_hint, from_email, from_name,
             reply_to_domain, provider_settings, enabled, daily_limit, fallback_provider,
             fallback_api_key_encrypted IS NOT NULL AS fallback_api_key_set, fallback_api_key_hint,
             fallback_provider_settings, key_id, version, created_at, updated_at, list_unsubscribe, extra_headers
      FROM tenant_email_settings WHERE tenant_id = ${tenantId}`;
    if (!r) return null;
    return {
      tenant_id: r.tenant_id,
      provider: r.provider,
      api_key_set: r.api_key_set,
      api_key_masked: r.api_key_set ? (r.api_key_hint ?? '…') : null,
      provider_settings: storedAccount(r.provider, null, r.provider_settings).settings,
      platform_paid: r.provider_settings?.[PLATFORM_PAID_SETTING] === true,
      from_email: r.from_email,
      from_name: r.from_name,
      reply_to_domain: r.reply_to_domain,
      list_unsubscribe: r.list_unsubscribe,
      extra_headers: r.extra_headers,
      enabled: r.enabled,
      daily_limit: r.daily_limit,
      fallback: r.fallback_provider
        ? {
            provider: r.fallback_provider,
            api_key_set: r.fallback_api_key_set,
            api_key_masked: r.fallback_api_key_set ? (r.fallback_api_key_hint ?? '…') : null,
            provider_settings: r.fallback_provider_settings,
          }
        : null,
      key_id: r.key_id,
      version: Number(r.version),
      created_at: new Date(r.created_at).toISOString(),
      updated_at: new Date(r.updated_at).toISOString(),
    };
  });
}

export async function deleteSettings(sql: Sql, tenantId: string): Promise<boolean> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`DELETE FROM tenant_email_settings WHERE tenant_id = ${tenantId} RETURNING tenant_id`;
    return rows.length > 0;
  });
}

/**
 * The decrypted accounts of a tenant, for `verify` (the hot path decrypts inside the claim).
 * Throws WorkerError('settings_undecryptable') when the row's key is not held.
 */
export async function loadSenderSettings(sql: Sql, keys: KeyRing, tenantId: string): Promise<SenderSettings | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [meta] = await tx`SELECT key_id FROM tenant_email_settings WHERE tenant_id = ${tenantId}`;
    if (!meta) return null;
    const key = keyFor(keys, meta.key_id);
    if (!key) throw new WorkerError('settings_undecryptable', 'the settings were encrypted with a key this process does not hold');
    const [r] = await tx`
      SELECT provider, provider_settings, from_email, from_name, reply_to_domain, version, fallback_provider, fallback_provider_settings,
             list_unsubscribe, extra_headers,
             (SELECT jsonb_build_object('status', d.status, 'provider', d.provider) FROM email_from_domain(s.tenant_id, s.from_email) d) AS from_domain,
             CASE WHEN api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(api_key_encrypted, ${key.secret}::text) END AS api_key,
             CASE WHEN fallback_api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(fallback_api_key_encrypted, ${key.secret}::text) END AS fallback_api_key
      FROM tenant_email_settings s WHERE s.tenant_id = ${tenantId}`;
    return r ? tenantSenderSettings(r as unknown as SenderSettingsRow) : null;
  });
}

/** A tenant's settings row with its keys decrypted, as the claim (email_claim_event) and loadSenderSettings read it. */
export interface SenderSettingsRow {
  provider: ProviderName;
  api_key: string | null;
  provider_settings: Record<string, unknown> | null;
  fallback_provider: ProviderName | null;
  fallback_api_key: string | null;
  fallback_provider_settings: Record<string, unknown> | null;
  from_email: string | null;
  from_name: string | null;
  reply_to_domain: string | null;
  list_unsubscribe: string | null;
  extra_headers: Record<string, string> | null;
  from_domain: SenderSettings['fromDomain'];
  version: number | string;
}

/** The one place a tenant's SenderSettings is made from a database row. */
export function tenantSenderSettings(r: SenderSettingsRow): SenderSettings {
  return {
    source: 'tenant',
    primary: storedAccount(r.provider, r.api_key, r.provider_settings),
    fallback: r.fallback_provider ? storedAccount(r.fallback_provider, r.fallback_api_key, r.fallback_provider_settings) : null,
    fromEmail: r.from_email,
    fromName: r.from_name,
    replyToDomain: r.reply_to_domain,
    listUnsubscribe: r.list_unsubscribe,
    extraHeaders: r.extra_headers ?? {},
    fromDomain: r.from_domain ?? null,
    version: Number(r.version),
  };
}
