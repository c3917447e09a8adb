import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

export interface ControlledPostgres {
  superuserUrl(database?: string): string;
  /** A fast shutdown (SIGINT: sessions are ended, a checkpoint is written). */
  stop(): Promise<void>;
  /** An immediate shutdown (SIGQUIT: every backend ends at once, no checkpoint; start() replays the WAL). */
  stopImmediately(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Start test/helpers/pgServer.js and wait for it to say where PostgreSQL listens. */
export async function startControlledPostgres(): Promise<ControlledPostgres> {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [path.join(__dirname, 'pgServer.js')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () =>
    new Promise<string>((resolve, reject) => {
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`pgServer exited (${code}): ${stderr.slice(-2000)}`)));
    });
  const ready = await next();
  const m = /^ready (.+)$/.exec(ready);
  if (!m) throw new Error(`pgServer: ${ready} ${stderr}`);
  const base = new URL(m[1] as string);
  const command = async (cmd: string, expected: string) => {
    const reply = next();
    child.stdin.write(`${cmd}\n`);
    const got = await reply;
    if (got !== expected) throw new Error(`pgServer ${cmd}: ${got}`);
  };
  return {
    superuserUrl: (database = 'postgres') => {
      const u = new URL(base);
      u.pathname = `/${database}`;
      return u.toString();
    },
    stop: () => command('stop', 'stopped'),
    stopImmediately: () => command('immediate', 'stopped'),
    start: () => command('start', 'started'),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin.write('exit\n');
      }),
  };
}
