import { spawn } from 'node:child_process';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import path from 'node:path';

const CONNECT = path.join(__dirname, '..', '..', 'dist', 'db', 'connect.js');

/**
 * A worker must never exit on a database fault. postgres.js, with its default fetch_types, looks
 * up array types right after a connection starts, from its socket handler, without handling that
 * promise: a restart that kills the connection at that moment became an unhandled rejection, and
 * Node exits (porsager/postgres#1223; seen here as `connect ECONNREFUSED … fromPromise` during
 * `pg_ctl restart -m immediate`). A proxy in front of the test PostgreSQL kills every connection
 * that sends that lookup, deterministically; our pool must never send it.
 */
describe('createSql and a connection killed while it starts', () => {
  let proxy: Server;
  let killed = 0;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    const target = new URL(process.env.TEST_PG_SUPERUSER_URL!);
    proxy = createServer((client) => {
      const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
      sockets.push(client, upstream);
      client.on('data', (d: Buffer) => {
        if (d.includes('typarray')) {
          killed++;
          client.destroy();
          upstream.destroy();
          return;
        }
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => client.write(d));
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  });
  afterAll(() => {
    for (const s of sockets) s.destroy();
    proxy.close();
  });

  const run = (make: string) => {
    const url = new URL(process.env.TEST_PG_SUPERUSER_URL!);
    url.port = String((proxy.address() as AddressInfo).port);
    const script = `
      const make = ${make};
      const sql = make(${JSON.stringify(url.toString())});
      (async () => {
        for (let i = 0; i < 3; i++) { try { await sql\`SELECT 1\`; } catch (e) { console.error('query failed:', e.code); } }
        await sql.end({ timeout: 1 });
        console.log('done');
      })();`;
    // Asynchronous: the proxy runs in this process and must keep forwarding meanwhile.
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (status) => resolve({ status, stdout, stderr }));
    });
  };

  it('the pool the worker uses never looks array types up, so the process keeps running', async () => {
    const before = killed;
    const ours = await run(`(url) => require(${JSON.stringify(CONNECT)}).createSql(url, { max: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 5000, applicationName: 'fetch-types-test' })`);
    expect({ status: ours.status, stdout: ours.stdout.trim(), stderr: ours.stderr.trim() }).toEqual({ status: 0, stdout: 'done', stderr: '' });
    expect(killed).toBe(before);
  });

  it('the proxy does kill a connection that looks array types up (postgres.js defaults), so the test above can fail', async () => {
    const before = killed;
    const plain = run(`(url) => require('postgres')(url, { max: 1, connect_timeout: 5, onnotice() {} })`);
    // postgres.js then reconnects and is killed again, over and over: watch the first kill, then stop it.
    while (killed === before) await new Promise((r) => setTimeout(r, 20));
    for (const s of sockets) s.destroy();
    proxy.close();
    const r = await plain;
    expect(killed).toBeGreaterThan(before);
    expect(r.stdout.trim() === 'done' && r.stderr === '').toBe(false);
  });
});
