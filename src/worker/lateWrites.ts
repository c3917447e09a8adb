import { mapDatabaseError } from '../db/errors';
import type { Logger } from '../logger';

/**
 * Ledger writes that could not be made when they were due, because the database was away.
 *
 * Two kinds, both keyed by a claim token only this process knows, so each is safe to make late:
 * - the outcome of an attempt (a sent email above all: until it is written, the claim holds the
 *   event, and once the lease runs out a redelivery would send it again);
 * - giving up a claim whose call failed without an answer (the connection broke during the
 *   commit): nothing was sent under it, so recording it as failed lets the next redelivery claim
 *   the event at once instead of waiting out the lease.
 *
 * A write that finds the claim taken over changes nothing (email_record_outcome checks the
 * token). Each write is retried after 250 ms, then doubling up to every 10 s (and at once when
 * a claim shows the database is back), for up to RETRY_FOR_MS: after the lease a redelivery may
 * have taken the claim over, but a write that lands before one does still saves a resend. At most MAX_PENDING are held; past that the
 * oldest is dropped (logged and counted), so an outage cannot grow memory without bound.
 */

/** A write: true when it took effect, false when the claim had been taken over. */
export type LedgerWrite = () => Promise<boolean>;

export const RETRY_FOR_MS = 15 * 60_000;
export const MAX_PENDING = 10_000;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;
const NUDGE_EVERY_MS = 1000;

interface Pending {
  readonly what: 'outcome' | 'release';
  readonly write: LedgerWrite;
  readonly log: Logger;
  readonly until: number;
  delay: number;
  timer: NodeJS.Timeout | undefined;
  /** The try under way, if any: a second one waits for it instead of writing twice at once. */
  inflight: Promise<void> | undefined;
}

export class LateWrites {
  private readonly pending = new Set<Pending>();
  private nudgedAt = 0;

  constructor(private readonly onDropped: (what: Pending['what']) => void = () => {}) {}

  get size(): number {
    return this.pending.size;
  }

  /** Keep trying `write` in the background until it lands, the claim is gone, or time is up. */
  add(what: Pending['what'], write: LedgerWrite, log: Logger): void {
    if (this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.values().next().value as Pending;
      this.drop(oldest, 'too many ledger writes waiting for the database; dropped the oldest');
    }
    const p: Pending = { what, write, log, until: Date.now() + RETRY_FOR_MS, delay: FIRST_DELAY_MS, timer: undefined, inflight: undefined };
    this.pending.add(p);
    this.schedule(p);
  }

  /**
   * The database answered again (a claim went through): try every waiting write now rather than
   * at its backed-off time, so a write the outage held up lands within a moment of the recovery
   * (a worker killed while one still waits leaves its event claimed). At most once a second.
   */
  nudge(): void {
    if (this.pending.size === 0) return;
    const now = Date.now();
    if (now - this.nudgedAt < NUDGE_EVERY_MS) return;
    this.nudgedAt = now;
    for (const p of this.pending) {
      if (p.inflight) continue;
      clearTimeout(p.timer);
      p.delay = FIRST_DELAY_MS;
      void this.attempt(p, true);
    }
  }

  /** One more try of every pending write (or the end of the one under way), for shutdown: whatever is still pending after it is logged. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending].map((p) => (clearTimeout(p.timer), p.inflight ?? this.attempt(p, false))));
    for (const p of this.pending) this.drop(p, 'stopping with a ledger write the database did not take');
  }

  private schedule(p: Pending): void {
    p.timer = setTimeout(() => void this.attempt(p, true), p.delay);
    p.timer.unref();
  }

  private attempt(p: Pending, again: boolean): Promise<void> {
    if (!this.pending.has(p)) return Promise.resolve();
    p.inflight ??= this.tryOnce(p, again).finally(() => (p.inflight = undefined));
    return p.inflight;
  }

  private async tryOnce(p: Pending, again: boolean): Promise<void> {
    try {
      const ok = await p.write();
      this.pending.delete(p);
      if (p.what === 'outcome') p.log.info({ recorded_late: ok }, ok ? 'delivery outcome recorded late' : 'the claim was taken over before the outcome was written');
      else if (ok) p.log.info({ released: true }, 'gave up a claim whose answer was lost; a redelivery can claim the event now');
      // The usual case after a timeout: the claim had rolled back, so there was nothing to give up.
      else p.log.debug({ released: false }, 'no claim to give up (it had not been written)');
    } catch (err) {
      p.log.debug({ error_code: mapDatabaseError(err).code }, 'ledger write still failing');
      p.delay = Math.min(p.delay * 2, MAX_DELAY_MS);
      if (!again) return;
      if (Date.now() + p.delay < p.until) this.schedule(p);
      else this.drop(p, 'gave up a ledger write after retrying it for 15 minutes');
    }
  }

  private drop(p: Pending, msg: string): void {
    clearTimeout(p.timer);
    this.pending.delete(p);
    this.onDropped(p.what);
    // An outcome left unwritten keeps the event claimed until its lease ends; then a redelivery
    // (or a replay) sends it again. A release left unwritten only delays the next claim.
    p.log.error({ ledger_write: p.what }, p.what === 'outcome' ? `${msg} (the ledger row stays claimed: a redelivery or a replay after its lease sends it again)` : msg);
  }
}

/** How an outcome write went right away: written, found the claim taken over, or failed. */
export type RecordResult = 'ok' | 'taken_over' | 'error';

/** The outcome write, retried briefly inline (0, 50, 250 ms) before it is left to LateWrites. */
export async function recordWithRetry(write: LedgerWrite, log: Logger): Promise<RecordResult> {
  const delays = [0, 50, 250];
  for (let i = 0; i < delays.length; i++) {
    if (delays[i]) await new Promise((r) => setTimeout(r, delays[i]));
    try {
      const ok = await write();
      if (!ok) log.warn('the claim was taken over before the outcome was written (lease too short?)');
      return ok ? 'ok' : 'taken_over';
    } catch (err) {
      log.error({ error_code: mapDatabaseError(err).code, attempt: i + 1 }, 'could not record the delivery outcome');
    }
  }
  return 'error';
}
