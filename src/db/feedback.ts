import type { FeedbackConfig } from '../config';
import type { KeyRing } from '../config/require';
import type { WebhookProvider } from '../types';
import { type Sql, callDeadline } from './connect';
import { bounded } from './deadline';
import { PGP_OPTIONS, keyFor, withTenant } from './settings';

/**
 * Delivery feedback in the database (DESIGN §9): the webhook set-up per tenant and provider,
 * applying a verified webhook request (email_apply_feedback, one round trip), the suppression
 * list, and the reputation guard's pause. Everything runs under the tenant's RLS context.
 */

/** The platform's limits (FeedbackConfig: SOFT_BOUNCE_SUPPRESS_AFTER, REPUTATION_*); a tenant may lower the thresholds, never raise them. */
export type FeedbackPolicy = Pick<FeedbackConfig, 'softBounceLimit' | 'complaintThreshold' | 'bounceThreshold' | 'minVolume' | 'windowDays'>;

export interface FeedbackEventRow {
  id: string;
  message_id: string | null;
  recipient: string | null;
  status: string;
  bounce_type: string | null;
  raw_type: string;
  reason: string | null;
  at: string | null;
}

export interface AppliedFeedback {
  received: number;
  duplicates: number;
  applied: number;
  unmatched: number;
  suppressed: number;
  /** New statuses by kind (bounced split into bounced_hard / bounced_soft). */
  statuses: Record<string, number>;
  /** Set when this request made the guard pause the tenant. */
  paused: { reason: 'complaint_rate' | 'bounce_rate'; detail: Record<string, unknown> } | null;
}

export async function applyFeedback(sql: Sql, tenantId: string, provider: WebhookProvider, events: FeedbackEventRow[], policy: FeedbackPolicy, publish = false): Promise<AppliedFeedback> {
  const [r] = await bounded(
    sql`SELECT * FROM email_apply_feedback(${tenantId}, ${provider}, ${sql.json(events as never)}, ${policy.softBounceLimit},
          ${policy.complaintThreshold}::numeric, ${policy.bounceThreshold}::numeric, ${policy.minVolume}, ${policy.windowDays}, ${publish})`,
    callDeadline(sql),
  );
  if (!r) throw new Error('email_apply_feedback returned no row');
  return {
    received: r.received,
    duplicates: r.duplicates,
    applied: r.applied,
    unmatched: r.unmatched,
    suppressed: r.suppressed,
    statuses: (r.statuses ?? {}) as Record<string, number>,
    paused: r.paused_reason ? { reason: r.paused_reason, detail: r.paused_detail ?? {} } : null,
  };
}

// --- webhook set-up ---------------------------------------------------------------------------

/** What the receivers verify against; secrets decrypted. */
export interface WebhookVerifier {
  publicKey: string | null;
  signingSecret: string | null;
  topicArns: string[];
  basicUsername: string | null;
  basicPasswordSha256: Buffer | null;
}

