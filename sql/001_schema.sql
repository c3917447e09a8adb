-- 001: tenants (only if the platform has none), settings, daily usage, delivery ledger.
-- Conventions: sql/CONVENTIONS.md. Applied by `tenant-email migrate` as the schema owner.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Facts about this installation that code needs to read (e.g. whether `tenants` is ours).
CREATE TABLE email_worker_meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);

-- The platform usually has a tenants table already; then we leave it alone and only reference it.
DO $$
BEGIN
  IF to_regclass('tenants') IS NULL THEN
    CREATE TABLE tenants (
      id           text PRIMARY KEY CHECK (id <> ''),
      display_name text,
      created_at   timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
    ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenants_isolation ON tenants
      USING (id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
      WITH CHECK (id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
    INSERT INTO email_worker_meta (key, value) VALUES ('tenants_table', 'owned');
  ELSE
    INSERT INTO email_worker_meta (key, value) VALUES ('tenants_table', 'platform');
  END IF;
END
$$;

CREATE TABLE tenant_email_settings (
  tenant_id                   text PRIMARY KEY CHECK (tenant_id <> ''),
  provider                    text NOT NULL CHECK (provider IN ('sendgrid', 'ses', 'postmark', 'smtp', 'resend')),
  -- pgp_sym_encrypt(api_key, DB_ENCRYPTION_KEY); NULL only where the provider needs no secret (SES with IRSA).
  api_key_encrypted           bytea,
  -- Non-secret hint shown in the admin API: a short prefix and the last 4 characters at most.
  api_key_hint                text,
  from_email                  text NOT NULL CHECK (from_email <> ''),
  from_name                   text,
  reply_to_domain             text,
  provider_settings           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(provider_settings) = 'object'),
  enabled                     boolean NOT NULL DEFAULT true,
  daily_limit                 integer NOT NULL DEFAULT 1000 CHECK (daily_limit >= 0),
  fallback_provider           text CHECK (fallback_provider IN ('sendgrid', 'ses', 'postmark', 'smtp', 'resend')),
  fallback_api_key_encrypted  bytea,
  fallback_api_key_hint       text,
  fallback_provider_settings  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fallback_provider_settings) = 'object'),
  -- Fingerprint of the key that encrypted both secrets of this row (see `keys rotate`).
  key_id                      text NOT NULL CHECK (key_id <> ''),
  version                     bigint NOT NULL DEFAULT 1,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now(),
  CHECK (fallback_provider IS NOT NULL OR fallback_api_key_encrypted IS NULL)
);

-- Reference the tenants table when its key is text (ours always is; a platform's may not be).
DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_attribute a
    WHERE a.attrelid = to_regclass('tenants') AND a.attname = 'id' AND NOT a.attisdropped
      AND a.atttypid IN ('text'::regtype, 'varchar'::regtype)
  ) THEN
    ALTER TABLE tenant_email_settings
      ADD CONSTRAINT tenant_email_settings_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
  END IF;
END
$$;

-- One row per tenant per UTC day. The quota is taken by a single conditional upsert.
CREATE TABLE tenant_email_usage (
  tenant_id  text NOT NULL CHECK (tenant_id <> ''),
  day        date NOT NULL,
  sent_count integer NOT NULL DEFAULT 0 CHECK (sent_count >= 0),
  PRIMARY KEY (tenant_id, day)
);

-- The delivery ledger: idempotency key, audit log and source of stats.
CREATE TABLE email_deliveries (
  tenant_id        text NOT NULL CHECK (tenant_id <> ''),
  event_source     text NOT NULL,
  event_id         text NOT NULL,
  event_type       text NOT NULL,
  task_id          text,
  status           text NOT NULL CHECK (status IN ('claimed', 'sent', 'failed', 'skipped', 'quota_exceeded')),
  attempts         integer NOT NULL DEFAULT 1,
  -- Redeliveries that found the event already done or in flight.
  duplicates       integer NOT NULL DEFAULT 0,
  -- Set while claimed: only the holder of the token may record the outcome.
  claim_token      uuid,
  lease_expires_at timestamptz,
  -- The UTC day whose quota unit this delivery holds; NULL when it holds none.
  quota_day        date,
  settings_source  text CHECK (settings_source IN ('tenant', 'global')),
  provider         text,
  message_id       text,
  error_code       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, event_source, event_id),
  CHECK ((status = 'claimed') = (claim_token IS NOT NULL))
);
CREATE INDEX email_deliveries_tenant_created_idx ON email_deliveries (tenant_id, created_at);

-- Row-level security: policy first, then ENABLE + FORCE, on every tenant-scoped table.
CREATE POLICY tenant_email_settings_isolation ON tenant_email_settings
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_settings FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_email_usage_isolation ON tenant_email_usage
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_usage FORCE ROW LEVEL SECURITY;

CREATE POLICY email_deliveries_isolation ON email_deliveries
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_deliveries FORCE ROW LEVEL SECURITY;
