import type { Sql } from '../db/connect';
import { describeError } from '../db/errors';
import { outboxDone, takeOutbox, type OutboxRow } from '../db/outbox';
import type { Logger } from '../logger';
import type { WorkerMetrics } from '../telemetry/metrics';

const BATCH = 100;
const CONCURRENCY = 8;
const SEND_TIMEOUT_MS = 10_000;

export interface OutboxPublisherOptions {
  sql: Sql;
  /** K_SINK: where the broker (or any CloudEvents sink) takes events. */
  sink: string;
  source: string;
  /** K_CE_OVERRIDES extensions a SinkBinding asks every event to carry. */
  extensions: Record<string, string>;
  logger: Logger;
  metrics?: WorkerMetrics | undefined;
  /** How often rows left behind (the sink was down) are tried again. */
  intervalMs?: number;
}

/**
 * Publishes the outbox (sql/010) to K_SINK as binary-mode CloudEvents, at least once: a row is
 * deleted only after the sink answered 2xx, and a row whose publication failed is tried again
 * after a backoff. Drained right after a webhook commits (nudge) and on a timer. One drain at a
 * time per process; several processes share the work (the rows are taken with SKIP LOCKED).
 */
export class OutboxPublisher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly o: OutboxPublisherOptions) {}

  start(): void {
    this.timer = setInterval(() => this.nudge(), this.o.intervalMs ?? 2000);
    this.timer.unref();
    this.nudge();
  }

  /** Drain now (or once more right after the drain under way). */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err) => this.o.logger.warn({ err: describeError(err) }, 'outbox drain failed; trying again later'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  /** Stop the timer and wait for the drain under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const rows = await takeOutbox(this.o.sql, BATCH);
      if (rows.length === 0) return;
      const ok: string[] = [];
      let failed = 0;
      for (let i = 0; i < rows.length; i += CONCURRENCY) {
        const results = await Promise.all(rows.slice(i, i + CONCURRENCY).map((r) => this.publish(r)));
        results.forEach((good, j) => (good ? ok.push(rows[i + j]!.id) : failed++));
      }
      await outboxDone(this.o.sql, ok);
      if (ok.length > 0) this.o.metrics?.outboxPublished('ok', ok.length);
      if (failed > 0) {
        this.o.metrics?.outboxPublished('failed', failed);
        this.o.logger.warn({ sink_failures: failed, published: ok.length }, 'the event sink refused or did not answer; the events stay in the outbox and are tried again');
        return; // the sink is in trouble: the backoff decides when these are due again
      }
      if (rows.length < BATCH) return;
    }
  }

  private async publish(r: OutboxRow): Promise<boolean> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { CloudEvent, HTTP } = require('cloudevents') as typeof import('cloudevents');
    const ce = new CloudEvent({
      specversion: '1.0',
      id: r.ceId,
      source: this.o.source,
      type: r.ceType,
      ...(r.ceSubject ? { subject: r.ceSubject } : {}),
      time: r.createdAt.toISOString(),
      datacontenttype: 'application/json',
      data: r.data,
      ...this.o.extensions,
      tenant: r.tenantId,
    });
    const message = HTTP.binary(ce);
    try {
      const res = await fetch(this.o.sink, {
        method: 'POST',
        headers: message.headers as Record<string, string>,
        body: typeof message.body === 'string' ? message.body : JSON.stringify(r.data),
        signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
        redirect: 'error',
      });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }
}
