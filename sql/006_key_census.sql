-- 006: which encryption keys the stored settings need, so a worker can tell at start-up that its
-- DB_ENCRYPTION_KEY (and DB_ENCRYPTION_KEY_PREVIOUS) open every row, without reading or
-- decrypting any tenant's row (RLS would hide them from it anyway). A key id is a fingerprint of
-- the key (config.ts keyId), so comparing ids proves the key.
--
-- Like admin_api_keys, not tenant-scoped and not readable by the worker role: RLS enabled with no
-- policy, nothing granted. A trigger keeps the counts (SECURITY DEFINER: it writes as the owner);
-- the worker reads them through email_encryption_key_census().

CREATE TABLE email_encryption_key_use (
  key_id        text PRIMARY KEY CHECK (key_id <> ''),
  settings_rows bigint NOT NULL CHECK (settings_rows >= 0)
);
ALTER TABLE email_encryption_key_use ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION email_encryption_key_count() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.key_id = NEW.key_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE public.email_encryption_key_use SET settings_rows = settings_rows - 1 WHERE key_id = OLD.key_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO public.email_encryption_key_use AS u (key_id, settings_rows) VALUES (NEW.key_id, 1)
    ON CONFLICT (key_id) DO UPDATE SET settings_rows = u.settings_rows + 1;
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION email_encryption_key_count() FROM PUBLIC;

CREATE FUNCTION email_encryption_key_census()
RETURNS TABLE (key_id text, settings_rows bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT u.key_id, u.settings_rows FROM public.email_encryption_key_use u WHERE u.settings_rows > 0 ORDER BY u.key_id
$$;
REVOKE ALL ON FUNCTION email_encryption_key_census() FROM PUBLIC;

-- Count the rows that exist. The owner is bound by FORCE ROW LEVEL SECURITY, so it is lifted for
-- this one statement; ALTER TABLE holds an exclusive lock until the migration commits, so no row
-- is written between the count and the trigger.
ALTER TABLE tenant_email_settings NO FORCE ROW LEVEL SECURITY;
CREATE TRIGGER tenant_email_settings_key_use
  AFTER INSERT OR DELETE OR UPDATE OF key_id ON tenant_email_settings
  FOR EACH ROW EXECUTE FUNCTION email_encryption_key_count();
INSERT INTO email_encryption_key_use (key_id, settings_rows)
  SELECT s.key_id, count(*) FROM tenant_email_settings s GROUP BY s.key_id;
ALTER TABLE tenant_email_settings FORCE ROW LEVEL SECURITY;