export interface MaskedWebhook {
  provider: WebhookProvider;
  public_key: string | null;
  signing_secret_set: boolean;
  signing_secret_hint: string | null;
  topic_arns: string[];
  basic_username: string | null;
  basic_password_set: boolean;
  provider_webhook_id: string | null;
  registered_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface WebhookWrite {
  publicKey?: string | null | undefined;
  signingSecret?: string | null | undefined;
  signingSecretHint?: string | null | undefined;
  topicArns?: string[] | undefined;
  basicUsername?: string | null | undefined;
  basicPasswordSha256?: Buffer | null | undefined;
  providerWebhookId?: string | null | undefined;
  registered?: boolean | undefined;
}

const MASKED_COLUMNS = 'provider, public_key, signing_secret_encrypted IS NOT NULL AS signing_secret_set, signing_secret_hint, to_jsonb(topic_arns) AS topic_arns, basic_username, basic_password_sha256 IS NOT NULL AS basic_password_set, provider_webhook_id, registered_at, created_at, updated_at';

function masked(r: Record<string, unknown>): MaskedWebhook {
  const t = (v: unknown) => (v instanceof Date ? v.toISOString() : v === null || v === undefined ? null : String(v));
  return {
    provider: r.provider as WebhookProvider,
    public_key: (r.public_key as string | null) ?? null,
    signing_secret_set: Boolean(r.signing_secret_set),
    signing_secret_hint: (r.signing_secret_hint as string | null) ?? null,
    topic_arns: (r.topic_arns as string[] | null) ?? [],
    basic_username: (r.basic_username as string | null) ?? null,
    basic_password_set: Boolean(r.basic_password_set),
    provider_webhook_id: (r.provider_webhook_id as string | null) ?? null,
    registered_at: t(r.registered_at),
    created_at: t(r.created_at) as string,
    updated_at: t(r.updated_at) as string,
  };
}

/**
 * Create or change a tenant's webhook set-up for one provider. Fields left undefined keep their
 * stored value; a stored signing secret is re-encrypted under the current key when kept.
 */
export async function putWebhook(sql: Sql, keys: KeyRing, tenantId: string, provider: WebhookProvider, w: WebhookWrite): Promise<{ created: boolean; webhook: MaskedWebhook }> {
  const cur = keys.current;
  return withTenant(sql, tenantId, async (tx) => {
    const [old] = await tx`SELECT key_id FROM tenant_email_webhooks WHERE tenant_id = ${tenantId} AND provider = ${provider} FOR UPDATE`;
    const oldKey = old?.key_id ? keyFor(keys, old.key_id as string) : undefined;
    if (old?.key_id && !oldKey && w.signingSecret === undefined) {
      throw new Error(`the stored signing secret was encrypted with key id ${String(old.key_id)}, which this process does not hold`);
    }
    const keep = (v: unknown) => v === undefined;
    const [r] = await tx`
      INSERT INTO tenant_email_webhooks AS h (tenant_id, provider, public_key, signing_secret_encrypted, signing_secret_hint, topic_arns,
                                              basic_username, basic_password_sha256, key_id, provider_webhook_id, registered_at)
      VALUES (${tenantId}, ${provider}, ${w.publicKey ?? null},
              CASE WHEN ${w.signingSecret ?? null}::text IS NULL THEN NULL ELSE pgp_sym_encrypt(${w.signingSecret ?? null}::text, ${cur.secret}::text, ${PGP_OPTIONS}) END,
              ${w.signingSecretHint ?? null}, ARRAY(SELECT jsonb_array_elements_text(${tx.json((w.topicArns ?? []) as never)}::jsonb)), ${w.basicUsername ?? null}, ${w.basicPasswordSha256 ?? null},
              CASE WHEN ${w.signingSecret ?? null}::text IS NULL THEN NULL ELSE ${cur.id}::text END,
              ${w.providerWebhookId ?? null}, CASE WHEN ${w.registered === true} THEN now() END)
      ON CONFLICT (tenant_id, provider) DO UPDATE SET
        public_key = CASE WHEN ${keep(w.publicKey)} THEN h.public_key ELSE EXCLUDED.public_key END,
        signing_secret_encrypted = CASE
          WHEN NOT ${keep(w.signingSecret)} THEN EXCLUDED.signing_secret_encrypted
          WHEN h.signing_secret_encrypted IS NULL THEN NULL
          ELSE pgp_sym_encrypt(pgp_sym_decrypt(h.signing_secret_encrypted, ${oldKey?.secret ?? null}::text), ${cur.secret}::text, ${PGP_OPTIONS}) END,
        signing_secret_hint = CASE WHEN ${keep(w.signingSecret)} THEN h.signing_secret_hint ELSE EXCLUDED.signing_secret_hint END,
        key_id = CASE
          WHEN NOT ${keep(w.signingSecret)} THEN EXCLUDED.key_id
          WHEN h.signing_secret_encrypted IS NULL THEN NULL
          ELSE ${cur.id}::text END,
        topic_arns = CASE WHEN ${keep(w.topicArns)} THEN h.topic_arns ELSE EXCLUDED.topic_arns END,
        basic_username = CASE WHEN ${keep(w.basicUsername)} THEN h.basic_username ELSE EXCLUDED.basic_username END,
        basic_password_sha256 = CASE WHEN ${keep(w.basicPasswordSha256)} THEN h.basic_password_sha256 ELSE EXCLUDED.basic_password_sha256 END,
        provider_webhook_id = CASE WHEN ${keep(w.providerWebhookId)} THEN h.provider_webhook_id ELSE EXCLUDED.provider_webhook_id END,
        registered_at = CASE WHEN ${w.registered === true} THEN now() ELSE h.registered_at END,
        updated_at = now()
      RETURNING (xmax::text = '0') AS created, ${tx.unsafe(MASKED_COLUMNS)}`;
    return { created: Boolean(r!.created), webhook: masked(r!) };
  });
}

export async function getWebhook(sql: Sql, tenantId: string, provider: WebhookProvider): Promise<MaskedWebhook | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`SELECT ${tx.unsafe(MASKED_COLUMNS)} FROM tenant_email_webhooks WHERE tenant_id = ${tenantId} AND provider = ${provider}`;
    return r ? masked(r) : null;
  });
}

