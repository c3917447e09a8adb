-- 009: delivery feedback (DESIGN §9): what the provider says after it accepted an email.
--
-- * email_deliveries gains the delivery status a provider's webhook reports (delivered,
--   deferred, bounced hard/soft, complained, unsubscribed, dropped), the provider's own event
--   type and reason, and two ledger statuses: 'suppressed' (the recipient is on the tenant's
--   suppression list: answered 202, not sent, no quota) and 'paused' (the reputation guard
--   paused the tenant: answered 422 tenant_paused; like quota_exceeded, a redelivery after
--   resume claims it again). Webhook events find their delivery by the provider's message id,
--   so (tenant_id, provider, message_id) is indexed.
-- * email_suppressions: the tenant's suppression list, read by the claim in its one round trip.
-- * email_soft_bounces: soft bounces per address, counted until the configured limit suppresses.
-- * tenant_email_webhooks: the verification material of each provider's webhook per tenant
--   (SendGrid public key, Resend/Svix signing secret encrypted like API keys, SNS topic ARNs,
--   Postmark basic-auth user and the SHA-256 of its generated password).
-- * email_webhook_receipts: provider event ids already applied, so a resent event changes nothing.
-- * email_feedback_daily: per tenant and sending day, how many deliveries are in each final
--   status; with tenant_email_usage (sent per day) it gives the reputation guard its rolling rates
--   without scanning the ledger.
-- * tenant_email_reputation: the guard's pause and a tenant's own (lower) thresholds.
--
-- email_claim_event gains p_recipient (DEFAULT NULL: a previous-release worker calling with
-- thirteen arguments keeps working, without the suppression check); functions.sql creates it.

-- IF EXISTS: on a fresh database the thirteen-argument version never existed (functions.sql runs
-- after all numbered files); on one migrated to 008 it does.
DROP FUNCTION IF EXISTS email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text, uuid);

ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check;
ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_status_check
  CHECK (status IN ('claimed', 'sent', 'failed', 'skipped', 'quota_exceeded', 'suppressed', 'paused'));
ALTER TABLE email_deliveries
  ADD COLUMN delivery_status text CHECK (delivery_status IN ('delivered', 'deferred', 'bounced', 'complained', 'unsubscribed', 'dropped')),
  ADD COLUMN bounce_type text CHECK (bounce_type IN ('hard', 'soft')),
  ADD COLUMN delivery_raw_type text CHECK (length(delivery_raw_type) <= 100),
  ADD COLUMN delivery_reason text CHECK (length(delivery_reason) <= 500),
  ADD COLUMN delivery_status_at timestamptz,
  ADD CONSTRAINT email_deliveries_bounce_type_with_status CHECK ((bounce_type IS NOT NULL) = (delivery_status IS NOT DISTINCT FROM 'bounced'));
CREATE INDEX email_deliveries_message_idx ON email_deliveries (tenant_id, provider, message_id) WHERE message_id IS NOT NULL;

CREATE TABLE email_suppressions (
  tenant_id  text NOT NULL CHECK (tenant_id <> ''),
  address    text NOT NULL CHECK (address <> '' AND address = lower(address) AND length(address) <= 320),
  reason     text NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'dropped', 'manual')),
  source     text NOT NULL CHECK (source IN ('webhook', 'unsubscribe', 'admin')),
  provider   text CHECK (provider IN ('sendgrid', 'ses', 'postmark', 'smtp', 'resend')),
  detail     text CHECK (length(detail) <= 500),
  created_by text CHECK (length(created_by) <= 200),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, address)
);
CREATE INDEX email_suppressions_reason_idx ON email_suppressions (tenant_id, reason, address);
CREATE POLICY email_suppressions_isolation ON email_suppressions
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_suppressions ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_suppressions FORCE ROW LEVEL SECURITY;

CREATE TABLE email_soft_bounces (
  tenant_id  text NOT NULL CHECK (tenant_id <> ''),
  address    text NOT NULL CHECK (address <> '' AND address = lower(address) AND length(address) <= 320),
  bounces    integer NOT NULL CHECK (bounces > 0),
  last_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, address)
);
CREATE POLICY email_soft_bounces_isolation ON email_soft_bounces
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_soft_bounces ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_soft_bounces FORCE ROW LEVEL SECURITY;

