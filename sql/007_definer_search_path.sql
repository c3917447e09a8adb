-- 007: SECURITY DEFINER functions search pg_temp last. When a function's search_path does not
-- name pg_temp, PostgreSQL searches it *first*, so a caller's own temporary table called
-- admin_api_keys would be read in place of ours. (006's functions already name it last.)
ALTER FUNCTION admin_api_key_lookup(text) SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION admin_api_key_touch(uuid) SET search_path = pg_catalog, public, pg_temp;
