import { raceDeadline } from '../core/timeLimit';

/**
 * Deadlines for database calls. postgres.js has none on the client side: a query waits for a
 * connection for as long as the pool keeps trying to open one, and against an unreachable server
 * (a partition, not a refusal) that is forever. The server's statement_timeout bounds a
 * statement once it runs, not the wait before it.
 */

/**
 * Run one query with a deadline. A query still queued (no connection yet) is taken off the queue;
 * one already sent is cancelled on the server. Either way the caller gets a retryable error.
 */
export function bounded<T>(query: PromiseLike<T> & { cancel(): unknown }, ms: number | undefined): Promise<T> {
  return withDeadline(Promise.resolve(query), ms, () => cancelQuery(query));
}

/**
 * Cancel a postgres.js query, except one that is pipelined: written to its connection behind
 * another query and not yet running. postgres.js 3.4 defers such a cancel to the query's turn and
 * then moves on in its connection's queue, and cancelling these left the connection answering
 * queries with results that were not theirs: after a database restart, every claim on a worker
 * whose only connection had had pipelined claims cancelled came back empty until the process
 * restarted (test/faults/databaseFaults.test.ts, "pool exhaustion", failed 2 of 2 runs so).
 * Such a query is abandoned instead: it runs when its turn comes, bounded by statement_timeout,
 * and its answer is dropped. A query still queued in the pool is taken off the queue; a running
 * one is cancelled on the server.
 */
function cancelQuery(query: { cancel(): unknown }): void {
  const q = query as { state?: unknown; active?: boolean };
  if (q.state !== undefined && !q.active) return;
  void Promise.resolve(query.cancel()).catch(() => {});
}

/**
 * A deadline for a database call: past `ms` the caller gets a retryable error (code DEADLINE,
 * mapped to database_unavailable) and `onTimeout` runs. Without one (a transaction, which cannot
 * be cancelled) the call itself finishes, or fails, on its own, so use that only for reads.
 * `ms` undefined: no deadline.
 */
export function withDeadline<T>(work: Promise<T>, ms: number | undefined, onTimeout?: () => void): Promise<T> {
  return raceDeadline(work, ms, () => {
    onTimeout?.();
    return Object.assign(new Error(`the database did not answer within ${ms} ms`), { code: 'DEADLINE' });
  });
}

/**
 * Run `work` as a transaction that must *start* within `ms`. If no connection was free by then,
 * the caller gets a DEADLINE error and the transaction is abandoned: when a connection does come,
 * `begin` sees the flag and throws before any statement, so it rolls back and writes nothing after
 * the caller was answered. A transaction that started in time runs to its end (each statement is
 * bounded by the server's statement_timeout), so an answer never contradicts what was written.
 */
export async function beginWithin<T>(ms: number | undefined, begin: (checkStart: () => void) => Promise<T>): Promise<T> {
  let abandoned = false;
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const work = begin(() => {
    if (abandoned) throw Object.assign(new Error('abandoned: the caller stopped waiting for a connection'), { code: 'DEADLINE' });
    markStarted();
  });
  // Only the start is raced against the deadline; once started, the transaction runs to its end.
  await withDeadline(Promise.race([started, work]), ms, () => (abandoned = true));
  return work;
}