CREATE TABLE tenant_email_webhooks (
  tenant_id                text NOT NULL CHECK (tenant_id <> ''),
  provider                 text NOT NULL CHECK (provider IN ('sendgrid', 'ses', 'postmark', 'resend')),
  public_key               text CHECK (length(public_key) <= 4000),
  signing_secret_encrypted bytea,
  signing_secret_hint      text,
  topic_arns               text[] NOT NULL DEFAULT '{}',
  basic_username           text CHECK (length(basic_username) <= 100),
  basic_password_sha256    bytea CHECK (length(basic_password_sha256) = 32),
  key_id                   text,
  provider_webhook_id      text CHECK (length(provider_webhook_id) <= 200),
  registered_at            timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, provider),
  CHECK ((signing_secret_encrypted IS NULL) = (key_id IS NULL)),
  CHECK ((basic_username IS NULL) = (basic_password_sha256 IS NULL))
);
CREATE POLICY tenant_email_webhooks_isolation ON tenant_email_webhooks
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_webhooks FORCE ROW LEVEL SECURITY;

CREATE TABLE email_webhook_receipts (
  tenant_id         text NOT NULL CHECK (tenant_id <> ''),
  provider          text NOT NULL,
  provider_event_id text NOT NULL CHECK (provider_event_id <> '' AND length(provider_event_id) <= 200),
  received_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, provider, provider_event_id)
);
CREATE INDEX email_webhook_receipts_received_idx ON email_webhook_receipts (tenant_id, received_at);
CREATE POLICY email_webhook_receipts_isolation ON email_webhook_receipts
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_webhook_receipts ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_webhook_receipts FORCE ROW LEVEL SECURITY;

CREATE TABLE email_feedback_daily (
  tenant_id    text NOT NULL CHECK (tenant_id <> ''),
  day          date NOT NULL,
  delivered    integer NOT NULL DEFAULT 0,
  deferred     integer NOT NULL DEFAULT 0,
  bounced_hard integer NOT NULL DEFAULT 0,
  bounced_soft integer NOT NULL DEFAULT 0,
  complained   integer NOT NULL DEFAULT 0,
  unsubscribed integer NOT NULL DEFAULT 0,
  dropped      integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, day)
);
CREATE POLICY email_feedback_daily_isolation ON email_feedback_daily
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_feedback_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_feedback_daily FORCE ROW LEVEL SECURITY;

CREATE TABLE tenant_email_reputation (
  tenant_id           text NOT NULL CHECK (tenant_id <> '') PRIMARY KEY,
  paused_at           timestamptz,
  paused_reason       text CHECK (paused_reason IN ('complaint_rate', 'bounce_rate')),
  paused_detail       jsonb,
  complaint_threshold numeric CHECK (complaint_threshold > 0 AND complaint_threshold <= 1),
  bounce_threshold    numeric CHECK (bounce_threshold > 0 AND bounce_threshold <= 1),
  resumed_at          timestamptz,
  resumed_by          text CHECK (length(resumed_by) <= 200),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  CHECK ((paused_at IS NULL) = (paused_reason IS NULL))
);
CREATE POLICY tenant_email_reputation_isolation ON tenant_email_reputation
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_reputation ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_reputation FORCE ROW LEVEL SECURITY;

-- Who added or removed an address by hand, and why (the admin API and the CLI write it; webhook
-- and unsubscribe suppressions carry their source on the suppression row itself).
CREATE TABLE email_suppression_log (
  tenant_id  text NOT NULL CHECK (tenant_id <> ''),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  address    text NOT NULL CHECK (length(address) <= 320),
  action     text NOT NULL CHECK (action IN ('added', 'removed')),
  reason     text,
  actor      text CHECK (length(actor) <= 200),
  note       text CHECK (length(note) <= 500),
  at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX email_suppression_log_address_idx ON email_suppression_log (tenant_id, address, at);
CREATE POLICY email_suppression_log_isolation ON email_suppression_log
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_suppression_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_suppression_log FORCE ROW LEVEL SECURITY;
