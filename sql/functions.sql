-- The current body of every function, re-applied by every `tenant-email migrate` after the
-- numbered migrations and before the grants (as grants.sql is), so this file is the one place a
-- function is written. Change a body here and nowhere else. A numbered migration is needed only
-- to drop a function whose signature or return type changes (CREATE OR REPLACE cannot), or for
-- tables; the numbered files up to 007 still hold the versions of their time, as history.
-- sql/current/schema.sql shows the result.

-- The domain row of a tenant's from_email (its verification status at its provider), for the
-- claim and for the admin API's verify alike. SECURITY INVOKER, LANGUAGE sql: under the caller's
-- RLS context, and inlined.
CREATE OR REPLACE FUNCTION email_from_domain(p_tenant_id text, p_from_email text)
RETURNS TABLE (status text, provider text)
LANGUAGE sql
STABLE
AS $$
  SELECT dm.status, dm.provider FROM tenant_email_domains dm
  WHERE dm.tenant_id = p_tenant_id AND dm.domain = lower(split_part(p_from_email, '@', 2))
$$;

-- Take one unit of the tenant's limit for the day; returns the slot, or NULL when the day is used up.
CREATE OR REPLACE FUNCTION email_quota_take(p_tenant_id text, p_day date, p_limit integer, p_event_id text)
RETURNS smallint
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_start smallint := (hashtext(p_event_id) & 7)::smallint;
  v_slot  smallint;
  v_attempt integer;
BEGIN
  IF p_limit <= 0 THEN
    RETURN NULL;
  END IF;
  FOR v_attempt IN 1..3 LOOP
    BEGIN
      -- The day's slots exist from the first claim on; creating them takes no lock on existing rows.
      IF NOT EXISTS (SELECT 1 FROM tenant_email_usage u WHERE u.tenant_id = p_tenant_id AND u.day = p_day) THEN
        INSERT INTO tenant_email_usage (tenant_id, day, slot, sent_count)
          SELECT p_tenant_id, p_day, g.slot, 0 FROM generate_series(0, 7) AS g(slot)
        ON CONFLICT (tenant_id, day, slot) DO NOTHING;
      END IF;

      -- A slot with room that nobody holds, nearest to the start slot.
      SELECT u.slot INTO v_slot FROM tenant_email_usage u
        WHERE u.tenant_id = p_tenant_id AND u.day = p_day
          AND u.sent_count < p_limit / 8 + CASE WHEN u.slot < p_limit % 8 THEN 1 ELSE 0 END
        ORDER BY (u.slot - v_start + 8) % 8
        LIMIT 1
        FOR UPDATE SKIP LOCKED;

      IF v_slot IS NULL THEN
        -- Every slot with room is held (or none has room): wait, in slot order, for the first one
        -- that still has room once its holder commits (the condition is re-checked after the wait).
        SELECT u.slot INTO v_slot FROM tenant_email_usage u
          WHERE u.tenant_id = p_tenant_id AND u.day = p_day
            AND u.sent_count < p_limit / 8 + CASE WHEN u.slot < p_limit % 8 THEN 1 ELSE 0 END
          ORDER BY u.slot
          LIMIT 1
          FOR UPDATE;
      END IF;
      IF v_slot IS NOT NULL THEN
        UPDATE tenant_email_usage u SET sent_count = u.sent_count + 1
          WHERE u.tenant_id = p_tenant_id AND u.day = p_day AND u.slot = v_slot;
      END IF;
      RETURN v_slot;
    EXCEPTION WHEN deadlock_detected THEN
      -- A row locked by FOR UPDATE stays locked even when its re-check fails (it filled up
      -- meanwhile), so two claims can each hold a full slot the other is waiting for. Only this
      -- block is rolled back (its locks released) and tried again; after three tries the claim
      -- fails with 503 database_unavailable, nothing written, and the broker redelivers.
      IF v_attempt = 3 THEN
        RAISE;
      END IF;
    END;
  END LOOP;
  RETURN NULL;
END
$$;

-- Give a unit back: to its slot, or for a delivery claimed before slots existed (sql/005; no
-- slot), to whichever slot of that day has the most.
CREATE OR REPLACE FUNCTION email_quota_give_back(p_tenant_id text, p_day date, p_slot smallint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
AS $$
BEGIN
  UPDATE tenant_email_usage u SET sent_count = u.sent_count - 1
    WHERE u.tenant_id = p_tenant_id AND u.day = p_day AND u.sent_count > 0
      AND u.slot = COALESCE(p_slot, (SELECT v.slot FROM tenant_email_usage v
                                      WHERE v.tenant_id = p_tenant_id AND v.day = p_day
                                      ORDER BY v.sent_count DESC, v.slot LIMIT 1));
END
$$;

-- email_claim_event: round trip 1 of an event (sql/002's header tells the steps): set the
-- tenant context, load the settings, claim the ledger row under the caller's token (NULL: one is
-- drawn), take the quota unit, decrypt.
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

-- email_record_outcome: round trip 2: the outcome under the claim's token (false when the claim
-- was taken over); a failed send gives its quota unit back to the slot it came from.
CREATE OR REPLACE FUNCTION email_record_outcome(
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
  v_quota_day  date;
  v_quota_slot smallint;
BEGIN
  IF p_status NOT IN ('sent', 'failed') THEN
    RAISE EXCEPTION 'email_record_outcome: status must be sent or failed, not %', p_status USING ERRCODE = '22023';
  END IF;
  PERFORM set_config('app.current_tenant_id', p_tenant_id, true);

  SELECT d.quota_day, d.quota_slot INTO v_quota_day, v_quota_slot FROM email_deliveries d
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
        quota_slot = CASE WHEN p_status = 'failed' THEN NULL ELSE d.quota_slot END,
        updated_at = now()
    WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;

  IF p_status = 'failed' AND v_quota_day IS NOT NULL THEN
    PERFORM email_quota_give_back(p_tenant_id, v_quota_day, v_quota_slot);
  END IF;
  RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION admin_api_key_lookup(p_prefix text)
RETURNS TABLE (id uuid, key_hash bytea, tenant_id text, role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT k.id, k.key_hash, k.tenant_id, k.role FROM admin_api_keys k
  WHERE k.prefix = p_prefix AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
$$;

-- Called only after the caller matched the hash, so a known prefix alone cannot touch the row.
CREATE OR REPLACE FUNCTION admin_api_key_touch(p_id uuid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  UPDATE admin_api_keys SET last_used_at = now()
  WHERE id = p_id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
$$;

CREATE OR REPLACE FUNCTION email_encryption_key_count() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.key_id = NEW.key_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE public.email_encryption_key_use SET settings_rows = settings_rows - 1 WHERE key_id = OLD.key_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO public.email_encryption_key_use AS u (key_id, settings_rows) VALUES (NEW.key_id, 1)
    ON CONFLICT (key_id) DO UPDATE SET settings_rows = u.settings_rows + 1;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION email_encryption_key_census()
RETURNS TABLE (key_id text, settings_rows bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT u.key_id, u.settings_rows FROM public.email_encryption_key_use u WHERE u.settings_rows > 0 ORDER BY u.key_id
$$;

REVOKE ALL ON FUNCTION email_from_domain(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_quota_take(text, date, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_quota_give_back(text, date, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text, text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION admin_api_key_lookup(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION admin_api_key_touch(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_encryption_key_count() FROM PUBLIC;
REVOKE ALL ON FUNCTION email_encryption_key_census() FROM PUBLIC;
