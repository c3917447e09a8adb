-- 002: the two statements of the hot path, as functions so that each is one round trip and one
-- transaction. Both are SECURITY INVOKER: they run as the worker role, under row-level security.
-- The tenant context is set with set_config(..., true), local to the statement's transaction.

-- email_claim_event: set the tenant context, load the settings, claim the ledger row (before the
-- quota, so a redelivery never spends quota), take one quota unit with one conditional upsert,
-- and return the decrypted credentials. Outcomes:
--   claimed          the caller must send, then call email_record_outcome with the claim token
--   duplicate        already sent or skipped: answer 202
--   in_flight        another request holds an unexpired claim: answer 409
--   skipped_disabled / skipped_no_recipient   recorded as skipped: answer 202
--   quota_exceeded   recorded; the event may be replayed after the day rolls over
--   unknown_tenant   no settings and no global configuration: nothing recorded
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
  sent_today                 integer
)
LANGUAGE plpgsql
VOLATILE
AS $$
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
    RETURN QUERY SELECT 'unknown_tenant'::text, NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::jsonb,
      NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::integer, NULL::integer;
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
    RETURN QUERY SELECT CASE WHEN v_status = 'claimed' THEN 'in_flight' ELSE 'duplicate' END::text,
      NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::jsonb,
      NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::integer, NULL::integer;
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
    RETURN QUERY SELECT CASE WHEN p_has_recipient THEN 'skipped_disabled' ELSE 'skipped_no_recipient' END::text,
      NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::jsonb,
      NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::integer, NULL::integer;
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
      RETURN QUERY SELECT 'quota_exceeded'::text, NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::jsonb,
        NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::bigint, v_limit, v_limit;
      RETURN;
    END IF;

    UPDATE email_deliveries d SET quota_day = v_day
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
  END IF;

  IF NOT v_found THEN
    RETURN QUERY SELECT 'claimed'::text, v_token, 'global'::text, NULL::text, NULL::text, NULL::jsonb,
      NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::bigint, v_limit, v_used;
    RETURN;
  END IF;

  v_key := CASE v_s.key_id WHEN p_key_id THEN p_key WHEN p_prev_key_id THEN p_prev_key END;
  IF v_key IS NULL THEN
    RAISE EXCEPTION 'tenant settings were encrypted with key id %, which this worker does not hold', v_s.key_id
      USING ERRCODE = 'TE001';
  END IF;

  RETURN QUERY SELECT 'claimed'::text, v_token, 'tenant'::text, v_s.provider,
    CASE WHEN v_s.api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(v_s.api_key_encrypted, v_key) END,
    v_s.provider_settings,
    v_s.fallback_provider,
    CASE WHEN v_s.fallback_api_key_encrypted IS NULL THEN NULL ELSE pgp_sym_decrypt(v_s.fallback_api_key_encrypted, v_key) END,
    v_s.fallback_provider_settings,
    v_s.from_email, v_s.from_name, v_s.reply_to_domain, v_s.version, v_limit, v_used;
END
$$;

-- email_record_outcome: the second round trip. Only the holder of the claim token may write; a
-- failed send gives its quota unit back. Returns false when the claim was lost (lease taken over).
CREATE FUNCTION email_record_outcome(
  p_tenant_id    text,
  p_event_source text,
  p_event_id     text,
  p_claim_token  uuid,
  p_status       text,
  p_provider     text,
  p_message_id   text,
  p_error_code   text
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

-- Only the worker role may call these (grants.sql); nobody else by default.
REVOKE ALL ON FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text) FROM PUBLIC;
