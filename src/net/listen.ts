import type { Server } from 'node:http';
import { createServer } from 'node:net';
import { UsageError } from '../errors';

/** A port that could not be listened on, with what to do about it. */
function portInUse(port: number, what: string, setting: string, code: string): UsageError {
  return new UsageError(
    code === 'EADDRINUSE'
      ? `${what}: port ${port} is already in use (EADDRINUSE); stop what listens there, or choose another port with ${setting}`
      : `${what}: cannot listen on port ${port} (${code}); choose another port with ${setting}`,
  );
}

/**
 * Listen and resolve once listening, or reject with a UsageError naming the port and the setting that moves it. Express 5's `app.listen` calls
 * its callback with the error instead of throwing, so a plain callback would go on as if it
 * listened (and `server.address()` is then null).
 */
export function listen(start: (done: (err?: Error) => void) => Server, port: number, what: string, setting: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = start((err) => {
      if (err) reject(portInUse(port, what, setting, (err as NodeJS.ErrnoException).code ?? err.message));
      else resolve(s);
    });
  });
}

/** Whether a TCP port on a host can be listened on now (for services we start, like PostgreSQL). */
export function assertPortFree(port: number, host: string, what: string, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(portInUse(port, what, setting, err.code ?? err.message)));
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}
