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

-- The rules of a ledger row (sql/013): one CHECK calls this, so a write reads back one small
-- expression instead of eleven. IMMUTABLE: it looks at the row alone.
CREATE OR REPLACE FUNCTION email_delivery_row_ok(d email_deliveries)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
  RETURN d.status IN ('claimed', 'sent', 'failed', 'skipped', 'quota_exceeded', 'suppressed', 'paused')
     -- a claim, and only a claim, carries its token
     AND (d.status = 'claimed') = (d.claim_token IS NOT NULL)
     AND (d.settings_source IS NULL OR d.settings_source IN ('tenant', 'global'))
     AND (d.template_source IS NULL OR d.template_source IN ('builtin', 'tenant', 'builtin_fallback'))
     AND (d.sender_tier IS NULL OR d.sender_tier IN ('platform', 'custom'))
     AND (d.quota_slot IS NULL OR d.quota_slot BETWEEN 0 AND 7)
     AND (d.delivery_status IS NULL OR d.delivery_status IN ('delivered', 'deferred', 'bounced', 'complained', 'unsubscribed', 'dropped'))
     AND (d.bounce_type IS NULL OR d.bounce_type IN ('hard', 'soft'))
     -- a bounce, and only a bounce, says which kind
     AND (d.bounce_type IS NOT NULL) = (d.delivery_status IS NOT DISTINCT FROM 'bounced')
     AND (d.delivery_raw_type IS NULL OR length(d.delivery_raw_type) <= 100)
     AND (d.delivery_reason IS NULL OR length(d.delivery_reason) <= 500);
END
$$;

-- A tenant's day is counted in eight slots (tenant_email_usage, sql/005), so concurrent claims
-- of one tenant take different rows. A slot's share of a daily limit: the limit split in eight,
-- the first (limit mod 8) slots one more, so the shares add up to the limit exactly.
-- LANGUAGE sql and IMMUTABLE: the planner inlines it where it is used.
CREATE OR REPLACE FUNCTION email_quota_slot_cap(p_limit integer, p_slot smallint)
RETURNS integer
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$ SELECT p_limit / 8 + CASE WHEN p_slot < p_limit % 8 THEN 1 ELSE 0 END $$;

-- The slot an event's claim tries first, spread by the event id (the others follow in order).
CREATE OR REPLACE FUNCTION email_quota_start_slot(p_event_id text)
RETURNS smallint
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashtext(p_event_id) & 7)::smallint $$;

-- Take one unit of the tenant's limit for the day; returns the slot, or NULL when the day is used up.
-- The slow path of the claim's quota step (email_claim_event takes a free slot itself first).
CREATE OR REPLACE FUNCTION email_quota_take(p_tenant_id text, p_day date, p_limit integer, p_event_id text)
RETURNS smallint
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_start smallint := email_quota_start_slot(p_event_id);
  v_slot  smallint;
  v_attempt integer;
BEGIN
  IF p_limit <= 0 THEN
    RETURN NULL;
  END IF;

  -- The claim tries a free slot first (email_claim_event); this is for the rest: the day's first
  -- claim (its slots do not exist yet), every slot with room held by another claim, or the day
  -- used up.
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
          AND u.sent_count < email_quota_slot_cap(p_limit, u.slot)
        ORDER BY (u.slot - v_start + 8) % 8
        LIMIT 1
        FOR UPDATE SKIP LOCKED;

      IF v_slot IS NULL THEN
        -- Every slot with room is held (or none has room): wait, in slot order, for the first one
        -- that still has room once its holder commits (the condition is re-checked after the wait).
        SELECT u.slot INTO v_slot FROM tenant_email_usage u
          WHERE u.tenant_id = p_tenant_id AND u.day = p_day
            AND u.sent_count < email_quota_slot_cap(p_limit, u.slot)
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
  p_claim_token        uuid DEFAULT NULL,
  -- The recipient, checked against the tenant's suppression list (sql/009). NULL: not checked
  -- (a worker of the release before 009).
  p_recipient          text DEFAULT NULL
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
  from_domain_provider       text,
  suppression_reason         text
)
LANGUAGE plpgsql
VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  v_s         record;
  v_found     boolean;
  v_token     uuid;
  v_quota_day date;
  v_quota_slot smallint;
  v_slot      smallint;
  v_status    text;
  v_limit     integer;
  v_day       date := (now() AT TIME ZONE 'UTC')::date;
  v_key       text;
  v_context   text;
