import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths redacted from every log line. Secrets should never be handed to the logger at all; this
 * list is the second line of defence for the shapes they would arrive in (a settings body, a
 * request's headers, a provider account, a config object). test/secrets.test.ts feeds a canary
 * through each path.
 */
export const REDACT_PATHS: readonly string[] = [
  'api_key',
  'apiKey',
  'password',
  'secret',
  'encryptionKey',
  'authorization',
  '*.api_key',
  '*.apiKey',
  '*.password',
  '*.secret',
  '*.encryptionKey',
  '*.previousEncryptionKey',
  '*.authorization',
  '*.Authorization',
  '*.*.api_key',
  '*.*.apiKey',
  '*.*.password',
  '*.*.secret',
  '*.*.authorization',
  '*.*.Authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'config.headers.Authorization',
  'err.config',
  'err.request',
  'err.response.config',
];

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'tenant-email-worker' },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination,
  );
}

export type { Logger };
