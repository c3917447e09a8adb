import postgres from 'postgres';

export type Sql = postgres.Sql<Record<string, never>>;

/** An SQL identifier (a role or database name) quoted for a statement that cannot bind it. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface ConnectOptions {
  max: number;
  connectTimeoutSeconds: number;
  statementTimeoutMs: number;
  applicationName: string;
  /**
   * What is between the pool and PostgreSQL (DB_POOLER). Behind PgBouncer no start-up parameter
   * but application_name is sent: PgBouncer refuses statement_timeout there (or, told to ignore
   * it, silently drops it). The call deadline below still holds: a call past it is cancelled,
   * and PgBouncer forwards the cancel to the server that runs it.
   */
  pooler?: 'none' | 'pgbouncer' | undefined;
  /** Named prepared statements (DB_PREPARED_STATEMENTS); off for PgBouncer before 1.21 in transaction mode. */
  prepare?: boolean | undefined;
}

/**
 * One pool per process role. `debug` stays off: postgres.js then attaches a failed query's bound
 * parameters (which include DB_ENCRYPTION_KEY) to errors as non-enumerable properties, so they
 * are never serialised by a logger.
 */
export function createSql(url: string, opts: ConnectOptions): Sql {
  const sql = postgres(url, {
    max: opts.max,
    connect_timeout: opts.connectTimeoutSeconds,
    idle_timeout: 60,
    max_lifetime: 30 * 60,
    prepare: opts.prepare ?? true,
    // No array-type lookup when a connection starts. postgres.js runs it from its socket handler
    // without handling its promise, so a database restart that kills a connection during that
    // lookup (or refuses its reconnect) was an unhandled rejection, which exits Node
    // (porsager/postgres#1223). Nothing here binds or reads SQL arrays: lists travel as text
    // (string_to_array) or JSON.
    fetch_types: false,
    // postgres.js waits up to 20 s between reconnect attempts by default; queued queries wait
    // with it. A short, capped backoff gets the worker back within a second of the database.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    debug: false,
    onnotice: () => {},
    connection:
      opts.pooler === 'pgbouncer'
        ? { application_name: opts.applicationName }
        : { application_name: opts.applicationName, statement_timeout: opts.statementTimeoutMs },
  }) as unknown as Sql;
  // What a call may wait, connection included: one connect attempt plus one statement.
  setCallDeadline(sql, opts.connectTimeoutSeconds * 1000 + opts.statementTimeoutMs);
  // Behind PgBouncer the server-side timeout is set inside each transaction instead (withTenant).
  if (opts.pooler === 'pgbouncer') localStatementTimeouts.set(sql, opts.statementTimeoutMs);
  return sql;
}

const localStatementTimeouts = new WeakMap<object, number>();

/**
 * The statement_timeout a transaction on this pool sets for itself (SET LOCAL): only behind a
 * pooler, where it cannot be a start-up parameter; a transaction-local setting ends with the
 * transaction, so it never stays on a server connection another client gets next.
 */
export function localStatementTimeout(sql: Sql): number | undefined {
  return localStatementTimeouts.get(sql);
}

const poolDeadlines = new WeakMap<object, number>();

/** Record the deadline for calls on a pool (createSql does: connect timeout + statement timeout). */
export function setCallDeadline(sql: Sql, ms: number): void {
  poolDeadlines.set(sql, ms);
}

/** The longest one call on a pool may take (db/deadline.ts enforces it); undefined for a transaction handle or a foreign pool. */
export function callDeadline(sql: Sql): number | undefined {
  return poolDeadlines.get(sql);
}
