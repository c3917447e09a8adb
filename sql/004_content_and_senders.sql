-- 004: email content and sender identity (templates, sender domains, the ledger's sender tier).
--   * tenant_email_templates: per-tenant, per-event-type Handlebars overrides (subject/html/text).
--   * tenant_email_domains: custom sender domains registered at the tenant's provider, with the
--     DNS records to publish and the verification status the provider last reported.
--   * tenant_email_settings: from_email becomes optional (the platform tier builds one from
--     EMAIL_TENANT_FROM_PATTERN), plus List-Unsubscribe and allow-listed extra headers.
--   * email_deliveries: which template and which sender tier each delivery used, and why.
-- email_claim_event and email_record_outcome are replaced to carry the new facts in the same
-- single round trip each.

ALTER TABLE tenant_email_settings ALTER COLUMN from_email DROP NOT NULL;
ALTER TABLE tenant_email_settings
  ADD COLUMN list_unsubscribe text CHECK (list_unsubscribe <> ''),
  ADD COLUMN extra_headers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(extra_headers) = 'object');

-- One sequence for every template save: a version is never reused, even after a delete, so a
-- compiled template cached under (tenant, type, version) can never be served for other text.
CREATE SEQUENCE tenant_email_template_version_seq;

CREATE TABLE tenant_email_templates (
  tenant_id  text NOT NULL CHECK (tenant_id <> ''),
  event_type text NOT NULL CHECK (event_type <> ''),
  subject    text,
  html       text,
  text       text,
  version    bigint NOT NULL DEFAULT nextval('tenant_email_template_version_seq'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, event_type),
  CHECK (subject IS NOT NULL OR html IS NOT NULL OR text IS NOT NULL)
);
ALTER SEQUENCE tenant_email_template_version_seq OWNED BY tenant_email_templates.version;

CREATE TABLE tenant_email_domains (
  tenant_id          text NOT NULL CHECK (tenant_id <> ''),
  domain             text NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
  provider           text NOT NULL CHECK (provider IN ('sendgrid', 'ses', 'postmark', 'smtp', 'resend')),
  -- The provider's own id for the domain (SendGrid/Resend/Postmark ids; SES uses the name).
  provider_domain_id text NOT NULL CHECK (provider_domain_id <> ''),
  status             text NOT NULL CHECK (status IN ('pending', 'verified', 'failed')),
  -- [{type, name, value, priority?, status?}]: what the tenant publishes in its DNS.
  dns_records        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(dns_records) = 'array'),
  verified_at        timestamptz,
  checked_at         timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, domain)
);

CREATE POLICY tenant_email_templates_isolation ON tenant_email_templates
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_templates FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_email_domains_isolation ON tenant_email_domains
  USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')));
ALTER TABLE tenant_email_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_email_domains FORCE ROW LEVEL SECURITY;

ALTER TABLE email_deliveries
  -- builtin: no tenant template; tenant: the tenant's template; builtin_fallback: the tenant's
  -- template failed to compile or render and the built-in one was sent instead.
  ADD COLUMN template_source  text CHECK (template_source IN ('builtin', 'tenant', 'builtin_fallback')),
  ADD COLUMN template_version bigint,
  -- platform: EMAIL_TENANT_FROM_PATTERN or the global sender; custom: the tenant's own domain.
  ADD COLUMN sender_tier      text CHECK (sender_tier IN ('platform', 'custom')),
  -- Why the sender is what it is when that is not the obvious choice (e.g. domain_unverified).
  ADD COLUMN sender_note      text;

DROP FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text);
DROP FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text);

