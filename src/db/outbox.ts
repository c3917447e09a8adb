import { type Sql, callDeadline } from './connect';
import { bounded } from './deadline';

/** The outbox of delivery-feedback CloudEvents (sql/010), reached only through its SECURITY DEFINER functions. */
export interface OutboxRow {
  id: string;
  tenantId: string;
  ceId: string;
  ceType: string;
  ceSubject: string | null;
  data: Record<string, unknown>;
  attempts: number;
  createdAt: Date;
}

/** Up to `limit` due rows, across tenants; each becomes due again after a backoff unless marked done. */
export async function takeOutbox(sql: Sql, limit: number): Promise<OutboxRow[]> {
  const rows = await bounded(sql`SELECT * FROM email_outbox_take(${limit})`, callDeadline(sql));
  return rows.map((r) => ({
    id: String(r.id),
    tenantId: r.tenant_id as string,
    ceId: r.ce_id as string,
    ceType: r.ce_type as string,
    ceSubject: (r.ce_subject as string | null) ?? null,
    data: r.data as Record<string, unknown>,
    attempts: r.attempts as number,
    createdAt: r.created_at as Date,
  }));
}

export async function outboxDone(sql: Sql, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  // A text of ids, split in SQL: the pool does not fetch array types (connect.ts fetch_types).
  await bounded(sql`SELECT email_outbox_done(string_to_array(${ids.join(',')}, ',')::bigint[])`, callDeadline(sql));
}

export async function outboxBacklog(sql: Sql): Promise<{ pending: number; oldestSeconds: number }> {
  const [r] = await bounded(sql`SELECT pending, oldest_seconds FROM email_outbox_backlog()`, callDeadline(sql));
  return { pending: Number(r?.pending ?? 0), oldestSeconds: Number(r?.oldest_seconds ?? 0) };
}
