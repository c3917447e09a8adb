/**
 * Delivers events the way a Knative broker's Trigger does (DESIGN §3): POST, and on 404, 408,
 * 409, 429, 5xx, a network error or a timeout retry with exponential backoff (honouring
 * Retry-After up to a cap); any other status ends the event in the dead letter sink. Every
 * attempt is kept, so a test can count what happened instead of sampling it.
 */

export const RETRYABLE = (status: number) => status === 404 || status === 408 || status === 409 || status === 429 || status >= 500;

export interface DeliveryPolicy {
  /** Retries after the first attempt (Knative `delivery.retry`). */
  retry: number;
  /** First backoff (Knative `backoffDelay`), doubled per retry (`backoffPolicy: exponential`). */
  backoffMs: number;
  /** Cap on one wait, Retry-After included (`retryAfterMax`). */
  maxBackoffMs: number;
  /** Per-attempt timeout (Knative `delivery.timeout`): no answer by then counts as a failed attempt. */
  timeoutMs: number;
}

export interface Attempt {
  status: number | null;
  code: string | null;
  /** When the attempt started (epoch ms) and how long it took to its answer. */
  at: number;
  ms: number;
  /** 'timeout' or the network error's code, when there was no answer. */
  error?: string;
}

export interface Delivery {
  id: string;
  result: 'delivered' | 'dead-lettered';
  /** The last answer's error code (the one the dead letter sink would see). */
  code: string | null;
  attempts: Attempt[];
}

/** `url` may be a function, read at each attempt: the Service routes to whichever pod is up then. */
export async function deliver(url: string | (() => string), ev: { id: string; headers: Record<string, string>; body: string }, policy: DeliveryPolicy): Promise<Delivery> {
  const attempts: Attempt[] = [];
  for (let n = 0; n <= policy.retry; n++) {
    const started = Date.now();
    let attempt: Attempt;
    let retryAfterMs: number | undefined;
    try {
      const res = await fetch(typeof url === 'string' ? url : url(), { method: 'POST', headers: ev.headers, body: ev.body, signal: AbortSignal.timeout(policy.timeoutMs) });
      const text = await res.text();
      let code: string | null = null;
      if (res.status >= 400) {
        try {
          code = (JSON.parse(text) as { code?: string }).code ?? null;
        } catch {
          code = null;
        }
      }
      const ra = Number(res.headers.get('retry-after'));
      if (Number.isFinite(ra) && ra > 0) retryAfterMs = ra * 1000;
      attempt = { status: res.status, code, at: started, ms: Date.now() - started };
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: string } };
      attempt = { status: null, code: null, at: started, ms: Date.now() - started, error: e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? 'network') };
    }
    attempts.push(attempt);
    if (attempt.status !== null && attempt.status >= 200 && attempt.status < 300) return { id: ev.id, result: 'delivered', code: null, attempts };
    if (attempt.status !== null && !RETRYABLE(attempt.status)) return { id: ev.id, result: 'dead-lettered', code: attempt.code, attempts };
    if (n < policy.retry) {
      const wait = Math.min(policy.maxBackoffMs, Math.max(policy.backoffMs * 2 ** n, retryAfterMs ?? 0));
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  return { id: ev.id, result: 'dead-lettered', code: attempts.at(-1)?.code ?? attempts.at(-1)?.error ?? null, attempts };
}

/** Deliver many events with at most `concurrency` in flight, like a broker's dispatcher. */
export async function deliverAll(url: string, events: Array<{ id: string; headers: Record<string, string>; body: string }>, policy: DeliveryPolicy, concurrency: number): Promise<Delivery[]> {
  const out: Delivery[] = new Array(events.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < events.length) {
        const i = next++;
        out[i] = await deliver(url, events[i]!, policy);
      }
    }),
  );
  return out;
}

/** The figures a fault test prints: what the broker saw, per result and per answer. */
export function summarize(deliveries: Delivery[]): { events: number; delivered: number; deadLettered: number; attempts: number; byAnswer: Record<string, number>; maxAttemptMs: number } {
  const byAnswer: Record<string, number> = {};
  let attempts = 0;
  let maxAttemptMs = 0;
  for (const d of deliveries) {
    for (const a of d.attempts) {
      attempts++;
      maxAttemptMs = Math.max(maxAttemptMs, a.ms);
      const key = a.status === null ? `no answer (${a.error})` : a.code ? `${a.status} ${a.code}` : String(a.status);
      byAnswer[key] = (byAnswer[key] ?? 0) + 1;
    }
  }
  return {
    events: deliveries.length,
    delivered: deliveries.filter((d) => d.result === 'delivered').length,
    deadLettered: deliveries.filter((d) => d.result === 'dead-lettered').length,
    attempts,
    byAnswer,
    maxAttemptMs,
  };
}

/**
 * Emails beyond what each event's result calls for (one when delivered, none when
 * dead-lettered), split by whether the design allows them. The one duplicate it allows
 * (SECURITY.md, "Duplicates"): the provider accepted a send but its answer never reached the
 * worker in time — PROVIDER_TIMEOUT_MS ran out first (on a starved machine an answer can be read
 * late) or the connection broke first — so the worker answered 503 provider_timeout or
 * provider_network and the broker's retry sent again (or, once retries ran out, dead-lettered an
 * event whose email had gone out). Each extra copy must be matched by such an outcome; any other
 * is a bug. `extraCopies` counts the allowed ones, so emails = delivered + extraCopies.
 */
export function classifyCopies(
  deliveries: Delivery[],
  copies: (id: string) => number,
  workerLog = '',
): { doubled: string[]; allowed: string[]; unexplained: string[]; extraCopies: number } {
  // The broker may not see the worker's answer (its own attempt timeout can come first on a
  // starved machine), so the worker's log counts too: one line per event it handled.
  const LOST_ANSWER = /"error_code":"provider_(timeout|network)"/;
  const logged = new Map<string, number>();
  for (const line of workerLog.split('\n')) {
    if (!LOST_ANSWER.test(line)) continue;
    const id = /"event_id":"([^"]*)"/.exec(line)?.[1];
    if (id) logged.set(id, (logged.get(id) ?? 0) + 1);
  }
  const lostAnswers = (d: Delivery) => Math.max(d.attempts.filter((a) => a.code === 'provider_timeout' || a.code === 'provider_network').length, logged.get(d.id) ?? 0);
  const base = (d: Delivery) => (d.result === 'delivered' ? 1 : 0);
  const extra = deliveries.filter((d) => copies(d.id) > base(d));
  const allowed = extra.filter((d) => copies(d.id) - base(d) <= lostAnswers(d));
  return {
    doubled: extra.map((d) => d.id),
    allowed: allowed.map((d) => d.id),
    unexplained: extra.filter((d) => !allowed.includes(d)).map((d) => d.id),
    extraCopies: allowed.reduce((n, d) => n + copies(d.id) - base(d), 0),
  };
}
