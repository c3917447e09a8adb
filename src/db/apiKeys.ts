import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Sql, callDeadline } from './connect';
import { bounded } from './deadline';
import { assertMaintenanceRole } from './maintenance';

/**
 * Admin API keys: `tew_<12 hex>_<secret>`. The first part is a public prefix that finds the row;
 * the database keeps only SHA-256 of the whole key, compared in constant time.
 */
export const API_KEY_PATTERN = /^(tew_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface ApiKeyPrincipal {
  id: string;
  role: 'platform_admin' | 'tenant_admin';
  tenantId: string | null;
}

const sha256 = (v: string) => createHash('sha256').update(v, 'utf8').digest();

/** Returns the key's principal, or null for a malformed, unknown, expired, revoked or wrong key. */
export async function authenticateApiKey(sql: Sql, key: string): Promise<ApiKeyPrincipal | null> {
  const m = API_KEY_PATTERN.exec(key);
  if (!m) return null;
  const [row] = await bounded(sql`SELECT id, key_hash, tenant_id, role FROM admin_api_key_lookup(${m[1] as string})`, callDeadline(sql));
  // Hash even when no row matched, so the answer takes the same time either way.
  const given = sha256(key);
  const stored: Buffer = row ? (row.key_hash as Buffer) : Buffer.alloc(32);
  if (!row || !timingSafeEqual(given, stored)) return null;
  await bounded(sql`SELECT admin_api_key_touch(${row.id}::uuid)`, callDeadline(sql));
  return { id: row.id, role: row.role, tenantId: row.tenant_id };
}

export async function createApiKey(
  sql: Sql,
  opts: { role: 'platform_admin' | 'tenant_admin'; tenantId: string | null; expiresInDays?: number; description?: string },
): Promise<{ key: string; id: string; prefix: string; expires_at: string | null }> {
  await assertMaintenanceRole(sql);
  const prefix = `tew_${randomBytes(6).toString('hex')}`;
  const key = `${prefix}_${randomBytes(32).toString('base64url')}`;
  const [r] = await sql`
    INSERT INTO admin_api_keys (prefix, key_hash, tenant_id, role, description, expires_at)
    VALUES (${prefix}, ${sha256(key)}, ${opts.tenantId}, ${opts.role}, ${opts.description ?? null},
            CASE WHEN ${opts.expiresInDays ?? null}::int IS NULL THEN NULL ELSE now() + make_interval(days => ${opts.expiresInDays ?? null}::int) END)
    RETURNING id, expires_at`;
  return { key, id: r!.id, prefix, expires_at: r!.expires_at ? new Date(r!.expires_at).toISOString() : null };
}

export async function listApiKeys(sql: Sql, tenantId?: string) {
  await assertMaintenanceRole(sql);
  return sql`
    SELECT id, prefix, tenant_id, role, description, created_at, expires_at, revoked_at, last_used_at
    FROM admin_api_keys WHERE ${tenantId ?? null}::text IS NULL OR tenant_id = ${tenantId ?? null}
    ORDER BY created_at`;
}

export async function revokeApiKey(sql: Sql, idOrPrefix: string): Promise<boolean> {
  await assertMaintenanceRole(sql);
  const rows = await sql`
    UPDATE admin_api_keys SET revoked_at = now()
    WHERE (prefix = ${idOrPrefix} OR id::text = ${idOrPrefix}) AND revoked_at IS NULL RETURNING id`;
  return rows.length > 0;
}
