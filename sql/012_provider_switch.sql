-- 012: the provider outage switch (issue 21). A row here takes a provider out of service for
-- every tenant, without a redeploy: tenants whose primary is that provider send through their
-- fallback, and tenants without one are answered 503 provider_disabled (retried by the broker).
-- Platform-wide, not tenant data: the worker role reads it (each worker refreshes it every few
-- seconds, off the event path); `tenant-email providers disable|enable` writes it through the
-- maintenance connection.
CREATE TABLE email_disabled_providers (
  provider    text PRIMARY KEY CHECK (provider IN ('sendgrid', 'ses', 'postmark', 'smtp', 'resend')),
  disabled_at timestamptz NOT NULL DEFAULT now(),
  disabled_by text CHECK (length(disabled_by) <= 200),
  note        text CHECK (length(note) <= 500)
);