-- email_claim_event: as in 002 (context → settings → claim → quota → decrypt), and it also
-- returns the version of the tenant's template for this event type and the status of the
-- from_email's domain, so the worker needs no extra round trip unless a template is not cached.
CREATE FUNCTION email_claim_event(
  p_tenant_id          text,
  p_event_source       text,
  p_event_id           text,
  p_event_type         text,
  p_task_id            text,
  p_has_recipient      boolean,
  p_lease_seconds      integer,
  p_global_daily_limit integer,  -- NULL when no global configuration exists
  p_key_id             text,
  p_key                text,
  p_prev_key_id        text,
  p_prev_key           text
) RETURNS TABLE (
  outcome                    text,
  claim_token                uuid,
  settings_source            text,
  provider                   text,
  api_key                    text,
  provider_settings          jsonb,
  fallback_provider          text,
  fallback_api_key           text,
  fallback_provider_settings jsonb,
  from_email                 text,
  from_name                  text,
  reply_to_domain            text,
  settings_version           bigint,
  daily_limit                integer,
  sent_today                 integer,
  list_unsubscribe           text,
  extra_headers              jsonb,
  template_version           bigint,
  from_domain_status         text,
  from_domain_provider       text
)
LANGUAGE plpgsql
VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  v_s         tenant_email_settings%ROWTYPE;
  v_found     boolean;
  v_token     uuid;
  v_quota_day date;
  v_status    text;
  v_limit     integer;
  v_day       date := (now() AT TIME ZONE 'UTC')::date;
  v_used      integer;
  v_key       text;
BEGIN
  PERFORM set_config('app.current_tenant_id', p_tenant_id, true);

  SELECT s.* INTO v_s FROM tenant_email_settings s WHERE s.tenant_id = p_tenant_id;
  v_found := FOUND;
  IF NOT v_found AND p_global_daily_limit IS NULL THEN
    outcome := 'unknown_tenant';
    RETURN NEXT;
    RETURN;
  END IF;

  -- The claim. A row that is done (sent, skipped) or claimed under a live lease is left alone.
  INSERT INTO email_deliveries AS d
    (tenant_id, event_source, event_id, event_type, task_id, status, claim_token, lease_expires_at, settings_source)
  VALUES
    (p_tenant_id, p_event_source, p_event_id, p_event_type, p_task_id, 'claimed', gen_random_uuid(),
     now() + make_interval(secs => p_lease_seconds), CASE WHEN v_found THEN 'tenant' ELSE 'global' END)
  ON CONFLICT (tenant_id, event_source, event_id) DO UPDATE
    SET status = 'claimed',
        claim_token = EXCLUDED.claim_token,
        lease_expires_at = EXCLUDED.lease_expires_at,
        settings_source = EXCLUDED.settings_source,
        attempts = d.attempts + 1,
        error_code = NULL,
        updated_at = now()
    WHERE d.status IN ('failed', 'quota_exceeded')
       OR (d.status = 'claimed' AND d.lease_expires_at < now())
  RETURNING d.claim_token, d.quota_day INTO v_token, v_quota_day;

  IF v_token IS NULL THEN
    -- ON CONFLICT locked the row, so this sees the state the claim was refused on.
    UPDATE email_deliveries d SET duplicates = d.duplicates + 1
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id
      RETURNING d.status INTO v_status;
    outcome := CASE WHEN v_status = 'claimed' THEN 'in_flight' ELSE 'duplicate' END;
    RETURN NEXT;
    RETURN;
  END IF;

  IF (v_found AND NOT v_s.enabled) OR NOT p_has_recipient THEN
    -- A taken-over claim may hold a unit from the crashed attempt: give it back.
    IF v_quota_day IS NOT NULL THEN
      UPDATE tenant_email_usage u SET sent_count = u.sent_count - 1
        WHERE u.tenant_id = p_tenant_id AND u.day = v_quota_day AND u.sent_count > 0;
    END IF;
    UPDATE email_deliveries d
      SET status = 'skipped', claim_token = NULL, lease_expires_at = NULL, quota_day = NULL,
          error_code = CASE WHEN p_has_recipient THEN 'tenant_disabled' ELSE 'no_recipient' END
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
    outcome := CASE WHEN p_has_recipient THEN 'skipped_disabled' ELSE 'skipped_no_recipient' END;
    RETURN NEXT;
    RETURN;
  END IF;

  v_limit := CASE WHEN v_found THEN v_s.daily_limit ELSE p_global_daily_limit END;

  -- One quota unit per delivery: a claim taken over from a crashed attempt keeps that unit.
  IF v_quota_day IS NULL THEN
    INSERT INTO tenant_email_usage AS u (tenant_id, day, sent_count)
      SELECT p_tenant_id, v_day, 1 WHERE v_limit > 0
    ON CONFLICT (tenant_id, day) DO UPDATE
      SET sent_count = u.sent_count + 1
      WHERE u.sent_count < v_limit
    RETURNING u.sent_count INTO v_used;

    IF v_used IS NULL THEN
      UPDATE email_deliveries d
        SET status = 'quota_exceeded', claim_token = NULL, lease_expires_at = NULL, error_code = 'quota_exceeded'
        WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
      outcome := 'quota_exceeded';
      daily_limit := v_limit;
      sent_today := v_limit;
      RETURN NEXT;
      RETURN;
    END IF;

    UPDATE email_deliveries d SET quota_day = v_day
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
  END IF;

  outcome := 'claimed';
  claim_token := v_token;
  daily_limit := v_limit;
  sent_today := v_used;
  SELECT t.version INTO template_version FROM tenant_email_templates t
    WHERE t.tenant_id = p_tenant_id AND t.event_type = p_event_type;

  IF NOT v_found THEN
    settings_source := 'global';
    RETURN NEXT;
    RETURN;
  END IF;

  v_key := CASE v_s.key_id WHEN p_key_id THEN p_key WHEN p_prev_key_id THEN p_prev_key END;
  IF v_key IS NULL THEN
    RAISE EXCEPTION 'tenant settings were encrypted with key id %, which this worker does not hold', v_s.key_id
      USING ERRCODE = 'TE001';
  END IF;

  IF v_s.from_email IS NOT NULL THEN
    SELECT dm.status, dm.provider INTO from_domain_status, from_domain_provider FROM tenant_email_domains dm
      WHERE dm.tenant_id = p_tenant_id AND dm.domain = lower(split_part(v_s.from_email, '@', 2));
  END IF;

  settings_source := 'tenant';
  provider := v_s.provider;
  api_key := CASE WHEN v_s.api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(v_s.api_key_encrypted, v_key) END;
  provider_settings := v_s.provider_settings;
  fallback_provider := v_s.fallback_provider;
  fallback_api_key := CASE WHEN v_s.fallback_api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(v_s.fallback_api_key_encrypted, v_key) END;
  fallback_provider_settings := v_s.fallback_provider_settings;
  from_email := v_s.from_email;
  from_name := v_s.from_name;
  reply_to_domain := v_s.reply_to_domain;
  settings_version := v_s.version;
  list_unsubscribe := v_s.list_unsubscribe;
  extra_headers := v_s.extra_headers;
  RETURN NEXT;