BEGIN
  -- An assignment, not PERFORM: a plain expression runs without an executor of its own.
  v_context := set_config('app.current_tenant_id', p_tenant_id, true);

  -- Everything the claim decides on, in one statement: the settings, the template's version,
  -- the from_email domain's status, the recipient's suppression, the reputation guard's pause.
  SELECT s.*, t.version AS x_template_version, fd.status AS x_domain_status, fd.provider AS x_domain_provider,
         CASE WHEN p_recipient IS NULL THEN NULL ELSE
           (SELECT sp.reason FROM email_suppressions sp WHERE sp.tenant_id = p_tenant_id AND sp.address = lower(p_recipient)) END AS x_suppression,
         EXISTS (SELECT 1 FROM tenant_email_reputation r WHERE r.tenant_id = p_tenant_id AND r.paused_at IS NOT NULL) AS x_paused
    INTO v_s
    FROM (SELECT) AS one
    LEFT JOIN tenant_email_settings s ON s.tenant_id = p_tenant_id
    LEFT JOIN tenant_email_templates t ON t.tenant_id = p_tenant_id AND t.event_type = p_event_type
    LEFT JOIN LATERAL email_from_domain(p_tenant_id, s.from_email) fd ON s.from_email IS NOT NULL;
  v_found := v_s.tenant_id IS NOT NULL;
  suppression_reason := v_s.x_suppression;
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
    WHERE d.status IN ('failed', 'quota_exceeded', 'paused')
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

  -- The tenant's suppression list, then the reputation guard's pause (sql/009): neither sends
  -- nor spends quota. A suppressed recipient is final; a paused event is claimed again after resume.
  IF suppression_reason IS NOT NULL OR v_s.x_paused THEN
    IF v_quota_day IS NOT NULL THEN
      PERFORM email_quota_give_back(p_tenant_id, v_quota_day, v_quota_slot);
    END IF;
    UPDATE email_deliveries d
      SET status = CASE WHEN suppression_reason IS NOT NULL THEN 'suppressed' ELSE 'paused' END,
          claim_token = NULL, lease_expires_at = NULL, quota_day = NULL, quota_slot = NULL,
          error_code = CASE WHEN suppression_reason IS NOT NULL THEN 'recipient_suppressed' ELSE 'tenant_paused' END
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id;
    outcome := CASE WHEN suppression_reason IS NOT NULL THEN 'suppressed' ELSE 'tenant_paused' END;
    RETURN NEXT;
    RETURN;
  END IF;

  v_limit := CASE WHEN v_found THEN v_s.daily_limit ELSE p_global_daily_limit END;

  -- One quota unit per delivery: a claim taken over from a crashed attempt keeps that unit.
  IF v_quota_day IS NULL THEN
    -- The common case, in one statement and without a subtransaction: a unit from a slot with
    -- room that nobody holds, nearest to the event's start slot, written on the ledger row at
    -- once. SKIP LOCKED never waits, so this cannot take part in a deadlock.
    IF v_limit > 0 THEN
      WITH taken AS (
        UPDATE tenant_email_usage u SET sent_count = u.sent_count + 1
          WHERE u.tenant_id = p_tenant_id AND u.day = v_day
            AND u.slot = (SELECT f.slot FROM tenant_email_usage f
                           WHERE f.tenant_id = p_tenant_id AND f.day = v_day
                             AND f.sent_count < email_quota_slot_cap(v_limit, f.slot)
                           ORDER BY (f.slot - email_quota_start_slot(p_event_id) + 8) % 8
                           LIMIT 1
                           FOR UPDATE SKIP LOCKED)
          RETURNING u.slot)
      UPDATE email_deliveries d SET quota_day = v_day, quota_slot = taken.slot
        FROM taken
        WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id
        RETURNING taken.slot INTO v_slot;
      v_quota_day := CASE WHEN v_slot IS NOT NULL THEN v_day END;
    END IF;
  END IF;
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
  template_version := v_s.x_template_version;

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

  settings_source := 'tenant';
  from_domain_status := v_s.x_domain_status;
  from_domain_provider := v_s.x_domain_provider;
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
  v_context    text;