export async function deleteWebhook(sql: Sql, tenantId: string, provider: WebhookProvider): Promise<boolean> {
  return withTenant(sql, tenantId, async (tx) => {
    const r = await tx`DELETE FROM tenant_email_webhooks WHERE tenant_id = ${tenantId} AND provider = ${provider}`;
    return r.count > 0;
  });
}

/** The verification material the receiver checks a request against; null when the tenant set none up. */
export async function loadWebhookVerifier(sql: Sql, keys: KeyRing, tenantId: string, provider: WebhookProvider): Promise<WebhookVerifier | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`
      SELECT public_key, to_jsonb(topic_arns) AS topic_arns, basic_username, basic_password_sha256, key_id,
             CASE key_id WHEN ${keys.current.id}::text THEN pgp_sym_decrypt(signing_secret_encrypted, ${keys.current.secret}::text)
                         WHEN ${keys.previous?.id ?? null}::text THEN pgp_sym_decrypt(signing_secret_encrypted, ${keys.previous?.secret ?? null}::text)
             END AS signing_secret
      FROM tenant_email_webhooks WHERE tenant_id = ${tenantId} AND provider = ${provider}`;
    if (!r) return null;
    return {
      publicKey: r.public_key ?? null,
      signingSecret: r.signing_secret ?? null,
      topicArns: r.topic_arns ?? [],
      basicUsername: r.basic_username ?? null,
      basicPasswordSha256: r.basic_password_sha256 ?? null,
    };
  });
}

// --- suppression list -------------------------------------------------------------------------

