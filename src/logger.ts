import pino, { type DestinationStream, type Logger } from 'pino';

/** What a secret is replaced with in a log line. */
const CENSOR = '[redacted]';

/**
 * Keys whose values are secrets wherever they stand in the first three levels of a log line or
 * a child logger's bindings: `api_key`, `x.api_key`, `x.y.api_key`, in objects, arrays and
 * errors alike. Secrets should never be handed to the logger at all; this is the second line of
 * defence for the shapes they would arrive in (a settings body, a request's headers, a provider
 * account, a config object). test/secrets.test.ts feeds a canary through each level.
 *
 * It is not pino's `redact` with `*.api_key`-style paths, which is what it replaced: pino's
 * redaction parses every path and walks every wildcard on every line: 38–62 µs of CPU per event
 * (two children and one line) and a quarter of all the worker's allocation in the bench's
 * profiles, against 9.5 µs for this walk (docs/PERFORMANCE.md). It allocates nothing unless it
 * finds a key to censor.
 */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'api_key',
  'apiKey',
  'password',
  'secret',
  'encryptionKey',
  'previousEncryptionKey',
  'authorization',
  'Authorization',
]);
const SECRET_KEY_DEPTH = 3;

/**
 * Whole subtrees removed from every line by pino's `redact` (plain paths, which it handles
 * cheaply): a request's cookies, and the request, config and response config an HTTP client's
 * error carries (headers with the tenant's key among them, deeper than SECRET_KEYS looks).
 */
export const REDACT_PATHS: readonly string[] = ['req.headers.cookie', 'err.config', 'err.request', 'err.response.config'];

/**
 * `value` with every SECRET_KEYS entry in its first levels censored: the same object when there
 * is none, else a copy of each object on the way (an error stays an error, with its message and
 * stack). The caller's object is never changed.
 */
export function censorSecrets<T>(value: T, depth = 0): T {
  if (depth >= SECRET_KEY_DEPTH || value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[key];
    const next = SECRET_KEYS.has(key) ? CENSOR : censorSecrets(v, depth + 1);
    if (next === v) continue;
    copy ??= Array.isArray(value)
      ? ([...value] as unknown as Record<string, unknown>)
      : (Object.create(Object.getPrototypeOf(value) as object, Object.getOwnPropertyDescriptors(value)) as Record<string, unknown>);
    Object.defineProperty(copy, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return (copy ?? value) as T;
}

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  const logger = pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'tenant-email-worker' },
      redact: { paths: [...REDACT_PATHS], censor: CENSOR },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => censorSecrets(object),
      },
    },
    opts.destination,
  );
  // A child's bindings are serialized once, when it is made; pino gives them no formatter (it
  // resets `formatters.bindings` for children), so they are censored on the way in. Children
  // are made from their parent's prototype chain, so theirs go through this too.
  const pinoChild = logger.child;
  Object.defineProperty(logger, 'child', {
    value: function child(this: Logger, bindings: Record<string, unknown>, options?: Parameters<Logger['child']>[1]) {
      return pinoChild.call(this, censorSecrets(bindings), options);
    },
  });
  return logger;
}

export type { Logger };
