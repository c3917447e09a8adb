import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger';

/** A real pino logger whose JSON lines are kept in memory for assertions. */
export function captureLogs(level = 'debug'): { logger: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level, destination });
  return { logger, lines, text: () => lines.join('\n') };
}