export const SUPPRESSION_REASONS = ['hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'dropped', 'manual'] as const;
export type SuppressionReason = (typeof SUPPRESSION_REASONS)[number];

export interface Suppression {
  address: string;
  reason: SuppressionReason;
  source: 'webhook' | 'unsubscribe' | 'admin';
  provider: string | null;
  detail: string | null;
  created_by: string | null;
  created_at: string;
}

const suppression = (r: Record<string, unknown>): Suppression => ({
  address: r.address as string,
  reason: r.reason as SuppressionReason,
  source: r.source as Suppression['source'],
  provider: (r.provider as string | null) ?? null,
  detail: (r.detail as string | null) ?? null,
  created_by: (r.created_by as string | null) ?? null,
  created_at: (r.created_at as Date).toISOString(),
});

/** One page in address order; `cursor` is the last address of the previous page. */
export async function listSuppressions(sql: Sql, tenantId: string, q: { reason?: SuppressionReason | undefined; cursor?: string | undefined; limit: number }): Promise<{ items: Suppression[]; next_cursor: string | null }> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`
      SELECT * FROM email_suppressions
      WHERE tenant_id = ${tenantId}
        ${q.reason ? tx`AND reason = ${q.reason}` : tx``}
        ${q.cursor ? tx`AND address > ${q.cursor}` : tx``}
      ORDER BY address LIMIT ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(suppression);
    return { items, next_cursor: rows.length > q.limit ? items[items.length - 1]!.address : null };
  });
}

export async function getSuppression(sql: Sql, tenantId: string, address: string): Promise<Suppression | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`SELECT * FROM email_suppressions WHERE tenant_id = ${tenantId} AND address = ${address.toLowerCase()}`;
    return r ? suppression(r) : null;
  });
}

/** Add an address by hand (or by the unsubscribe link); an address already listed keeps its first reason. */
export async function addSuppression(
  sql: Sql,
  tenantId: string,
  s: { address: string; reason: SuppressionReason; source: 'admin' | 'unsubscribe'; actor: string | null; note: string | null },
  /** A CloudEvent for the outbox (sql/010), written in the same transaction when the address is new. */
  publish?: { ceId: string; ceType: string; data: Record<string, unknown> },
): Promise<{ created: boolean; suppression: Suppression }> {
  const address = s.address.toLowerCase();
  return withTenant(sql, tenantId, async (tx) => {
    const [ins] = await tx`
      INSERT INTO email_suppressions (tenant_id, address, reason, source, detail, created_by)
      VALUES (${tenantId}, ${address}, ${s.reason}, ${s.source}, ${s.note}, ${s.actor})
      ON CONFLICT (tenant_id, address) DO NOTHING RETURNING *`;
    if (ins) await tx`INSERT INTO email_suppression_log (tenant_id, address, action, reason, actor, note) VALUES (${tenantId}, ${address}, 'added', ${s.reason}, ${s.actor}, ${s.note})`;
    if (ins && publish) {
      await tx`SELECT email_outbox_add(${tenantId}, ${tx.json([{ ce_id: publish.ceId, ce_type: publish.ceType, ce_subject: null, data: publish.data }] as never)})`;
    }
    const [r] = ins ? [ins] : await tx`SELECT * FROM email_suppressions WHERE tenant_id = ${tenantId} AND address = ${address}`;
    return { created: Boolean(ins), suppression: suppression(r!) };
  });
}

/** Remove an address (and its soft-bounce count), recording who and why. */
export async function removeSuppression(sql: Sql, tenantId: string, address: string, by: { actor: string | null; note: string | null }): Promise<boolean> {
  const a = address.toLowerCase();
  return withTenant(sql, tenantId, async (tx) => {
    const [gone] = await tx`DELETE FROM email_suppressions WHERE tenant_id = ${tenantId} AND address = ${a} RETURNING reason`;
    await tx`DELETE FROM email_soft_bounces WHERE tenant_id = ${tenantId} AND address = ${a}`;
    if (!gone) return false;
    await tx`INSERT INTO email_suppression_log (tenant_id, address, action, reason, actor, note) VALUES (${tenantId}, ${a}, 'removed', ${gone.reason}, ${by.actor}, ${by.note})`;
    return true;
  });
}

// --- reputation guard -------------------------------------------------------------------------

export interface Reputation {
  paused: boolean;
  paused_at: string | null;
  paused_reason: string | null;
  paused_detail: Record<string, unknown> | null;
  complaint_threshold: number;
  bounce_threshold: number;
  resumed_at: string | null;
  resumed_by: string | null;
}

function reputation(r: Record<string, unknown> | undefined, policy: FeedbackPolicy): Reputation {
  const t = (v: unknown) => (v instanceof Date ? v.toISOString() : null);
  const lower = (own: unknown, platform: number) => (own === null || own === undefined ? platform : Math.min(Number(own), platform));
  return {
    paused: Boolean(r?.paused_at),
    paused_at: t(r?.paused_at),
    paused_reason: (r?.paused_reason as string | null) ?? null,
    paused_detail: (r?.paused_detail as Record<string, unknown> | null) ?? null,
    complaint_threshold: lower(r?.complaint_threshold, policy.complaintThreshold),
    bounce_threshold: lower(r?.bounce_threshold, policy.bounceThreshold),
    resumed_at: t(r?.resumed_at),
    resumed_by: (r?.resumed_by as string | null) ?? null,
  };
}

export async function getReputation(sql: Sql, tenantId: string, policy: FeedbackPolicy): Promise<Reputation> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`SELECT * FROM tenant_email_reputation WHERE tenant_id = ${tenantId}`;
    return reputation(r, policy);
  });
}

/** A tenant's own thresholds: stored as given, applied as the lower of them and the platform's. null: the platform's. */
export async function setThresholds(sql: Sql, tenantId: string, t: { complaint: number | null; bounce: number | null }, policy: FeedbackPolicy): Promise<Reputation> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`
      INSERT INTO tenant_email_reputation AS r (tenant_id, complaint_threshold, bounce_threshold)
      VALUES (${tenantId}, ${t.complaint}, ${t.bounce})
      ON CONFLICT (tenant_id) DO UPDATE SET complaint_threshold = EXCLUDED.complaint_threshold, bounce_threshold = EXCLUDED.bounce_threshold, updated_at = now()
      RETURNING *`;
    return reputation(r, policy);
  });
}

/** Lift the guard's pause; the rolling window restarts on the day of the resume. Null when the tenant was not paused. */
export async function resumeTenant(sql: Sql, tenantId: string, by: string | null, policy: FeedbackPolicy): Promise<{ was_paused: boolean; reputation: Reputation }> {
  return withTenant(sql, tenantId, async (tx) => {
    const [before] = await tx`SELECT paused_at FROM tenant_email_reputation WHERE tenant_id = ${tenantId} FOR UPDATE`;
    const [r] = await tx`
      UPDATE tenant_email_reputation SET paused_at = NULL, paused_reason = NULL, paused_detail = NULL,
        resumed_at = CASE WHEN paused_at IS NOT NULL THEN now() ELSE resumed_at END,
        resumed_by = CASE WHEN paused_at IS NOT NULL THEN ${by} ELSE resumed_by END, updated_at = now()
      WHERE tenant_id = ${tenantId} RETURNING *`;
    return { was_paused: Boolean(before?.paused_at), reputation: reputation(r, policy) };
  });
}
