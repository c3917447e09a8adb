import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/dev/embeddedPostgres';
import { binaryEvent, post, taskData } from '../helpers/events';

const START = path.join(__dirname, '..', '..', 'dist', 'dev', 'start.js');

/** `npm start` as a newcomer runs it: its own embedded PostgreSQL, the demo tenant, the dev mailbox. */
describe('npm start (dist/dev/start.js)', () => {
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
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    }
  }, 60_000);
});
