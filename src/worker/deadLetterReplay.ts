import type { Sql } from '../db/connect';
import { markReplayed, replayableDeadLetters, type DeadLetterFilter, type ReplayableDeadLetter } from '../db/deadLetters';

export interface ReplayReport {
  target: string;
  dry_run: boolean;
  selected: number;
  replayed: number;
  /** Answers by HTTP status (or "no_answer"). */
  answers: Record<string, number>;
  events: Array<{ tenant_id: string; event_source: string; event_id: string; error_code: string | null; status: number | null }>;
}

/** The request that sends a stored dead letter again: binary mode, its attributes as ce-* headers. */
export function replayRequest(d: Pick<ReplayableDeadLetter, 'attributes' | 'body' | 'content_type'>): { headers: Record<string, string>; body: Buffer } {
  const structured = /^application\/cloudevents\+json/i.test(d.content_type ?? '');
  if (structured) {
    // The broker's own error extensions were part of the envelope: the event goes back without them.
    const envelope = JSON.parse(d.body.toString('utf8')) as Record<string, unknown>;
    for (const k of ['knativeerrorcode', 'knativeerrordest', 'knativeerrordata']) delete envelope[k];
    return { headers: { 'content-type': d.content_type as string }, body: Buffer.from(JSON.stringify(envelope)) };
  }
  const headers: Record<string, string> = {};
  if (d.content_type) headers['content-type'] = d.content_type;
  for (const [k, v] of Object.entries(d.attributes)) if (/^[a-z0-9]{1,64}$/.test(k)) headers[`ce-${k}`] = v;
  return { headers, body: d.body };
}

/**
 * Send the matching dead letters again to `target` (the broker's ingress, so Triggers, retries and
 * the dead-letter sink apply; or any URL), at most `ratePerSecond`, one at a time, and record when
 * and with what answer each was replayed. The worker's ledger makes a replay of an event already
 * sent a 202 that sends nothing.
 */
export async function replayDeadLetters(
  sql: Sql,
  filter: DeadLetterFilter,
  opts: { target: string; dryRun: boolean; ratePerSecond: number; timeoutMs?: number; onEach?: (e: ReplayReport['events'][number]) => void },
): Promise<ReplayReport> {
  const rows = await replayableDeadLetters(sql, filter);
  const report: ReplayReport = { target: opts.target, dry_run: opts.dryRun, selected: rows.length, replayed: 0, answers: {}, events: [] };
  const gap = 1000 / opts.ratePerSecond;
  let next = Date.now();
  for (const d of rows) {
    let status: number | null = null;
    if (!opts.dryRun) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next = Date.now() + gap;
      const req = replayRequest(d);
      try {
        const res = await fetch(opts.target, { method: 'POST', headers: req.headers, body: req.body, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000), redirect: 'error' });
        await res.arrayBuffer();
        status = res.status;
      } catch {
        status = null;
      }
      await markReplayed(sql, d, status, opts.target);
      report.replayed++;
      const k = status === null ? 'no_answer' : String(status);
      report.answers[k] = (report.answers[k] ?? 0) + 1;
    }
    const e = { tenant_id: d.tenant_id, event_source: d.event_source, event_id: d.event_id, error_code: d.error_code, status };
    report.events.push(e);
    opts.onEach?.(e);
  }
  return report;
}
