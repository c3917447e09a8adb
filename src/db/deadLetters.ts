import type { DeadLetter } from '../types';
import type { Sql } from './connect';
import { withTenant } from './settings';


/**
 * The dead-letter store (sql/011). Stored under the event's tenant (RLS, like every tenant
 * table); listed and replayed per tenant through the worker role, or across tenants through the
 * maintenance connection (a role that bypasses RLS), which is what `tenant-email dead-letters`
 * without --tenant uses.
 */

export async function storeDeadLetter(sql: Sql, d: DeadLetter): Promise<{ first: boolean }> {
  const [r] = await withTenant(sql, d.tenantId, (tx) => tx`
      INSERT INTO email_dead_letters AS l (tenant_id, event_source, event_id, event_type, content_type, attributes, body, body_truncated,
                                           http_status, error_dest, error_data, error_code)
      VALUES (${d.tenantId}, ${d.eventSource}, ${d.eventId}, ${d.eventType}, ${d.contentType}, ${tx.json(d.attributes as never)}, ${d.body}, ${d.bodyTruncated},
              ${d.httpStatus}, ${d.errorDest}, ${d.errorData}, ${d.errorCode})
      ON CONFLICT (tenant_id, event_source, event_id) DO UPDATE SET
        event_type = EXCLUDED.event_type, content_type = EXCLUDED.content_type, attributes = EXCLUDED.attributes,
        body = EXCLUDED.body, body_truncated = EXCLUDED.body_truncated, http_status = EXCLUDED.http_status,
        error_dest = EXCLUDED.error_dest, error_data = EXCLUDED.error_data, error_code = EXCLUDED.error_code,
        dead_lettered = l.dead_lettered + 1, received_at = now()
      RETURNING (xmax::text = '0') AS first`);
  return { first: Boolean(r?.first) };
}

export interface DeadLetterFilter {
  tenantId?: string | undefined;
  errorCode?: string | undefined;
  eventType?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Only those not replayed since they were last dead-lettered (a replay that failed again is due again). */
  notReplayed?: boolean | undefined;
  limit: number;
}

export interface StoredDeadLetter {
  tenant_id: string;
  event_source: string;
  event_id: string;
  event_type: string | null;
  http_status: number | null;
  error_code: string | null;
  error_data: string | null;
  error_dest: string | null;
  dead_lettered: number;
  first_received_at: string;
  received_at: string;
  replays: number;
  replayed_at: string | null;
  replay_status: number | null;
  body_truncated: boolean;
}

export interface ReplayableDeadLetter extends StoredDeadLetter {
  content_type: string | null;
  attributes: Record<string, string>;
  body: Buffer;
}

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);

function where(sql: Sql, f: DeadLetterFilter) {
  return sql`
    WHERE true
      ${f.tenantId ? sql`AND tenant_id = ${f.tenantId}` : sql``}
      ${f.errorCode ? sql`AND error_code = ${f.errorCode}` : sql``}
      ${f.eventType ? sql`AND event_type = ${f.eventType}` : sql``}
      ${f.since ? sql`AND received_at >= ${f.since}` : sql``}
      ${f.until ? sql`AND received_at < ${f.until}` : sql``}
      ${f.notReplayed ? sql`AND (replayed_at IS NULL OR received_at > replayed_at)` : sql``}`;
}

function row(r: Record<string, unknown>): StoredDeadLetter {
  return {
    tenant_id: r.tenant_id as string,
    event_source: r.event_source as string,
    event_id: r.event_id as string,
    event_type: (r.event_type as string | null) ?? null,
    http_status: (r.http_status as number | null) ?? null,
    error_code: (r.error_code as string | null) ?? null,
    error_data: (r.error_data as string | null) ?? null,
    error_dest: (r.error_dest as string | null) ?? null,
    dead_lettered: r.dead_lettered as number,
    first_received_at: iso(r.first_received_at) as string,
    received_at: iso(r.received_at) as string,
    replays: r.replays as number,
    replayed_at: iso(r.replayed_at),
    replay_status: (r.replay_status as number | null) ?? null,
    body_truncated: Boolean(r.body_truncated),
  };
}

/** `sql` inside a tenant's transaction (or a maintenance connection for every tenant). */
async function inScope<T>(sql: Sql, tenantId: string | undefined, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return tenantId ? withTenant(sql, tenantId, fn) : fn(sql);
}

/** The matching dead letters, oldest first, and how many match per error code. */
export async function listDeadLetters(sql: Sql, f: DeadLetterFilter): Promise<{ items: StoredDeadLetter[]; counts: Record<string, number>; total: number }> {
  return inScope(sql, f.tenantId, async (tx) => {
    const items = await tx`
      SELECT tenant_id, event_source, event_id, event_type, http_status, error_code, error_data, error_dest, dead_lettered,
             first_received_at, received_at, replays, replayed_at, replay_status, body_truncated
      FROM email_dead_letters ${where(tx, f)} ORDER BY received_at, tenant_id, event_source, event_id LIMIT ${f.limit}`;
    const counts = await tx`SELECT COALESCE(error_code, 'http_' || COALESCE(http_status::text, 'unknown')) AS code, count(*)::int AS n FROM email_dead_letters ${where(tx, f)} GROUP BY 1 ORDER BY 1`;
    const c = Object.fromEntries(counts.map((r) => [r.code as string, r.n as number]));
    return { items: items.map(row), counts: c, total: Object.values(c).reduce((a, b) => a + b, 0) };
  });
}

/** The rows to replay, with what is needed to send them again byte for byte. */
export async function replayableDeadLetters(sql: Sql, f: DeadLetterFilter): Promise<ReplayableDeadLetter[]> {
  return inScope(sql, f.tenantId, async (tx) => {
    const rows = await tx`SELECT * FROM email_dead_letters ${where(tx, f)} AND NOT body_truncated ORDER BY received_at, tenant_id, event_source, event_id LIMIT ${f.limit}`;
    return rows.map((r) => ({ ...row(r), content_type: (r.content_type as string | null) ?? null, attributes: r.attributes as Record<string, string>, body: r.body as Buffer }));
  });
}

export async function markReplayed(sql: Sql, d: { tenant_id: string; event_source: string; event_id: string }, status: number | null, target: string): Promise<void> {
  await inScope(sql, d.tenant_id, (tx) => tx`
    UPDATE email_dead_letters SET replays = replays + 1, replayed_at = now(), replay_status = ${status}, replay_target = ${target.slice(0, 2000)}
    WHERE tenant_id = ${d.tenant_id} AND event_source = ${d.event_source} AND event_id = ${d.event_id}`);
}

/** Delete what was received before `before` (the retention of `dead-letters purge`). */
export async function purgeDeadLetters(sql: Sql, before: Date, tenantId?: string): Promise<number> {
  return inScope(sql, tenantId, async (tx) => {
    const r = await tx`DELETE FROM email_dead_letters WHERE received_at < ${before} ${tenantId ? tx`AND tenant_id = ${tenantId}` : tx``}`;
    return r.count;
  });
}
