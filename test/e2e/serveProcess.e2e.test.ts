import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post } from '../helpers/events';
import { serveOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');

describe('tenant-email serve (the built CLI, as its own process)', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  // Sends wait at the provider until the test opens the gate, so SIGTERM lands with all three in flight.
  let held = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({
      respond: () => {
        held++;
        return { until: gate };
      },
    });
    await putSettings(db.worker(1), { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, 'proc', {
      provider: 'sendgrid', api_key: 'SG.CANARY-APIKEY-process-000', from_email: 'a@proc.example', provider_settings: { base_url: mailbox.url },
      enabled: true, daily_limit: 10,
    });
  });
  afterAll(async () => {
    await mailbox.close();
    await db.drop();
  });

  it('serves events, drains on SIGTERM and exits 0, logging JSON without secrets', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0'], {
      env: { PATH: process.env.PATH, DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true', SENDER_DOMAIN_POLICY: 'provider', LOG_LEVEL: 'debug', PROVIDER_TIMEOUT_MS: '120000', CLAIM_LEASE_SECONDS: '200' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const { port, lines, stderr } = await serveOutput(child);
    const url = `http://127.0.0.1:${port}/`;
    const pending = Array.from({ length: 3 }, () => post(url, binaryEvent({ tenant: 'proc' })));
    while (held < 3) await new Promise((r) => setTimeout(r, 10)); // a busy machine only waits longer
    child.kill('SIGTERM');
    // Draining starts with all three held at the provider; then the provider answers.
    while (!lines.some((l) => l.includes('"msg":"draining"'))) await new Promise((r) => setTimeout(r, 10));
    open();
    const codes = (await Promise.all(pending)).map((r) => r.status);
    const exit = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(codes).toEqual([202, 202, 202]);
    expect(exit).toBe(0);
    expect(mailbox.emails).toHaveLength(3);
    const all = lines.join('\n') + stderr();
    expect(all).toContain('"msg":"stopped"');
    expect(all).not.toContain('CANARY');
  });

  it('exits 1 naming the port when it is already in use (not "Cannot read properties of null")', async () => {
    const busy = createServer();
    const port = await new Promise<number>((resolve) => busy.listen(0, () => resolve((busy.address() as AddressInfo).port)));
    try {
      const r = spawnSync(process.execPath, [CLI, 'serve', '--port', String(port)], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, LOG_LEVEL: 'warn' },
        encoding: 'utf8',
        timeout: 120_000, // a hang guard
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`error: the worker: port ${port} is already in use (EADDRINUSE); stop what listens there, or choose another port with PORT (serve --port)`);
    } finally {
      busy.close();
    }
  });
});
