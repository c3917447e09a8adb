import { Pool } from 'undici';

/** One request of a run: a binary-mode CloudEvent. */
export interface BenchRequest {
  headers: Record<string, string>;
  body: string;
}

export interface RunResult {
  requests: number;
  seconds: number;
  /** Answered requests per second. */
  rate: number;
  statuses: Record<string, number>;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Milliseconds at the given quantile of sorted latencies (nearest rank). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function summarise(latencies: Float64Array, statuses: Record<string, number>, seconds: number): RunResult {
  const sorted = latencies.slice().sort();
  return {
    requests: latencies.length,
    seconds,
    rate: latencies.length / seconds,
    statuses,
    p50: quantile(sorted, 0.5),
    p95: quantile(sorted, 0.95),
    p99: quantile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

async function once(pool: Pool, r: BenchRequest): Promise<number> {
  try {
    const res = await pool.request({ method: 'POST', path: '/', headers: r.headers, body: r.body });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0; // connection error: counted as status "0"
  }
}

/**
 * Closed loop: `concurrency` clients, each sending its next request as soon as the last one is
 * answered, over kept-alive connections (as the broker's dispatcher does). Measures capacity.
 */
export async function closedLoop(origin: string, requests: BenchRequest[], concurrency: number): Promise<RunResult> {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const result = await closedLoopFn(requests, concurrency, (r) => once(pool, r));
  await pool.close();
  return result;
}

/**
 * Open loop: requests start on a fixed schedule (`rate` per second) whether or not earlier ones
 * were answered, and latency counts from the scheduled start, so a stall shows up in the tail
 * instead of slowing the load down (no coordinated omission).
 */
export async function openLoop(origin: string, requests: BenchRequest[], rate: number, maxConnections = 256): Promise<RunResult> {
  const pool = new Pool(origin, { connections: maxConnections, pipelining: 1, keepAliveTimeout: 60_000 });
  const latencies = new Float64Array(requests.length);
  const statuses: Record<string, number> = {};
  const interval = 1e9 / rate; // ns
  const started = process.hrtime.bigint();
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < requests.length; i++) {
    const due = started + BigInt(Math.round(i * interval));
    const now = process.hrtime.bigint();
    if (due > now + 1_000_000n) await new Promise((r) => setTimeout(r, Number(due - now) / 1e6));
    pending.push(
      once(pool, requests[i]!).then((status) => {
        latencies[i] = Number(process.hrtime.bigint() - due) / 1e6;
        statuses[status] = (statuses[status] ?? 0) + 1;
      }),
    );
  }
  await Promise.all(pending);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.close();
  return summarise(latencies, statuses, seconds);
}

/**
 * Run `fn` over `items` with at most `concurrency` at once; returns throughput and latency. Each
 * answer is counted under what `fn` returns (an HTTP status), 'ok' when it returns nothing, or
 * the code of the error it throws.
 */
export async function closedLoopFn<T>(items: T[], concurrency: number, fn: (item: T) => Promise<number | void>): Promise<RunResult> {
  const latencies = new Float64Array(items.length);
  const statuses: Record<string, number> = {};
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      const t0 = process.hrtime.bigint();
      let key = 'ok';
      try {
        const answer = await fn(items[i]!);
        if (answer !== undefined) key = String(answer);
      } catch (err) {
        key = (err as { code?: string }).code ?? 'error';
      }
      latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summarise(latencies, statuses, Number(process.hrtime.bigint() - started) / 1e9);
}
