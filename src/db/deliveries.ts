import type { ProviderName, SenderSettings, SenderTier, TemplateUse } from '../types';
import { type Sql, callDeadline } from './connect';
import { bounded } from './deadline';
import { tenantSenderSettings, type SenderSettingsRow } from './settings';
import type { KeyRing } from '../config/require';
import { WorkerError } from '../errors';

/** The hot path's two round trips: email_claim_event and email_record_outcome (sql/002). */

export interface ClaimRequest {
  tenantId: string;
  eventSource: string;
  eventId: string;
  eventType: string;
  taskId: string;
  hasRecipient: boolean;
  /** Checked against the tenant's suppression list in the same call (sql/009). */
  recipient?: string | null | undefined;
  /** Drawn by the caller (a random UUID), who then knows its claim even when the answer is lost; omitted, the database draws one. */
  claimToken?: string | undefined;
}

export type ClaimResult =
  | {
      outcome: 'claimed';
      claimToken: string;
      settings: SenderSettings | null;
      dailyLimit: number;
      /** The version of the tenant's template for this event type; null when it has none. */
      templateVersion: number | null;
    }
  | { outcome: 'quota_exceeded'; dailyLimit: number }
  | { outcome: 'suppressed'; reason: string }
  | { outcome: 'duplicate' | 'in_flight' | 'skipped_disabled' | 'skipped_no_recipient' | 'unknown_tenant' | 'tenant_paused' };

export interface OutcomeRecord {
  tenantId: string;
  eventSource: string;
  eventId: string;
  claimToken: string;
  status: 'sent' | 'failed';
  provider: ProviderName | null;
  messageId: string | null;
  errorCode: string | null;
  templateSource: TemplateUse | null;
  templateVersion: number | null;
  senderTier: SenderTier | null;
  senderNote: string | null;
}

export interface DeliveryStore {
  claim(req: ClaimRequest): Promise<ClaimResult>;
  /** False when the claim was lost (its lease expired and a redelivery took it over). */
  recordOutcome(rec: OutcomeRecord): Promise<boolean>;
}

export function createDeliveryStore(
  sql: Sql,
  opts: {
    keys: KeyRing;
    leaseSeconds: number;
    globalDailyLimit: number | null;
    /** DB_POOL_WAIT_MS: the claim's own deadline, the wait for a connection included; unset, the pool's. */
    claimWaitMs?: number | undefined;
  },
): DeliveryStore {
  const { current, previous } = opts.keys;
  // The longest one call may take, waiting for a connection included (postgres.js queues a query
  // while it reconnects, however long the database is away): the pool's deadline (createSql).
  // Past it the query is cancelled and the call fails with database_unavailable, so the worker
  // answers in time.
  const deadline = callDeadline(sql);
  // The claim is an event's first call, so it is the one that waits when every connection (or,
  // behind PgBouncer, every server connection) is taken. It waits DB_POOL_WAIT_MS at most: an
  // event turned away then costs the broker a retry, where one queued here would hold memory and
  // a request slot while the pool cannot serve it. Cancelling it is safe: the claim is one
  // statement (rolled back whole), and one that committed as the cancel came is given up by its
  // token (processEvent).
  // DB_POOL_WAIT_MS, when it is the shorter of the two.
  const claimWait = opts.claimWaitMs !== undefined && opts.claimWaitMs <= (deadline ?? Infinity) ? opts.claimWaitMs : undefined;
  const claimDeadline = claimWait ?? deadline;
  const poolWait = (err: unknown): never => {
    if (claimWait !== undefined && (err as { code?: string }).code === 'DEADLINE') {
      throw new WorkerError('database_unavailable', `no database connection answered the claim within DB_POOL_WAIT_MS (${claimWait} ms)`, { retryAfterSeconds: 1 });
    }
    throw err;
  };
  return {
    async claim(req) {
      const [r] = await bounded(sql`
        SELECT * FROM email_claim_event(
          ${req.tenantId}, ${req.eventSource}, ${req.eventId}, ${req.eventType}, ${req.taskId},
          ${req.hasRecipient}, ${opts.leaseSeconds}, ${opts.globalDailyLimit}::integer,
          ${current.id}, ${current.secret}, ${previous?.id ?? null}::text, ${previous?.secret ?? null}::text,
          ${req.claimToken ?? null}::uuid, ${req.recipient ?? null}::text)`, claimDeadline).catch(poolWait);
      if (!r) throw new Error('email_claim_event returned no row');
      switch (r.outcome) {
        case 'claimed':
          return {
            outcome: 'claimed',
            claimToken: r.claim_token,
            dailyLimit: r.daily_limit,
            templateVersion: r.template_version === null ? null : Number(r.template_version),
            settings:
              r.settings_source === 'tenant'
                ? tenantSenderSettings({
                    ...(r as unknown as SenderSettingsRow),
                    from_domain: r.from_domain_status ? { status: r.from_domain_status, provider: r.from_domain_provider } : null,
                    version: r.settings_version,
                  })
                : null,
          };
        case 'quota_exceeded':
          return { outcome: 'quota_exceeded', dailyLimit: r.daily_limit };
        case 'suppressed':
          return { outcome: 'suppressed', reason: r.suppression_reason };
        case 'tenant_paused':
        case 'duplicate':
        case 'in_flight':
        case 'skipped_disabled':
        case 'skipped_no_recipient':
        case 'unknown_tenant':
          return { outcome: r.outcome };
        default:
          throw new Error(`email_claim_event returned an unknown outcome ${String(r.outcome)}`);
      }
    },

    async recordOutcome(rec) {
      const [r] = await bounded(sql`
        SELECT email_record_outcome(
          ${rec.tenantId}, ${rec.eventSource}, ${rec.eventId}, ${rec.claimToken}::uuid,
          ${rec.status}, ${rec.provider}::text, ${rec.messageId}::text, ${rec.errorCode}::text,
          ${rec.templateSource}::text, ${rec.templateVersion}::bigint, ${rec.senderTier}::text, ${rec.senderNote}::text) AS ok`, deadline);
      return Boolean(r?.ok);
    },
  };
}
