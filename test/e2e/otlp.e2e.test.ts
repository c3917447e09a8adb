import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { serveOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const API_KEY = 'SG.CANARY-APIKEY-otlp-exporter-0001';
const RECIPIENT = 'canary-otlp-recipient@customer.example';

/** A stand-in OpenTelemetry collector: keeps every OTLP/HTTP JSON body posted to /v1/traces. */
async function startCollector(): Promise<{ url: string; bodies: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += String(d)));
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('OTLP export from the built worker (SDK loaded only when OTEL_* asks for it)', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox();
    await putSettings(db.worker(1), { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, 'otlp', {
      provider: 'sendgrid', api_key: API_KEY, from_email: 'a@otlp.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 10,
    });
  });
  afterAll(async () => {
    await mailbox.close();
    await db.drop();
  });

  it('does not load the tracing SDK or the exporter when no OTEL variable asks for them', () => {
    const script = `
      require('./dist/server.js');
      const loaded = Object.keys(require.cache).filter((k) => /@opentelemetry[\\\\/](sdk-|exporter-|resources)/.test(k));
      process.stdout.write(JSON.stringify(loaded));`;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env: { PATH: process.env.PATH } });
    expect(JSON.parse(String(out))).toEqual([]);
  });

  it('exports the event span tree over OTLP/HTTP, continuing the traceparent, without recipients or keys', async () => {
    const collector = await startCollector();
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: db.workerUrl,
        DB_ENCRYPTION_KEY: CANARY_DB_KEY,
        ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true',
        SENDER_DOMAIN_POLICY: 'provider',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_SERVICE_NAME: 'email-worker-under-test',
        OTEL_BSP_SCHEDULE_DELAY: '50',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const { port } = await serveOutput(child);
      const traceId = '11112222333344445555666677778888';
      const res = await post(
        `http://127.0.0.1:${port}/`,
        binaryEvent({ tenant: 'otlp', data: taskData({ notify_email: RECIPIENT }), headers: { traceparent: `00-${traceId}-1111222233334444-01` } }),
      );
      expect(res.status).toBe(202);
      child.kill('SIGTERM'); // shutdown flushes the batch
      expect(await new Promise((r) => child.once('exit', r))).toBe(0);

      const exported = collector.bodies.join('\n');
      const spans = collector.bodies.flatMap((b) =>
        (JSON.parse(b) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; traceId: string }> }> }> }).resourceSpans.flatMap((r) =>
          r.scopeSpans.flatMap((s) => s.spans),
        ),
      );
      const names = spans.filter((s) => s.traceId === traceId).map((s) => s.name).sort();
      expect(names).toEqual(['email_claim_event', 'email_record_outcome', 'process codetether.task.created', 'send sendgrid']);
      expect(exported).toContain('email-worker-under-test');
      for (const canary of [API_KEY, CANARY_DB_KEY, RECIPIENT]) expect(exported).not.toContain(canary);
    } finally {
      child.kill('SIGKILL');
      await collector.close();
    }
  });
});
