import type { Sql } from './connect';
import { withTenant } from './settings';

export interface DayStats {
  day: string;
  sent: number;
  failed: number;
  skipped: number;
  quota_exceeded: number;
  in_flight: number;
  duplicates: number;
  /** Not sent: the recipient is on the tenant's suppression list. */
  suppressed: number;
  /** Not sent: the reputation guard had paused the tenant (replayable after resume). */
  paused: number;
  // What the providers' webhooks said about the sent ones (DESIGN §9): each delivery's latest status.
  delivered: number;
  deferred: number;
  bounced: number;
  bounced_hard: number;
  bounced_soft: number;
  complained: number;
  unsubscribed: number;
  dropped: number;
  /** Fractions of `sent` (0 when nothing was sent). */
  rates: { delivered: number; bounced: number; complained: number; unsubscribed: number };
}

export interface TenantStats {
  tenant_id: string;
  days: number;
  today: { day: string; used: number; daily_limit: number | null };
  by_day: DayStats[];
  by_provider: Record<string, { sent: number; failed: number }>;
  totals: Omit<DayStats, 'day'>;
}

type Count = Exclude<keyof DayStats, 'day' | 'rates'>;
const STATUS_KEY: Record<string, Count> = {
  sent: 'sent', failed: 'failed', skipped: 'skipped', quota_exceeded: 'quota_exceeded', claimed: 'in_flight', suppressed: 'suppressed', paused: 'paused',
};
const DELIVERY_KEY: Record<string, Count> = {
  delivered: 'delivered', deferred: 'deferred', bounced: 'bounced', complained: 'complained', unsubscribed: 'unsubscribed', dropped: 'dropped',
};
const rate = (n: number, of: number) => (of > 0 ? Math.round((n / of) * 1e6) / 1e6 : 0);
function withRates(d: Omit<DayStats, 'day'>): void {
  d.rates = { delivered: rate(d.delivered, d.sent), bounced: rate(d.bounced, d.sent), complained: rate(d.complained, d.sent), unsubscribed: rate(d.unsubscribed, d.sent) };
}

/** Per UTC day and status from the delivery ledger, per provider, and today's usage against the limit. */
export async function tenantStats(sql: Sql, tenantId: string, days: number, globalDailyLimit: number | null): Promise<TenantStats> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`
      SELECT to_char((created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, status, provider, delivery_status, bounce_type,
             count(*)::int AS n, COALESCE(sum(duplicates), 0)::int AS dups
      FROM email_deliveries
      WHERE tenant_id = ${tenantId} AND created_at >= (now() AT TIME ZONE 'UTC')::date - ${days - 1}::int
      GROUP BY 1, 2, 3, 4, 5 ORDER BY 1`;
    const [today] = await tx`
      SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day,
             COALESCE((SELECT sum(sent_count) FROM tenant_email_usage WHERE tenant_id = ${tenantId} AND day = (now() AT TIME ZONE 'UTC')::date), 0)::int AS used,
             (SELECT daily_limit FROM tenant_email_settings WHERE tenant_id = ${tenantId}) AS daily_limit`;
    const empty = (): Omit<DayStats, 'day'> => ({
      sent: 0, failed: 0, skipped: 0, quota_exceeded: 0, in_flight: 0, duplicates: 0, suppressed: 0, paused: 0,
      delivered: 0, deferred: 0, bounced: 0, bounced_hard: 0, bounced_soft: 0, complained: 0, unsubscribed: 0, dropped: 0,
      rates: { delivered: 0, bounced: 0, complained: 0, unsubscribed: 0 },
    });
    const byDay = new Map<string, DayStats>();
    const byProvider: TenantStats['by_provider'] = {};
    const totals = empty();
    for (const r of rows) {
      const d = byDay.get(r.day) ?? { day: r.day as string, ...empty() };
      byDay.set(r.day, d);
      const k = STATUS_KEY[r.status as string];
      if (k) {
        d[k] += r.n;
        totals[k] += r.n;
      }
      d.duplicates += r.dups;
      totals.duplicates += r.dups;
      const ds = r.delivery_status ? DELIVERY_KEY[r.delivery_status as string] : undefined;
      if (ds) {
        d[ds] += r.n;
        totals[ds] += r.n;
        if (r.bounce_type === 'hard' || r.bounce_type === 'soft') {
          const bk = r.bounce_type === 'hard' ? 'bounced_hard' : 'bounced_soft';
          d[bk] += r.n;
          totals[bk] += r.n;
        }
      }
      if (r.provider && (r.status === 'sent' || r.status === 'failed')) {
        const p = (byProvider[r.provider] ??= { sent: 0, failed: 0 });
        p[r.status as 'sent' | 'failed'] += r.n;
      }
    }
    for (const d of byDay.values()) withRates(d);
    withRates(totals);
    return {
      tenant_id: tenantId,
      days,
      today: { day: today!.day, used: today!.used, daily_limit: today!.daily_limit ?? globalDailyLimit },
      by_day: [...byDay.values()],
      by_provider: byProvider,
      totals,
    };
  });
}
