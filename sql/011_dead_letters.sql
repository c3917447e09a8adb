-- 011: the dead-letter store (issue 21). The chart's Triggers dead-letter to the worker's
-- POST /dead-letters (cluster-local, never routed by the public Ingress); each event is kept here
-- exactly as the broker sent it, with the broker's error extensions decoded, so that ops can find
-- it and replay it (`tenant-email dead-letters list|replay`, the admin API for one tenant).
--
-- One row per (tenant, source, id): an event dead-lettered again (after a replay that failed too)
-- updates its row and counts the times. Tenant-less events are kept under the global id.
CREATE TABLE email_dead_letters (
  tenant_id          text NOT NULL CHECK (tenant_id <> ''),
  event_source       text NOT NULL CHECK (length(event_source) <= 1000),
  event_id           text NOT NULL CHECK (length(event_id) <= 1000),
  event_type         text CHECK (length(event_type) <= 256),
  content_type       text CHECK (length(content_type) <= 256),
  -- The CloudEvent attributes as sent (binary: the ce-* headers; structured: the envelope's),
  -- without the broker's knativeerror* extensions, which are below.
  attributes         jsonb NOT NULL CHECK (jsonb_typeof(attributes) = 'object'),
  body               bytea NOT NULL,
  body_truncated     boolean NOT NULL DEFAULT false,
  -- What the destination answered: knativeerrorcode, knativeerrordest, knativeerrordata decoded
  -- (the first ~1 KB of the answer), and our registry code when the answer was ours.
  http_status        integer,
  error_dest         text CHECK (length(error_dest) <= 2000),
  error_data         text CHECK (length(error_data) <= 4000),
  error_code         text CHECK (length(error_code) <= 100),
  dead_lettered      integer NOT NULL DEFAULT 1 CHECK (dead_lettered > 0),
  first_received_at  timestamptz NOT NULL DEFAULT now(),
  received_at        timestamptz NOT NULL DEFAULT now(),
  replays            integer NOT NULL DEFAULT 0,
  replayed_at        timestamptz,
  replay_status      integer,
  replay_target      text CHECK (length(replay_target) <= 2000),
  PRIMARY KEY (tenant_id, event_source, event_id)
);
CREATE INDEX email_dead_letters_received_idx ON email_dead_letters (tenant_id, received_at);
CREATE INDEX email_dead_letters_code_idx ON email_dead_letters (tenant_id, error_code, received_at);
CREATE POLICY email_dead_letters_isolation ON email_dead_letters
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE email_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_dead_letters FORCE ROW LEVEL SECURITY;
