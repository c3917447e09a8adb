import { WorkerError, isWorkerError, type ErrorDetail } from '../errors';

// SQLSTATE classes and postgres.js client codes that mean "the database is not there right now";
// a redelivery will do better, so they answer 503.
const UNAVAILABLE_SQLSTATE_PREFIXES = ['08', '53', '57P'];
const UNAVAILABLE_SQLSTATES = new Set(['57014', '40001', '40P01', '55P03']);
const UNAVAILABLE_CLIENT_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED',
  // Our own per-call deadline (db/deadline.ts withDeadline()).
  'DEADLINE',
]);

/**
 * Turn a database error into a WorkerError by its SQLSTATE / client code, never by its text.
 * The original error is not attached: it may carry the statement and, in debug builds, its
 * bound parameters.
 */
export function mapDatabaseError(err: unknown): WorkerError {
  if (isWorkerError(err)) return err;
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  // TE001: raised by email_claim_event for an unknown key id; 39000 + pgcrypto: wrong key or corrupt data.
  if (code === 'TE001' || code === '39000') {
    return new WorkerError('settings_undecryptable');
  }
  if (UNAVAILABLE_CLIENT_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SQLSTATE_PREFIXES.some((p) => code.startsWith(p))) {
    return new WorkerError('database_unavailable', `database unavailable (${code})`);
  }
  // Unexpected: the log must say what it was (the answer only says internal_error).
  return new WorkerError('internal_error', code ? `database error ${code}` : undefined, { detail: describeError(err) });
}

/** A short, secret-free description of any error for a log line. */
export function describeError(err: unknown): ErrorDetail & { detail?: ErrorDetail } {
  if (isWorkerError(err)) return { name: err.name, code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) };
  if (typeof err !== 'object' || err === null) return { message: String(err).slice(0, 200) };
  const e = err as { name?: unknown; code?: unknown; message?: unknown };
  return {
    name: typeof e.name === 'string' ? e.name : undefined,
    code: e.code === undefined ? undefined : String(e.code),
    // Messages from our own database errors are safe (no bound values); SDK messages are not
    // trusted and are left to the caller.
    message: typeof e.message === 'string' ? e.message.slice(0, 300) : undefined,
  };
}
