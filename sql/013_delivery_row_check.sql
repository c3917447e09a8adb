-- 013: the ledger's row rules as one CHECK (issue 23). PostgreSQL turns every CHECK constraint
-- of a table back from its stored text into an expression (stringToNode, then expression set-up)
-- on every INSERT and UPDATE statement, and an event writes its ledger row three times: the
-- eleven CHECKs of email_deliveries were about a tenth of the database's CPU per event. One CHECK
-- calling a PL/pgSQL function is a few nodes to read back; the function's expressions are
-- compiled once per session. The rules are the same; test/db/deliveryRules.test.ts tries each.
--
-- The function's body is in sql/functions.sql, like every other. It is declared here first with
-- a body that accepts every row, so the constraint can be added; functions.sql replaces it in
-- the same transaction. Rows already in the table satisfied the same rules under the
-- constraints dropped here.
CREATE FUNCTION email_delivery_row_ok(d email_deliveries) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN true; END $$;

ALTER TABLE email_deliveries
  DROP CONSTRAINT email_deliveries_status_check,
  DROP CONSTRAINT email_deliveries_check,
  DROP CONSTRAINT email_deliveries_settings_source_check,
  DROP CONSTRAINT email_deliveries_template_source_check,
  DROP CONSTRAINT email_deliveries_sender_tier_check,
  DROP CONSTRAINT email_deliveries_quota_slot_check,
  DROP CONSTRAINT email_deliveries_delivery_status_check,
  DROP CONSTRAINT email_deliveries_bounce_type_check,
  DROP CONSTRAINT email_deliveries_bounce_type_with_status,
  DROP CONSTRAINT email_deliveries_delivery_raw_type_check,
  DROP CONSTRAINT email_deliveries_delivery_reason_check,
  ADD CONSTRAINT email_deliveries_row_ok CHECK (email_delivery_row_ok(email_deliveries.*));
