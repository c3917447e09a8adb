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
}

export interface TenantStats {
  tenant_id: string;
  days: number;
  today: { day: string; used: number; daily_limit: number | null };
  by_day: DayStats[];
  by_provider: Record<string, { sent: number; failed: number }>;
  totals: Omit<DayStats, 'day'>;
}

const STATUS_KEY: Record<string, keyof Omit<DayStats, 'day' | 'duplicates'>> = {
  sent: 'sent', failed: 'failed', skipped: 'skipped', quota_exceeded: 'quota_exceeded', claimed: 'in_flight',
};

/** Per UTC day and status from the delivery ledger, per provider, and today's usage against the limit. */
export async function tenantStats(sql: Sql, tenantId: string, days: number, globalDailyLimit: number | null): Promise<TenantStats> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`
      SELECT to_char((created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, status, provider,
             count(*)::int AS n, COALESCE(sum(duplicates), 0)::int AS dups
      FROM email_deliveries
      WHERE tenant_id = ${tenantId} AND created_at >= (now() AT TIME ZONE 'UTC')::date - ${days - 1}::int
      GROUP BY 1, 2, 3 ORDER BY 1`;
    const [today] = await tx`
      SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day,
             COALESCE((SELECT sum(sent_count) FROM tenant_email_usage WHERE tenant_id = ${tenantId} AND day = (now() AT TIME ZONE 'UTC')::date), 0)::int AS used,
             (SELECT daily_limit FROM tenant_email_settings WHERE tenant_id = ${tenantId}) AS daily_limit`;
    const empty = (): Omit<DayStats, 'day'> => ({ sent: 0, failed: 0, skipped: 0, quota_exceeded: 0, in_flight: 0, duplicates: 0 });
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
      if (r.provider && (r.status === 'sent' || r.status === 'failed')) {
        const p = (byProvider[r.provider] ??= { sent: 0, failed: 0 });
        p[r.status as 'sent' | 'failed'] += r.n;
      }
    }
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
