-- 010: an outbox for the CloudEvents that delivery feedback publishes (DESIGN §9 "Events out").
--
-- email_apply_feedback writes one row per published status change (and one when the reputation
-- guard pauses a tenant) in the same transaction as the change, through email_outbox_add; the
-- admin API's server drains it to K_SINK after the commit and again on a timer, deleting a row only
-- once the sink answered 2xx. So a status committed in the database is published at least once,
-- even when the broker was down at that moment.
--
-- Like admin_api_keys, the table is not tenant-scoped for reading: the drainer works across
-- tenants. RLS is enabled with no policy and the worker role has no grant on it, so it is reached
-- only through the SECURITY DEFINER functions in functions.sql, which return no address and no
-- secret (the rows hold none).
CREATE TABLE email_outbox (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id       text NOT NULL CHECK (tenant_id <> ''),
  ce_id           text NOT NULL CHECK (ce_id <> ''),
  ce_type         text NOT NULL CHECK (ce_type LIKE 'codetether.email.%'),
  ce_subject      text,
  data            jsonb NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at);
ALTER TABLE email_outbox ENABLE ROW LEVEL SECURITY;

-- email_apply_feedback gains p_publish (write the outbox); functions.sql creates the new one.
DROP FUNCTION IF EXISTS email_apply_feedback(text, text, jsonb, integer, numeric, numeric, integer, integer);

-- Webhook signing secrets (sql/009) are encrypted like API keys: the key census counts their rows
-- too, so the start-up check (a key that stored secrets need is missing) and `keys rotate` cover them.
-- As in 006: the owner counts the rows with FORCE lifted for this one statement, under the
-- ALTER TABLE's exclusive lock (held until the migration commits), so nothing is written between
-- the count and the trigger.
ALTER TABLE tenant_email_webhooks NO FORCE ROW LEVEL SECURITY;
CREATE TRIGGER tenant_email_webhooks_key_use
  AFTER INSERT OR UPDATE OF key_id OR DELETE ON tenant_email_webhooks
  FOR EACH ROW EXECUTE FUNCTION email_encryption_key_count();
INSERT INTO email_encryption_key_use AS u (key_id, settings_rows)
  SELECT key_id, count(*) FROM tenant_email_webhooks WHERE key_id IS NOT NULL GROUP BY key_id
ON CONFLICT (key_id) DO UPDATE SET settings_rows = u.settings_rows + EXCLUDED.settings_rows;
ALTER TABLE tenant_email_webhooks FORCE ROW LEVEL SECURITY;