BEGIN
  IF p_status NOT IN ('sent', 'failed') THEN
    RAISE EXCEPTION 'email_record_outcome: status must be sent or failed, not %', p_status USING ERRCODE = '22023';
  END IF;
  v_context := set_config('app.current_tenant_id', p_tenant_id, true);

  -- A failed send gives its unit back to the slot it came from, so that slot is read first,
  -- under lock. A sent one keeps its unit: the UPDATE below is its only statement.
  IF p_status = 'failed' THEN
    SELECT d.quota_day, d.quota_slot INTO v_quota_day, v_quota_slot FROM email_deliveries d
      WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id
        AND d.claim_token = p_claim_token
      FOR UPDATE;
    IF NOT FOUND THEN
      RETURN false;
    END IF;
  END IF;

  UPDATE email_deliveries d
    SET status = p_status, claim_token = NULL, lease_expires_at = NULL,
        provider = p_provider, message_id = p_message_id, error_code = p_error_code,
        template_source = p_template_source, template_version = p_template_version,
        sender_tier = p_sender_tier, sender_note = p_sender_note,
        quota_day = CASE WHEN p_status = 'failed' THEN NULL ELSE d.quota_day END,
        quota_slot = CASE WHEN p_status = 'failed' THEN NULL ELSE d.quota_slot END,
        updated_at = now()
    WHERE d.tenant_id = p_tenant_id AND d.event_source = p_event_source AND d.event_id = p_event_id
      AND d.claim_token = p_claim_token;
  IF NOT FOUND THEN
    RETURN false;
  END IF;

  IF v_quota_day IS NOT NULL THEN
    PERFORM email_quota_give_back(p_tenant_id, v_quota_day, v_quota_slot);
  END IF;
  RETURN true;
END
$$;

-- The rank of a delivery status: a webhook event changes a delivery only to a higher rank, so
-- duplicates and out-of-order events change nothing twice, a deferral never overwrites a final
-- status, and a later bounce or complaint beats an earlier delivery.
CREATE OR REPLACE FUNCTION email_delivery_status_rank(p_status text, p_bounce_type text)
RETURNS integer
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT CASE p_status
    WHEN 'deferred' THEN 1
    WHEN 'delivered' THEN 2
    WHEN 'bounced' THEN CASE p_bounce_type WHEN 'soft' THEN 3 ELSE 4 END
    WHEN 'dropped' THEN 4
    WHEN 'unsubscribed' THEN 5
    WHEN 'complained' THEN 6
    ELSE 0
  END
$$;

