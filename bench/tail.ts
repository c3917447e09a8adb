/**
 * What `npm run bench -- --tail-profile` prints about an open loop's slowest events, from the
 * records its probe (tailProbe.ts) wrote in the worker.
 */
export type TailKind = 'event' | 'db' | 'provider' | 'gc' | 'stall';
export interface TailRecord {
  kind: TailKind;
  start: number;
  ms: number;
  /** Stalls: the process's CPU time during it (all its threads), in ms. */
  cpuMs?: number;
  /** Events: the bench run they belong to. */
  run?: string;
}

/** How late the probe's 1 ms timer must run to count as a stall. */
export const STALL_MS = 4;

/** The records a probe wrote. */
export function parseTailRecords(text: string): TailRecord[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [kind, start, ms, extra] = line.split(' ');
      const more = extra === undefined ? {} : kind === 'event' ? { run: extra } : { cpuMs: Number(extra) };
      return { kind: kind as TailKind, start: Number(start), ms: Number(ms), ...more };
    });
}

export interface TailSummary {
  events: number;
  p50: number;
  p99: number;
  max: number;
  /** The events at or above the p99. */
  slowest: number;
  /** How many of the slowest overlapped each kind of delay (over its threshold). */
  overlapped: { db: number; stall: number; gc: number; provider: number; none: number };
  /**
   * Of the slowest events' time in all, the share spent inside each kind (a round trip's wait can
   * include a stall, so the shares may add up to more than 1).
   */
  covered: { db: number; stall: number; gc: number; provider: number };
  db: { count: number; p50: number; p99: number; max: number };
  provider: { count: number; p50: number; p99: number; max: number };
  gc: { count: number; totalMs: number; max: number };
  /** cpuShare: the process's CPU time during the stalls over their length (near 1: it was running; near 0: it waited for a CPU). */
  stalls: { count: number; max: number; cpuShare: number };
}

/** Over these, a round trip or call counts as slow when it overlaps one of the slowest events. */
export const SLOW_DB_MS = 5;
export const SLOW_PROVIDER_MS = 3;

const pick = (sorted: number[], q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);

/**
 * One bench run's events, their p99, and what their slowest 1% overlapped. The run's window is
 * its own events' span on the worker's clock (the bench's clock is another process's).
 */
export function summarizeTail(records: TailRecord[], run: string): TailSummary {
  const events = records.filter((r) => r.kind === 'event' && r.run === run);
  const from = Math.min(...events.map((e) => e.start));
  const to = Math.max(...events.map((e) => e.start + e.ms));
  const within = (r: TailRecord) => r.start >= from && r.start <= to;
  const all = dist(events);
  const slowest = events.filter((e) => e.ms >= all.p99);
  const of = (kind: TailKind) => records.filter((r) => r.kind === kind && within(r));
  const db = of('db');
  const provider = of('provider');
  const gc = of('gc');
  const stalls = of('stall');
  // Each kind, and the length over which one counts as an overlap of a slow event.
  const kinds = { db: [db, SLOW_DB_MS], stall: [stalls, 0], gc: [gc, 0], provider: [provider, SLOW_PROVIDER_MS] } as const;
  const overlapped = { db: 0, stall: 0, gc: 0, provider: 0, none: 0 };
  const inside = { db: 0, stall: 0, gc: 0, provider: 0 };
  for (const e of slowest) {
    let any = false;
    for (const k of ['db', 'stall', 'gc', 'provider'] as const) {
      const [rs, over] = kinds[k];
      inside[k] += coveredMs(e, rs);
      if (rs.some((r) => r.ms > over && r.start < e.start + e.ms && r.start + r.ms > e.start)) {
        overlapped[k]++;
        any = true;
      }
    }
    if (!any) overlapped.none++;
  }
  const slowTime = slowest.reduce((a, e) => a + e.ms, 0);
  return {
    events: all.count,
    p50: all.p50,
    p99: all.p99,
    max: all.max,
    slowest: slowest.length,
    overlapped,
    covered: { db: inside.db / slowTime, stall: inside.stall / slowTime, gc: inside.gc / slowTime, provider: inside.provider / slowTime },
    db: dist(db),
    provider: dist(provider),
    gc: { count: gc.length, totalMs: gc.reduce((a, r) => a + r.ms, 0), max: Math.max(0, ...gc.map((r) => r.ms)) },
    stalls: {
      count: stalls.length,
      max: Math.max(0, ...stalls.map((r) => r.ms)),
      cpuShare: stalls.reduce((a, r) => a + (r.cpuMs ?? 0), 0) / stalls.reduce((a, r) => a + r.ms, 0),
    },
  };
}

/** Count, p50, p99 and max of the records' lengths. */
function dist(rs: readonly TailRecord[]): { count: number; p50: number; p99: number; max: number } {
  const s = rs.map((r) => r.ms).sort((a, b) => a - b);
  return { count: s.length, p50: pick(s, 0.5), p99: pick(s, 0.99), max: s.length ? s[s.length - 1]! : NaN };
}

/** How much of event e's time lies inside the union of the records rs. */
function coveredMs(e: TailRecord, rs: readonly TailRecord[]): number {
  const clipped = rs
    .map((r) => [Math.max(r.start, e.start), Math.min(r.start + r.ms, e.start + e.ms)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of clipped) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}
