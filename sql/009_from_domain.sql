-- 009: one lookup of the from_email's sender domain.
--
-- The claim (email_claim_event) and the admin API's verify (db/settings.ts loadSenderSettings)
-- each found the domain row of a tenant's from_email with their own copy of the same subquery.
-- email_from_domain is that lookup once; both call it. SECURITY INVOKER and LANGUAGE sql, so it
-- runs under the caller's RLS context and PostgreSQL can inline it.

CREATE FUNCTION email_from_domain(p_tenant_id text, p_from_email text)
RETURNS TABLE (status text, provider text)
LANGUAGE sql
STABLE
AS $$
  SELECT dm.status, dm.provider FROM tenant_email_domains dm
  WHERE dm.tenant_id = p_tenant_id AND dm.domain = lower(split_part(p_from_email, '@', 2))
$$;

REVOKE ALL ON FUNCTION email_from_domain(text, text) FROM PUBLIC;

-- email_claim_event: as in 008, with the domain from email_from_domain.
CREATE OR REPLACE FUNCTION email_claim_event(
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
  p_prev_key           text,
  -- Chosen by the caller, so that a caller who never saw the answer (the connection broke during
  -- the commit) still knows its claim and can give it up (sql/008's header). NULL: one is drawn.
  p_claim_token        uuid DEFAULT NULL
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
  v_quota_slot smallint;
  v_slot      smallint;
  v_status    text;
  v_limit     integer;
  v_day       date := (now() AT TIME ZONE 'UTC')::date;
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
    (p_tenant_id, p_event_source, p_event_id, p_event_type, p_task_id, 'claimed', COALESCE(p_claim_token, gen_random_uuid()),
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
  RETURNING d.claim_token, d.quota_day, d.quota_slot INTO v_token, v_quota_day, v_quota_slot;

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
      PERFORM email_quota_give_back(p_tenant_id, v_quota_day, v_quota_slot);
    END IF;
    UPDATE email_deliveries d
      SET status = 'skipped', claim_token = NULL, lease_expires_at = NULL, quota_day = NULL, quota_slot = NULL,
          error_code = CASE WHEN p_has_recipient THEN 'tenant_disabled' ELSE 'no_recipient' END
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
    outcome := CASE WHEN p_has_recipient THEN 'skipped_disabled' ELSE 'skipped_no_recipient' END;
    RETURN NEXT;
    RETURN;
  END IF;

  v_limit := CASE WHEN v_found THEN v_s.daily_limit ELSE p_global_daily_limit END;

  -- One quota unit per delivery: a claim taken over from a crashed attempt keeps that unit.
  IF v_quota_day IS NULL THEN
    v_slot := email_quota_take(p_tenant_id, v_day, v_limit, p_event_id);
    IF v_slot IS NULL THEN
      UPDATE email_deliveries d
        SET status = 'quota_exceeded', claim_token = NULL, lease_expires_at = NULL, error_code = 'quota_exceeded'
        WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
      outcome := 'quota_exceeded';
      daily_limit := v_limit;
      sent_today := v_limit;
      RETURN NEXT;
      RETURN;
    END IF;

    UPDATE email_deliveries d SET quota_day = v_day, quota_slot = v_slot
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
  END IF;

  outcome := 'claimed';
  claim_token := v_token;
  daily_limit := v_limit;
  sent_today := NULL;  -- not counted on the hot path: summing the slots would cost a scan
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
    SELECT d.status, d.provider INTO from_domain_status, from_domain_provider FROM email_from_domain(p_tenant_id, v_s.from_email) d;
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
