import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../dev/embeddedPostgres';
import { binaryEvent, post, taskData } from '../helpers/events';

const START = path.join(__dirname, '..', '..', 'dist-tools', 'dev', 'start.js');
const DEV_CLI = path.join(__dirname, '..', '..', 'dist-tools', 'dev', 'cli.js');

/** `npm start` as a newcomer runs it: its own embedded PostgreSQL, the demo tenant, the dev mailbox. */
describe('npm start (dist-tools/dev/start.js)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tew-dev-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the worker on an embedded PostgreSQL with a demo tenant, and the mailbox shows the HTML and text parts', async () => {
    const [port, mailboxPort, pgPort] = [await freePort(), await freePort(), await freePort()];
    const child = spawn(process.execPath, [START], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DEV_DATA_DIR: dir, PORT: String(port), DEV_MAILBOX_PORT: String(mailboxPort), DEV_PG_PORT: String(pgPort), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += String(d);
          if (out.includes('Ctrl-C stops everything.')) resolve();
        });
        child.stderr.on('data', (d) => (out += String(d)));
        child.once('exit', (code) => reject(new Error(`npm start exited ${code}:\n${out}`)));
      });
      expect(out).toContain('sends as noreply@demo.mail.example.com');

      const data = taskData({ task_id: 'task-dev', metadata: { output: '## Hello\n<script>alert(1)</script> **there**' } });
      expect((await post(`http://127.0.0.1:${port}/`, binaryEvent({ tenant: 'demo', id: 'dev-1', data }))).status).toBe(202);

      const mailbox = `http://127.0.0.1:${mailboxPort}`;
      const messages = (await (await fetch(`${mailbox}/api/messages`)).json()) as Array<{ id: string; body: { from: { email: string }; subject: string } }>;
      expect(messages).toHaveLength(1);
      expect(messages[0]!.body.from.email).toBe('noreply@demo.mail.example.com');
      const list = await (await fetch(`${mailbox}/`)).text();
      expect(list).toContain(`/messages/${messages[0]!.id}`);
      const page = await (await fetch(`${mailbox}/messages/${messages[0]!.id}`)).text();
      // The HTML part as it will arrive, in a sandboxed frame (escaped into srcdoc), and the text part.
      expect(page).toMatch(/<iframe sandbox="" [^>]*srcdoc="[^"]*&lt;h2&gt;Hello&lt;\/h2&gt;/);
      expect(page).not.toContain('<script>alert(1)</script>');
      expect(page).toMatch(/<pre[^>]*>[\s\S]*Task: task-dev[\s\S]*\*\*there\*\*/);
      expect(page).toContain('<th>X-Tenant-ID</th><td>demo</td>');
      expect(page).toMatch(/<th>X-Entity-Ref-ID<\/th><td>&lt;[0-9a-f]{32}@demo\.mail\.example\.com&gt;<\/td>/);

      // `npm run cli -- …` against this stack: one step, no variables to rebuild by hand.
      expect(out).toContain('npm run cli -- settings get --tenant demo');
      const got = spawnSync(process.execPath, [DEV_CLI, 'settings', 'get', '--tenant', 'demo'], { env: { PATH: process.env.PATH, DEV_DATA_DIR: dir }, encoding: 'utf8' });
      expect({ status: got.status, stderr: got.stderr }).toEqual({ status: 0, stderr: '' });
      expect(JSON.parse(got.stdout)).toMatchObject({ tenant_id: 'demo', provider: 'sendgrid', api_key_masked: expect.any(String) });
      const sent = spawnSync(process.execPath, [DEV_CLI, 'events', 'send', '--tenant', 'demo', '--notify-email', 'you@example.com', '--id', 'dev-cli-1'], { env: { PATH: process.env.PATH, DEV_DATA_DIR: dir }, encoding: 'utf8' });
      expect(sent.status).toBe(0);
      expect(sent.stdout + sent.stderr).toMatch(/202/);
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    }
  }, 600_000);

  it('npm run cli without a dev stack says to run npm start first', () => {
    const r = spawnSync(process.execPath, [DEV_CLI, 'settings', 'get', '--tenant', 'demo'], { env: { PATH: process.env.PATH, DEV_DATA_DIR: path.join(dir, 'nothing-here') }, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/dev-env\.json does not exist: run `npm start` first/);
  });

  it.each([
    ['embedded PostgreSQL', 'DEV_PG_PORT'],
    ['the worker', 'PORT'],
    ['the dev mailbox', 'DEV_MAILBOX_PORT'],
  ])('a busy port for %s: exits 1 naming the port and %s', async (what, setting) => {
    const busy = createServer();
    const taken = await new Promise<number>((resolve) => busy.listen(0, '127.0.0.1', () => resolve((busy.address() as AddressInfo).port)));
    try {
      const ports: Record<string, string> = { PORT: String(await freePort()), DEV_MAILBOX_PORT: String(await freePort()), DEV_PG_PORT: String(await freePort()), [setting]: String(taken) };
      const r = spawnSync(process.execPath, [START], { env: { PATH: process.env.PATH, HOME: process.env.HOME, DEV_DATA_DIR: path.join(dir, `busy-${setting}`), ...ports }, encoding: 'utf8', timeout: 60_000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`npm start failed: ${what}: port ${taken} is already in use (EADDRINUSE); stop what listens there, or choose another port with ${setting}`);
    } finally {
      busy.close();
    }
  }, 600_000);
});
