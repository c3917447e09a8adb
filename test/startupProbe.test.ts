import { spawn } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { noteOutput } from './helpers/canary';
import { CANARY_DB_KEY } from './helpers/worker';

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const PASSWORD = 'CANARY-PGPASS-3b1d5e7f9a';

/** Run the built CLI as a process; it must exit by itself (the kill at 60 s is only a backstop). */
function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; killed: boolean; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    let killed = false;
    const backstop = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, 600_000);
    child.on('exit', (code) => {
      clearTimeout(backstop);
      noteOutput(`tenant-email ${args.join(' ')}`, stderr);
      resolve({ code, killed, stderr, ms: Date.now() - started });
    });
  });
}

const listen = <T extends HttpServer | Server>(s: T) => new Promise<number>((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));

/**
 * Start-up never hangs: every command that talks to the database first gets an answer from it
 * within DB_CONNECT_TIMEOUT_SECONDS + 2 s, or exits non-zero naming the setting and what it found.
 */
describe('start-up against something that is not PostgreSQL', () => {
  let http: HttpServer;
  let silent: Server;
  let closed: Server;
  const held: Socket[] = [];
  const ports: Record<string, number> = {};
  beforeAll(async () => {
    http = createHttpServer((_req, res) => res.end('hello'));
    silent = createServer((socket) => held.push(socket)); // accepts, never answers
    closed = createServer();
    ports.http = await listen(http);
    ports.silent = await listen(silent);
    ports.refused = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r())); // a port nothing listens on any more
  });
  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  const url = (port: number | string, host = '127.0.0.1') => `postgres://email_worker:${PASSWORD}@${host}:${port}/app`;
  const base = { DB_ENCRYPTION_KEY: CANARY_DB_KEY, DB_CONNECT_TIMEOUT_SECONDS: '2' };
  const COMMANDS: Array<[string, string[], string]> = [
    ['serve', ['serve', '--port', '0'], 'DATABASE_URL'],
    ['migrate', ['migrate'], 'MIGRATION_DATABASE_URL'],
    ['settings get', ['settings', 'get', '--tenant', 'demo'], 'DATABASE_URL'],
  ];
  const envFor = (setting: string, u: string) => ({ ...base, [setting]: u });

  it.each(COMMANDS)('%s: an HTTP server → exit 1, naming the setting and what answered', async (_n, args, setting) => {
    const r = await run(args, envFor(setting, url(ports.http!)));
    process.stdout.write(`${args[0]} against HTTP: exit ${r.code} after ${r.ms} ms\n`);
    expect({ killed: r.killed, code: r.code }).toEqual({ killed: false, code: 1 });
    expect(r.stderr).toContain(`${setting} points at 127.0.0.1:${ports.http}, which is not PostgreSQL: it answered "HTTP/1.1 400 Bad Request`);
    expect(r.stderr).not.toContain(PASSWORD);
  });

  it.each(COMMANDS)('%s: a port that accepts and says nothing → exit 1', async (_n, args, setting) => {
    const r = await run(args, envFor(setting, url(ports.silent!)));
    expect({ killed: r.killed, code: r.code }).toEqual({ killed: false, code: 1 });
    expect(r.stderr).toContain(`${setting} points at 127.0.0.1:${ports.silent}, which accepts connections but says nothing`);
  });

  it.each(COMMANDS)('%s: a refused connection → exit 1', async (_n, args, setting) => {
    const r = await run(args, envFor(setting, url(ports.refused!)));
    expect({ killed: r.killed, code: r.code }).toEqual({ killed: false, code: 1 });
    expect(r.stderr).toContain(`${setting} points at 127.0.0.1:${ports.refused}, which refused the connection (ECONNREFUSED)`);
  });

  it.each(COMMANDS)('%s: a host that does not resolve → exit 1', async (_n, args, setting) => {
    const r = await run(args, envFor(setting, url(5432, 'no-such-host.invalid')));
    expect({ killed: r.killed, code: r.code }).toEqual({ killed: false, code: 1 });
    expect(r.stderr).toMatch(new RegExp(`${setting}: the host of no-such-host\\.invalid:5432 could not be resolved \\((ENOTFOUND|EAI_AGAIN)\\)`));
  });
});
