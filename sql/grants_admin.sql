-- Grants to the admin API's role only (ADMIN_DB_ROLE; when it is not set, the worker role, which
-- then also serves the admin API). Re-applied by every `tenant-email migrate`, with
-- {{admin_role}} replaced by the role's quoted identifier. When the admin API has a role of its
-- own, migrate also revokes these from the worker role: the event path never looks an admin key up.

-- Admin API keys: lookup and last-use only, through SECURITY DEFINER functions (sql/003).
GRANT EXECUTE ON FUNCTION admin_api_key_lookup(text) TO {{admin_role}};
GRANT EXECUTE ON FUNCTION admin_api_key_touch(uuid) TO {{admin_role}};

-- Delivery feedback: the provider webhooks are served by the admin API's server (DESIGN §9).
GRANT EXECUTE ON FUNCTION email_apply_feedback(text, text, jsonb, integer, numeric, numeric, integer, integer, boolean) TO {{admin_role}};
-- The outbox it writes, and its drainer (sql/010): through SECURITY DEFINER functions only.
GRANT EXECUTE ON FUNCTION email_outbox_add(text, jsonb) TO {{admin_role}};
GRANT EXECUTE ON FUNCTION email_outbox_take(integer) TO {{admin_role}};
GRANT EXECUTE ON FUNCTION email_outbox_done(bigint[]) TO {{admin_role}};
GRANT EXECUTE ON FUNCTION email_outbox_backlog() TO {{admin_role}};