END
$$;

-- email_record_outcome: as in 002, and it also records the template and sender tier used.
CREATE FUNCTION email_record_outcome(
  p_tenant_id        text,
  p_event_source     text,
  p_event_id         text,
  p_claim_token      uuid,
  p_status           text,
  p_provider         text,
  p_message_id       text,
  p_error_code       text,
  p_template_source  text,
  p_template_version bigint,
  p_sender_tier      text,
  p_sender_note      text
) RETURNS boolean
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_quota_day date;
BEGIN
  IF p_status NOT IN ('sent', 'failed') THEN
    RAISE EXCEPTION 'email_record_outcome: status must be sent or failed, not %', p_status USING ERRCODE = '22023';
  END IF;
  PERFORM set_config('app.current_tenant_id', p_tenant_id, true);

  SELECT d.quota_day INTO v_quota_day FROM email_deliveries d
    WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id
      AND d.claim_token = p_claim_token
    FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;

  UPDATE email_deliveries d
    SET status = p_status, claim_token = NULL, lease_expires_at = NULL,
        provider = p_provider, message_id = p_message_id, error_code = p_error_code,
        template_source = p_template_source, template_version = p_template_version,
        sender_tier = p_sender_tier, sender_note = p_sender_note,
        quota_day = CASE WHEN p_status = 'failed' THEN NULL ELSE d.quota_day END,
        updated_at = now()
    WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;

  IF p_status = 'failed' AND v_quota_day IS NOT NULL THEN
    UPDATE tenant_email_usage u SET sent_count = u.sent_count - 1
      WHERE u.tenant_id = p_tenant_id AND u.day = v_quota_day AND u.sent_count > 0;
  END IF;
  RETURN true;
END
$$;

REVOKE ALL ON FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text, text, bigint, text, text) FROM PUBLIC;
