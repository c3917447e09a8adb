import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger';
import { noteOutput } from './canary';

/** A real pino logger whose JSON lines are kept in memory for assertions. */
export function captureLogs(level = 'debug'): { logger: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      const text = String(chunk);
      noteOutput('log', text);
      lines.push(...text.split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level, destination });
  return { logger, lines, text: () => lines.join('\n') };
}
