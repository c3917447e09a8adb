-- Grants to the worker role (WORKER_DB_ROLE, default email_worker), re-applied by every
-- `tenant-email migrate` so that a renamed role gets them too. {{worker_role}} is replaced by the
-- role's quoted identifier. DML only: no TRUNCATE, no REFERENCES, no ownership, no DDL.
-- An admin API role of its own (ADMIN_DB_ROLE) gets these too: it writes settings, templates
-- and domains, and its test send runs the worker's own path.

GRANT USAGE ON SCHEMA public TO {{worker_role}};

-- Read which kind of tenants table this is, nothing else.
GRANT SELECT ON email_worker_meta TO {{worker_role}};

GRANT SELECT, INSERT, DELETE ON tenant_email_settings TO {{worker_role}};
GRANT UPDATE (provider, api_key_encrypted, api_key_hint, from_email, from_name, reply_to_domain,
              provider_settings, enabled, daily_limit, fallback_provider, fallback_api_key_encrypted,
              fallback_api_key_hint, fallback_provider_settings, key_id, version, updated_at,
              list_unsubscribe, extra_headers)
  ON tenant_email_settings TO {{worker_role}};

GRANT SELECT, INSERT, DELETE ON tenant_email_templates TO {{worker_role}};
GRANT UPDATE (subject, html, text, version, updated_at) ON tenant_email_templates TO {{worker_role}};
-- nextval() for a new template version; never setval().
GRANT USAGE ON SEQUENCE tenant_email_template_version_seq TO {{worker_role}};

GRANT SELECT, INSERT, DELETE ON tenant_email_domains TO {{worker_role}};
GRANT UPDATE (provider, provider_domain_id, status, dns_records, verified_at, checked_at, updated_at)
  ON tenant_email_domains TO {{worker_role}};

GRANT SELECT, INSERT ON tenant_email_usage TO {{worker_role}};
GRANT UPDATE (sent_count) ON tenant_email_usage TO {{worker_role}};

GRANT SELECT, INSERT ON email_deliveries TO {{worker_role}};
GRANT UPDATE (event_type, task_id, status, attempts, duplicates, claim_token, lease_expires_at, quota_day, quota_slot,
              settings_source, provider, message_id, error_code, updated_at,
              template_source, template_version, sender_tier, sender_note)
  ON email_deliveries TO {{worker_role}};

-- Delivery feedback (sql/009). The claim reads the suppression list and the pause; the admin API
-- manages both, the webhook set-up and the counters, and its receivers write through
-- email_apply_feedback (grants_admin.sql).
GRANT SELECT, INSERT, DELETE ON email_suppressions TO {{worker_role}};
GRANT SELECT, INSERT, DELETE ON email_soft_bounces TO {{worker_role}};
GRANT SELECT, INSERT ON email_suppression_log TO {{worker_role}};
GRANT UPDATE (bounces, last_at) ON email_soft_bounces TO {{worker_role}};
GRANT SELECT, INSERT ON tenant_email_reputation TO {{worker_role}};
GRANT UPDATE (paused_at, paused_reason, paused_detail, complaint_threshold, bounce_threshold, resumed_at, resumed_by, updated_at)
  ON tenant_email_reputation TO {{worker_role}};
GRANT SELECT, INSERT, DELETE ON tenant_email_webhooks TO {{worker_role}};
GRANT UPDATE (public_key, signing_secret_encrypted, signing_secret_hint, topic_arns, basic_username, basic_password_sha256,
              key_id, provider_webhook_id, registered_at, updated_at)
  ON tenant_email_webhooks TO {{worker_role}};
GRANT SELECT, INSERT, DELETE ON email_webhook_receipts TO {{worker_role}};
GRANT SELECT, INSERT ON email_feedback_daily TO {{worker_role}};
GRANT UPDATE (delivered, deferred, bounced_hard, bounced_soft, complained, unsubscribed, dropped) ON email_feedback_daily TO {{worker_role}};
GRANT UPDATE (delivery_status, bounce_type, delivery_raw_type, delivery_reason, delivery_status_at) ON email_deliveries TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_delivery_status_rank(text, text) TO {{worker_role}};

-- The provider outage switch (sql/012): read only; ops write it through the maintenance connection.
GRANT SELECT ON email_disabled_providers TO {{worker_role}};

-- The dead-letter store (sql/011): the worker stores, the admin API and the CLI read and mark replays.
GRANT SELECT, INSERT, DELETE ON email_dead_letters TO {{worker_role}};
GRANT UPDATE (event_type, content_type, attributes, body, body_truncated, http_status, error_dest, error_data, error_code,
              dead_lettered, received_at, replays, replayed_at, replay_status, replay_target)
  ON email_dead_letters TO {{worker_role}};

GRANT EXECUTE ON FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text, uuid, text)
  TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_quota_take(text, date, integer, text) TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_quota_slot_cap(integer, smallint), email_quota_start_slot(text) TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_from_domain(text, text) TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_quota_give_back(text, date, smallint) TO {{worker_role}};
GRANT EXECUTE ON FUNCTION email_record_outcome(text, text, text, uuid, text, text, text, text, text, bigint, text, text) TO {{worker_role}};

-- Our own tenants table (only when we created it): the worker may add a tenant's row when its
-- settings are first written. A platform-owned tenants table gets no grant from us.
DO $$
BEGIN
  IF (SELECT value FROM email_worker_meta WHERE key = 'tenants_table') = 'owned' THEN
    EXECUTE 'GRANT SELECT, INSERT ON tenants TO {{worker_role}}';
  END IF;
END
$$;

-- The admin API key functions are not here: grants_admin.sql gives them to the admin API's
-- role only (ADMIN_DB_ROLE; the worker role itself when the two are one).

-- Which encryption keys the stored settings need (sql/006): key ids and counts only.
GRANT EXECUTE ON FUNCTION email_encryption_key_census() TO {{worker_role}};
