-- 003: API keys for machine clients of the admin API (the seed's workspace-scoped keys).
-- Not readable by the worker role at all: RLS is enabled with no policy and nothing is granted.
-- The worker reaches it only through the two SECURITY DEFINER functions below. Only a SHA-256 of
-- the key is stored (the key is 32 random bytes, so a slow hash adds nothing), with a public
-- prefix to find the row. An exception to "every key starts with tenant_id": platform keys
-- have no tenant, and lookups are by prefix before any tenant is known.

CREATE TABLE admin_api_keys (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^tew_[0-9a-f]{12}$'),
  key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
  tenant_id    text CHECK (tenant_id <> ''),
  role         text NOT NULL CHECK (role IN ('platform_admin', 'tenant_admin')),
  description  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  CHECK (role = 'platform_admin' OR tenant_id IS NOT NULL)
);
ALTER TABLE admin_api_keys ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION admin_api_key_lookup(p_prefix text)
RETURNS TABLE (id uuid, key_hash bytea, tenant_id text, role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
  SELECT k.id, k.key_hash, k.tenant_id, k.role FROM admin_api_keys k
  WHERE k.prefix = p_prefix AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
$$;

-- Called only after the caller matched the hash, so a known prefix alone cannot touch the row.
CREATE FUNCTION admin_api_key_touch(p_id uuid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
  UPDATE admin_api_keys SET last_used_at = now()
  WHERE id = p_id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
$$;

REVOKE ALL ON FUNCTION admin_api_key_lookup(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION admin_api_key_touch(uuid) FROM PUBLIC;
