import type { EncryptionKey, GlobalEmailConfig } from '../config';
import { keyHint } from '../settings/input';
import type { Sql } from './connect';
import { PGP_OPTIONS } from './settings';
import { UsageError } from '../errors';

/**
 * Platform-wide operations that must see every tenant: key rotation and backfill. They run on
 * MAINTENANCE_DATABASE_URL, as a role that bypasses row-level security (a superuser, or the
 * owner given BYPASSRLS); the worker and the admin API never use that connection.
 */

export async function assertMaintenanceRole(sql: Sql): Promise<void> {
  const [r] = await sql`SELECT rolsuper OR rolbypassrls AS bypasses FROM pg_roles WHERE rolname = current_user`;
  if (!r?.bypasses) {
    throw new UsageError(
      'MAINTENANCE_DATABASE_URL must connect as a role that bypasses row-level security (a superuser, or e.g. ' +
        '`ALTER ROLE email_owner BYPASSRLS`); this role would only see rows of the tenant in its context.',
    );
  }
}

export interface RotationReport {
  rotated: number;
  batches: number;
  /** Rows (settings and webhook secrets) still under the previous key (non-zero only when stopped by maxBatches). */
  remaining: number;
  /** Rows under a key that is neither the current nor the previous one. */
  unknownKey: number;
}

/**
 * Re-encrypt every row under `from` with `to`, in batches of `batchSize` rows, each batch its own
 * transaction (FOR UPDATE SKIP LOCKED, so a concurrent admin write is not blocked and a second
 * rotator works on other rows). Resumable: progress is the rows' key_id itself.
 */
export async function rotateKeys(
  sql: Sql,
  opts: { from: EncryptionKey; to: EncryptionKey; batchSize: number; maxBatches?: number; onBatch?: (rotated: number) => void },
): Promise<RotationReport> {
  await assertMaintenanceRole(sql);
  let rotated = 0;
  let batches = 0;
  while (opts.maxBatches === undefined || batches < opts.maxBatches) {
    const rows = await sql`
      UPDATE tenant_email_settings s SET
        api_key_encrypted = CASE WHEN s.api_key_encrypted IS NULL THEN NULL
          ELSE pgp_sym_encrypt(pgp_sym_decrypt(s.api_key_encrypted, ${opts.from.secret}::text), ${opts.to.secret}::text, ${PGP_OPTIONS}) END,
        fallback_api_key_encrypted = CASE WHEN s.fallback_api_key_encrypted IS NULL THEN NULL
          ELSE pgp_sym_encrypt(pgp_sym_decrypt(s.fallback_api_key_encrypted, ${opts.from.secret}::text), ${opts.to.secret}::text, ${PGP_OPTIONS}) END,
        key_id = ${opts.to.id},
        updated_at = now()
      WHERE s.tenant_id IN (
        SELECT tenant_id FROM tenant_email_settings WHERE key_id = ${opts.from.id}
        ORDER BY tenant_id LIMIT ${opts.batchSize} FOR UPDATE SKIP LOCKED)
      RETURNING s.tenant_id`;
    if (rows.length === 0) break;
    rotated += rows.length;
    batches++;
    opts.onBatch?.(rows.length);
  }
  // Webhook signing secrets (sql/009), the same way.
  while (opts.maxBatches === undefined || batches < opts.maxBatches) {
    const rows = await sql`
      UPDATE tenant_email_webhooks h SET
        signing_secret_encrypted = pgp_sym_encrypt(pgp_sym_decrypt(h.signing_secret_encrypted, ${opts.from.secret}::text), ${opts.to.secret}::text, ${PGP_OPTIONS}),
        key_id = ${opts.to.id},
        updated_at = now()
      WHERE (h.tenant_id, h.provider) IN (
        SELECT tenant_id, provider FROM tenant_email_webhooks WHERE key_id = ${opts.from.id}
        ORDER BY tenant_id, provider LIMIT ${opts.batchSize} FOR UPDATE SKIP LOCKED)
      RETURNING h.tenant_id`;
    if (rows.length === 0) break;
    rotated += rows.length;
    batches++;
    opts.onBatch?.(rows.length);
  }
  const [c] = await sql`
    SELECT count(*) FILTER (WHERE key_id = ${opts.from.id})::int AS remaining,
           count(*) FILTER (WHERE key_id NOT IN (${opts.from.id}, ${opts.to.id}))::int AS unknown
    FROM (SELECT key_id FROM tenant_email_settings UNION ALL SELECT key_id FROM tenant_email_webhooks WHERE key_id IS NOT NULL) k`;
  return { rotated, batches, remaining: c!.remaining, unknownKey: c!.unknown };
}

/**
 * The seed PRD's migration: give every tenant without settings a row built from the global
 * SendGrid configuration. Idempotent: tenants that have settings are left alone.
 */
export async function backfillFromGlobal(sql: Sql, opts: { key: EncryptionKey; global: GlobalEmailConfig }): Promise<string[]> {
  await assertMaintenanceRole(sql);
  const g = opts.global;
  const rows = await sql`
    INSERT INTO tenant_email_settings (tenant_id, provider, api_key_encrypted, api_key_hint, from_email, from_name, reply_to_domain, daily_limit, key_id)
    SELECT t.id::text, 'sendgrid', pgp_sym_encrypt(${g.apiKey}::text, ${opts.key.secret}::text, ${PGP_OPTIONS}), ${keyHint(g.apiKey)},
           ${g.fromEmail}, ${g.fromName}, ${g.replyToDomain}, ${g.dailyLimit}, ${opts.key.id}
    FROM tenants t
    WHERE t.id::text <> '' AND NOT EXISTS (SELECT 1 FROM tenant_email_settings s WHERE s.tenant_id = t.id::text)
    ORDER BY t.id
    ON CONFLICT (tenant_id) DO NOTHING
    RETURNING tenant_id`;
  return rows.map((r) => r.tenant_id as string);
}