-- email_apply_feedback: one verified webhook request of one tenant, in one round trip (DESIGN §9).
-- p_events: [{id, message_id, recipient, status, bounce_type, raw_type, reason, at}], normalised
-- by the receiver. Events already applied (by provider event id) are skipped; each delivery
-- (found by the provider's message id) moves to the highest-ranked status; its sending day's
-- counters follow; hard bounces, complaints, unsubscribes and drops suppress the recipient, soft
-- bounces after p_soft_bounce_limit (0: never); past a threshold the reputation guard pauses the
-- tenant. Rates are over the last p_window_days sending days (from the day of the last resume),
-- counted only from p_min_volume sends on.
CREATE OR REPLACE FUNCTION email_apply_feedback(
  p_tenant_id           text,
  p_provider            text,
  p_events              jsonb,
  p_soft_bounce_limit   integer,
  p_complaint_threshold numeric,
  p_bounce_threshold    numeric,
  p_min_volume          integer,
  p_window_days         integer,
  -- Write the status changes (and a pause) to the outbox for K_SINK (sql/010).
  p_publish             boolean DEFAULT false
) RETURNS TABLE (
  received      integer,
  duplicates    integer,
  applied       integer,
  unmatched     integer,
  suppressed    integer,
  statuses      jsonb,
  paused_reason text,
  paused_detail jsonb
)
LANGUAGE plpgsql
VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  v_new     jsonb;
  v_changed jsonb;
  v_bad     boolean;
  v_rep     tenant_email_reputation%ROWTYPE;
  v_from    date;
  v_sent    bigint;
  v_compl   bigint;
  v_hard    bigint;
  v_c_limit numeric;
  v_b_limit numeric;
BEGIN
  PERFORM set_config('app.current_tenant_id', p_tenant_id, true);
  received := jsonb_array_length(p_events);

  -- Receipts older than a week are forgotten (providers retry for at most three days).
  DELETE FROM email_webhook_receipts r WHERE r.ctid IN (
    SELECT o.ctid FROM email_webhook_receipts o
    WHERE o.tenant_id = p_tenant_id AND o.received_at < now() - interval '7 days' LIMIT 1000);

  -- The events not seen before, in the order they happened.
  WITH ev AS (
    SELECT DISTINCT ON (e.id) e.* FROM jsonb_to_recordset(p_events)
      AS e(id text, message_id text, recipient text, status text, bounce_type text, raw_type text, reason text, at timestamptz)
    ORDER BY e.id
  ), fresh AS (
    INSERT INTO email_webhook_receipts (tenant_id, provider, provider_event_id)
      SELECT p_tenant_id, p_provider, ev.id FROM ev
    ON CONFLICT DO NOTHING
    RETURNING provider_event_id
  )
  SELECT COALESCE(jsonb_agg(to_jsonb(ev) ORDER BY ev.at), '[]'::jsonb) INTO v_new
    FROM ev JOIN fresh ON fresh.provider_event_id = ev.id;
  duplicates := received - jsonb_array_length(v_new);

  -- Each delivery to the best of its new events, when that beats what it has. The rows are
  -- locked first (in key order), so a concurrent request for the same delivery waits and then
  -- reads the status this one left: a status is counted once, whichever request brings it.
  WITH best AS (
    SELECT DISTINCT ON (e.message_id) e.*, email_delivery_status_rank(e.status, e.bounce_type) AS rank
    FROM jsonb_to_recordset(v_new)
      AS e(id text, message_id text, recipient text, status text, bounce_type text, raw_type text, reason text, at timestamptz)
    WHERE e.message_id IS NOT NULL
    ORDER BY e.message_id, email_delivery_status_rank(e.status, e.bounce_type) DESC, e.at
  ), cur AS (
    SELECT d.event_source, d.event_id, d.task_id, d.message_id, COALESCE(d.quota_day, (d.created_at AT TIME ZONE 'UTC')::date) AS day,
           d.delivery_status AS old_status, d.bounce_type AS old_bounce,
           b.status, b.bounce_type, lower(b.recipient) AS recipient, b.raw_type, b.reason, b.at, b.rank
    FROM email_deliveries d JOIN best b ON d.message_id = b.message_id
    WHERE d.tenant_id = p_tenant_id AND d.provider = p_provider
    ORDER BY d.event_source, d.event_id
    FOR UPDATE OF d
  )
  SELECT COALESCE(jsonb_agg(to_jsonb(cur)), '[]'::jsonb) INTO v_changed FROM cur
    WHERE cur.rank > email_delivery_status_rank(cur.old_status, cur.old_bounce);

  UPDATE email_deliveries d
    SET delivery_status = c.status, bounce_type = c.bounce_type, delivery_raw_type = left(c.raw_type, 100),
        delivery_reason = left(c.reason, 500), delivery_status_at = COALESCE(c.at, now()), updated_at = now()
    FROM jsonb_to_recordset(v_changed) AS c(event_source text, event_id text, status text, bounce_type text, raw_type text, reason text, at timestamptz)
    WHERE d.tenant_id = p_tenant_id AND d.event_source = c.event_source AND d.event_id = c.event_id;
  applied := jsonb_array_length(v_changed);

  -- Events whose message id no delivery of this tenant carries (mail this worker did not send).
  SELECT count(*)::int INTO unmatched
    FROM jsonb_to_recordset(v_new) AS e(message_id text)
    WHERE e.message_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM email_deliveries d WHERE d.tenant_id = p_tenant_id AND d.provider = p_provider AND d.message_id = e.message_id);

  IF applied = 0 THEN
    suppressed := 0;
    statuses := '{}'::jsonb;
    RETURN NEXT;
    RETURN;
  END IF;

  SELECT jsonb_object_agg(k, n) INTO statuses FROM (
    SELECT CASE WHEN c.status = 'bounced' THEN 'bounced_' || c.bounce_type ELSE c.status END AS k, count(*) AS n
    FROM jsonb_to_recordset(v_changed) AS c(status text, bounce_type text) GROUP BY 1) t;

  -- The sending days' counters: the new status up, the old one down.
  WITH c AS (
    SELECT * FROM jsonb_to_recordset(v_changed)
      AS c(day date, old_status text, old_bounce text, status text, bounce_type text)
  ), delta AS (
    SELECT c.day, k.col, sum(k.d)::int AS d FROM c,
      LATERAL (VALUES (CASE WHEN c.status = 'bounced' THEN 'bounced_' || c.bounce_type ELSE c.status END, 1),
                      (CASE WHEN c.old_status = 'bounced' THEN 'bounced_' || c.old_bounce ELSE c.old_status END, -1)) AS k(col, d)
    WHERE k.col IS NOT NULL
    GROUP BY 1, 2
  )
  INSERT INTO email_feedback_daily AS f (tenant_id, day, delivered, deferred, bounced_hard, bounced_soft, complained, unsubscribed, dropped)
    SELECT p_tenant_id, delta.day,
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'delivered'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'deferred'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'bounced_hard'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'bounced_soft'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'complained'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'unsubscribed'), 0),
           COALESCE(sum(delta.d) FILTER (WHERE delta.col = 'dropped'), 0)
    FROM delta GROUP BY delta.day
  ON CONFLICT (tenant_id, day) DO UPDATE SET
    delivered = f.delivered + EXCLUDED.delivered, deferred = f.deferred + EXCLUDED.deferred,
    bounced_hard = f.bounced_hard + EXCLUDED.bounced_hard, bounced_soft = f.bounced_soft + EXCLUDED.bounced_soft,
    complained = f.complained + EXCLUDED.complained, unsubscribed = f.unsubscribed + EXCLUDED.unsubscribed,
    dropped = f.dropped + EXCLUDED.dropped;

  -- Soft bounces are counted per address; hard bounces, complaints, unsubscribes and drops
  -- suppress at once, soft bounces once an address has p_soft_bounce_limit of them.
  WITH c AS (
    SELECT * FROM jsonb_to_recordset(v_changed) AS c(status text, bounce_type text, recipient text, raw_type text)
    WHERE c.recipient IS NOT NULL AND c.recipient <> ''
  ), soft AS (
    INSERT INTO email_soft_bounces AS s (tenant_id, address, bounces)
      SELECT p_tenant_id, c.recipient, count(*) FROM c WHERE c.status = 'bounced' AND c.bounce_type = 'soft' GROUP BY c.recipient
    ON CONFLICT (tenant_id, address) DO UPDATE SET bounces = s.bounces + EXCLUDED.bounces, last_at = now()
    RETURNING s.address, s.bounces
  ), wanted AS (
    SELECT DISTINCT ON (w.address) w.address, w.reason, w.raw_type FROM (
      SELECT c.recipient AS address,
             CASE c.status WHEN 'bounced' THEN 'hard_bounce' WHEN 'complained' THEN 'complaint' WHEN 'unsubscribed' THEN 'unsubscribe' ELSE 'dropped' END AS reason,
             c.raw_type, 1 AS pri
      FROM c WHERE (c.status = 'bounced' AND c.bounce_type = 'hard') OR c.status IN ('complained', 'unsubscribed', 'dropped')
      UNION ALL
      SELECT soft.address, 'soft_bounce', NULL, 2 FROM soft WHERE p_soft_bounce_limit > 0 AND soft.bounces >= p_soft_bounce_limit
    ) w ORDER BY w.address, w.pri
  ), added AS (
    INSERT INTO email_suppressions (tenant_id, address, reason, source, provider, detail)
      SELECT p_tenant_id, wanted.address, wanted.reason, 'webhook', p_provider, left(wanted.raw_type, 500) FROM wanted
      WHERE length(wanted.address) <= 320
    ON CONFLICT (tenant_id, address) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::int INTO suppressed FROM added;

  -- Events out: one CloudEvent per delivery that became delivered, bounced, complained or
  -- unsubscribed. The id is derived from the delivery and its status, so a consumer can drop a
  -- second publication of the same change by (source, id).
  IF p_publish THEN
    PERFORM email_outbox_add(p_tenant_id, COALESCE(jsonb_agg(jsonb_build_object(
      'ce_id', md5(concat_ws(chr(31), p_tenant_id, c.event_source, c.event_id, c.status, c.bounce_type)),
      'ce_type', 'codetether.email.' || c.status,
      'ce_subject', c.task_id,
      'data', jsonb_build_object('tenant_id', p_tenant_id, 'event_source', c.event_source, 'event_id', c.event_id, 'task_id', c.task_id,
                                 'provider', p_provider, 'message_id', c.message_id, 'status', c.status, 'bounce_type', c.bounce_type,
                                 'provider_event_type', c.raw_type, 'at', c.at))), '[]'::jsonb))
    FROM jsonb_to_recordset(v_changed) AS c(event_source text, event_id text, task_id text, message_id text, status text, bounce_type text, raw_type text, at timestamptz)
    WHERE c.status IN ('delivered', 'bounced', 'complained', 'unsubscribed');
  END IF;

  -- The reputation guard, when this request added a complaint or a hard bounce.
  SELECT EXISTS (SELECT 1 FROM jsonb_to_recordset(v_changed) AS c(status text, bounce_type text)
                 WHERE c.status = 'complained' OR (c.status = 'bounced' AND c.bounce_type = 'hard')) INTO v_bad;
  IF NOT v_bad THEN
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT r.* INTO v_rep FROM tenant_email_reputation r WHERE r.tenant_id = p_tenant_id FOR UPDATE;
  IF v_rep.paused_at IS NOT NULL THEN
    RETURN NEXT;
    RETURN;
  END IF;
  v_from := GREATEST((now() AT TIME ZONE 'UTC')::date - (p_window_days - 1), (v_rep.resumed_at AT TIME ZONE 'UTC')::date);
  SELECT COALESCE(sum(u.sent_count), 0) INTO v_sent FROM tenant_email_usage u WHERE u.tenant_id = p_tenant_id AND u.day >= v_from;
  SELECT COALESCE(sum(f.complained), 0), COALESCE(sum(f.bounced_hard), 0) INTO v_compl, v_hard
    FROM email_feedback_daily f WHERE f.tenant_id = p_tenant_id AND f.day >= v_from;
  v_c_limit := LEAST(p_complaint_threshold, COALESCE(v_rep.complaint_threshold, p_complaint_threshold));
  v_b_limit := LEAST(p_bounce_threshold, COALESCE(v_rep.bounce_threshold, p_bounce_threshold));
  IF v_sent < GREATEST(p_min_volume, 1) THEN
    RETURN NEXT;
    RETURN;
  END IF;
  IF v_compl::numeric / v_sent >= v_c_limit THEN
    paused_reason := 'complaint_rate';
  ELSIF v_hard::numeric / v_sent >= v_b_limit THEN
    paused_reason := 'bounce_rate';
  ELSE
    RETURN NEXT;
    RETURN;
  END IF;
  paused_detail := jsonb_build_object('sent', v_sent, 'complaints', v_compl, 'hard_bounces', v_hard, 'since', v_from,
    'complaint_rate', round(v_compl::numeric / v_sent, 6), 'bounce_rate', round(v_hard::numeric / v_sent, 6),
    'complaint_threshold', v_c_limit, 'bounce_threshold', v_b_limit);
  INSERT INTO tenant_email_reputation AS r (tenant_id, paused_at, paused_reason, paused_detail)
    VALUES (p_tenant_id, now(), paused_reason, paused_detail)
  ON CONFLICT (tenant_id) DO UPDATE SET paused_at = now(), paused_reason = EXCLUDED.paused_reason,
    paused_detail = EXCLUDED.paused_detail, updated_at = now();
  IF p_publish THEN
    PERFORM email_outbox_add(p_tenant_id, jsonb_build_array(jsonb_build_object(
      'ce_id', md5(concat_ws(chr(31), p_tenant_id, 'tenant_paused', now()::text)),
      'ce_type', 'codetether.email.tenant_paused',
      'ce_subject', p_tenant_id,
      'data', jsonb_build_object('tenant_id', p_tenant_id, 'reason', paused_reason, 'detail', paused_detail, 'paused_at', now()))));
  END IF;
  RETURN NEXT;
END
$$;

-- The outbox (sql/010). Add: the caller's tenant context must be the tenant it writes for.
CREATE OR REPLACE FUNCTION email_outbox_add(p_tenant_id text, p_events jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_n integer;
BEGIN
  IF p_tenant_id IS DISTINCT FROM NULLIF(current_setting('app.current_tenant_id', true), '') THEN
    RAISE EXCEPTION 'email_outbox_add: tenant % is not the transaction''s tenant context', p_tenant_id USING ERRCODE = '42501';
  END IF;
  INSERT INTO public.email_outbox (tenant_id, ce_id, ce_type, ce_subject, data)
    SELECT p_tenant_id, e.ce_id, e.ce_type, e.ce_subject, e.data
    FROM jsonb_to_recordset(p_events) AS e(ce_id text, ce_type text, ce_subject text, data jsonb);
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;

-- Take up to p_limit rows that are due, across tenants; each is due again after a backoff
-- (2^attempts seconds, at most 5 minutes) unless email_outbox_done deletes it first.
CREATE OR REPLACE FUNCTION email_outbox_take(p_limit integer)
RETURNS TABLE (id bigint, tenant_id text, ce_id text, ce_type text, ce_subject text, data jsonb, attempts integer, created_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  UPDATE public.email_outbox o
    SET attempts = o.attempts + 1,
        next_attempt_at = now() + make_interval(secs => LEAST(300, power(2, LEAST(o.attempts + 1, 9))))
  WHERE o.id IN (SELECT q.id FROM public.email_outbox q WHERE q.next_attempt_at <= now()
                 ORDER BY q.next_attempt_at, q.id LIMIT p_limit FOR UPDATE SKIP LOCKED)
  RETURNING o.id, o.tenant_id, o.ce_id, o.ce_type, o.ce_subject, o.data, o.attempts, o.created_at
$$;

CREATE OR REPLACE FUNCTION email_outbox_done(p_ids bigint[]) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  WITH d AS (DELETE FROM public.email_outbox o WHERE o.id = ANY(p_ids) RETURNING 1) SELECT count(*)::int FROM d
$$;

-- What is waiting (for /metrics): rows and the age of the oldest, nothing else.
CREATE OR REPLACE FUNCTION email_outbox_backlog() RETURNS TABLE (pending bigint, oldest_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(o.created_at)), 0)::double precision FROM public.email_outbox o
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
  -- Rows of tables whose secret is optional (tenant_email_webhooks) may have no key: not counted.
  IF TG_OP = 'UPDATE' AND OLD.key_id IS NOT DISTINCT FROM NEW.key_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.key_id IS NOT NULL THEN
    UPDATE public.email_encryption_key_use SET settings_rows = settings_rows - 1 WHERE key_id = OLD.key_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.key_id IS NOT NULL THEN
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
REVOKE ALL ON FUNCTION email_quota_slot_cap(integer, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_quota_start_slot(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_quota_give_back(text, date, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text, text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_delivery_status_rank(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_apply_feedback(text, text, jsonb, integer, numeric, numeric, integer, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_outbox_add(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_outbox_take(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_outbox_done(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_outbox_backlog() FROM PUBLIC;
REVOKE ALL ON FUNCTION admin_api_key_lookup(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION admin_api_key_touch(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION email_encryption_key_count() FROM PUBLIC;
REVOKE ALL ON FUNCTION email_encryption_key_census() FROM PUBLIC;
