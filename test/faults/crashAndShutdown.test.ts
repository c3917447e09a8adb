import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { classifyCopies, deliver, summarize } from '../helpers/broker';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, taskData } from '../helpers/events';
import { startFakeSmtp, type FakeSmtp } from '../helpers/fakeSmtp';
import { serveOutput, type ServeOutput } from '../helpers/serveProcess';
import { CANARY_DB_KEY } from '../helpers/worker';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');
const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const SMTP_PASS = 'CANARY-SMTP-PASSWORD-shutdown-01';

interface Received {
  eventId: string;
  ref: string | undefined;
  idempotencyKey: string | undefined;
}

/**
 * A provider that speaks SendGrid (POST /v3/mail/send) and Resend (POST /emails, with
 * Idempotency-Key replay as Resend documents it). `onAccept` runs after an email is accepted and
 * before the answer is written: the crash test kills the worker there.
 */
async function startProvider(opts: { delayMs?: number } = {}) {
  const accepted: Received[] = [];
  const idempotent = new Map<string, string>();
  let onAccept: ((r: Received) => void) | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { headers?: Record<string, string> };
      const h = body.headers ?? {};
      const r: Received = { eventId: h['X-Event-ID'] ?? '', ref: h['X-Entity-Ref-ID'], idempotencyKey: req.headers['idempotency-key'] as string | undefined };
      const answer = () => {
        if (req.url === '/emails') {
          const replay = r.idempotencyKey ? idempotent.get(r.idempotencyKey) : undefined;
          if (replay) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: replay }));
          const id = `re-${accepted.length}`;
          accepted.push(r);
          if (r.idempotencyKey) idempotent.set(r.idempotencyKey, id);
          onAccept?.(r);
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id }));
        }
        accepted.push(r);
        onAccept?.(r);
        res.writeHead(202, { 'x-message-id': `sg-${accepted.length}` }).end();
      };
      if (opts.delayMs) setTimeout(answer, opts.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted,
    setOnAccept: (f: typeof onAccept) => (onAccept = f),
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

type Child = ChildProcessByStdio<null, Readable, Readable>;

function spawnWorker(db: TestDatabase, env: Record<string, string> = {}): { child: Child; ready: Promise<ServeOutput> } {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0'], {
    env: {
      PATH: process.env.PATH, DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true',
      SENDER_DOMAIN_POLICY: 'provider', ADMIN_API_ENABLED: 'false', LOG_LEVEL: 'info', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { child, ready: serveOutput(child) };
}
// A child killed by a signal has exitCode null and signalCode set; it may have exited already.
const exited = (child: Child) => new Promise<number | null>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));

describe('crash between send and record', () => {
  let db: TestDatabase;
  let provider: Awaited<ReturnType<typeof startProvider>>;
  beforeAll(async () => {
    db = await createTestDatabase();
    provider = await startProvider();
    const sql = db.worker(1);
    await putSettings(sql, { current: KEY }, 'crash-sg', { provider: 'sendgrid', api_key: 'SG.CANARY-crash-sg-0000000', from_email: 'a@crash.example', provider_settings: { base_url: provider.url }, enabled: true, daily_limit: 10 } as never);
    await putSettings(sql, { current: KEY }, 'crash-re', { provider: 'resend', api_key: 're_CANARY_crash_0000000000', from_email: 'a@crash.example', provider_settings: { base_url: provider.url }, enabled: true, daily_limit: 10 } as never);
  });
  afterAll(async () => {
    await provider.close();
    await db.drop();
  });

  // The worker is SIGKILLed after the provider accepted the email and before it could answer, let
  // alone record the outcome. The broker sees no answer and redelivers to a fresh worker.
  async function crashRun(tenant: string, eventId: string) {
    const first = spawnWorker(db, { CLAIM_LEASE_SECONDS: '5', PROVIDER_TIMEOUT_MS: '2000' });
    const { port } = await first.ready;
    provider.setOnAccept((r) => {
      if (r.eventId === eventId) first.child.kill('SIGKILL');
    });
    const ev = { id: eventId, ...binaryEvent({ tenant, id: eventId, data: taskData({ task_id: `${eventId}-task` }) }) };
    const dead = await deliver(`http://127.0.0.1:${port}/`, ev, { retry: 0, backoffMs: 0, maxBackoffMs: 0, timeoutMs: 5000 });
    expect(await exited(first.child)).toBeNull(); // killed by a signal
    provider.setOnAccept(undefined);
    const [row] = await db.admin()`SELECT status, attempts, lease_expires_at FROM email_deliveries WHERE event_id = ${eventId}`;
    expect(row).toMatchObject({ status: 'claimed' });
    const leaseEndsAt = new Date(row!.lease_expires_at).getTime();

    const second = spawnWorker(db, { CLAIM_LEASE_SECONDS: '5', PROVIDER_TIMEOUT_MS: '2000' });
    const { port: port2 } = await second.ready;
    const started = Date.now();
    const redelivered = await deliver(`http://127.0.0.1:${port2}/`, ev, { retry: 20, backoffMs: 200, maxBackoffMs: 1000, timeoutMs: 5000 });
    const tookMs = Date.now() - started;
    second.child.kill('SIGTERM');
    expect(await exited(second.child)).toBe(0);
    const [after] = await db.admin()`SELECT status, attempts FROM email_deliveries WHERE event_id = ${eventId}`;
    return { dead, redelivered, tookMs, leaseEndsAt, after, copies: provider.accepted.filter((r) => r.eventId === eventId) };
  }

  it('SendGrid (no idempotency key): the lease holds the redelivery off, then exactly one resend with the same X-Entity-Ref-ID', async () => {
    const r = await crashRun('crash-sg', 'crash-sg-1');
    console.log(
      `crash after send (SendGrid): first attempt ${r.dead.attempts[0]!.error ?? r.dead.attempts[0]!.status}; redelivery answers ${r.redelivered.attempts.map((a) => a.code ?? a.status).join(',')} ` +
        `over ${r.tookMs} ms; emails at the provider ${r.copies.length}; ledger ${JSON.stringify(r.after)}`,
    );
    expect(r.dead.attempts[0]!.status).toBeNull();
    expect(r.redelivered.result).toBe('delivered');
    // While the dead worker's lease runs, the event is in flight: 409, which Knative retries. Every
    // attempt answered before the lease ended must be a 409, however long the restart took; the
    // last one, after it, takes the claim over.
    const beforeLeaseEnd = r.redelivered.attempts.filter((a) => a.at + a.ms < r.leaseEndsAt);
    expect(beforeLeaseEnd.map((a) => a.code)).toEqual(beforeLeaseEnd.map(() => 'event_in_flight'));
    expect(r.redelivered.attempts.slice(0, -1).every((a) => a.code === 'event_in_flight')).toBe(true);
    expect(r.redelivered.attempts.at(-1)!.at + r.redelivered.attempts.at(-1)!.ms).toBeGreaterThanOrEqual(r.leaseEndsAt - 1000);
    // The window that remains: the provider got it twice. Both copies carry the same reference.
    expect(r.copies).toHaveLength(2);
    expect(new Set(r.copies.map((c) => c.ref)).size).toBe(1);
    expect(r.after).toEqual({ status: 'sent', attempts: 2 });
  }, 600_000);

  it("Resend: the resend carries the same Idempotency-Key, so the provider sends it once", async () => {
    const r = await crashRun('crash-re', 'crash-re-1');
    console.log(`crash after send (Resend): emails at the provider ${r.copies.length}; idempotency keys ${new Set(r.copies.map((c) => c.idempotencyKey)).size}; ledger ${JSON.stringify(r.after)}`);
    expect(r.redelivered.result).toBe('delivered');
    expect(r.copies).toHaveLength(1);
    expect(r.after).toEqual({ status: 'sent', attempts: 2 });
  }, 600_000);
});

describe('SIGTERM under load', () => {
  let db: TestDatabase;
  let provider: Awaited<ReturnType<typeof startProvider>>;
  let smtp: FakeSmtp;
  beforeAll(async () => {
    db = await createTestDatabase();
    provider = await startProvider({ delayMs: 150 });
    smtp = await startFakeSmtp({ mailer: SMTP_PASS });
    const sql = db.worker(1);
    for (let t = 0; t < 4; t++) {
      await putSettings(sql, { current: KEY }, `drain-${t}`, { provider: 'sendgrid', api_key: `SG.CANARY-drain-${t}-000000`, from_email: 'a@drain.example', provider_settings: { base_url: provider.url }, enabled: true, daily_limit: 10_000 } as never);
    }
    await putSettings(sql, { current: KEY }, 'drain-smtp', { provider: 'smtp', api_key: SMTP_PASS, from_email: 'a@drain.example', provider_settings: { host: '127.0.0.1', port: smtp.port, username: 'mailer', require_tls: false }, enabled: true, daily_limit: 10_000 } as never);
  });
  afterAll(async () => {
    await provider.close();
    await smtp.close();
    await db.drop();
  });

  it('stops taking events, finishes the in-flight ones, closes pools and SMTP connections, exits 0 within the grace period; a second instance takes the rest', async () => {
    // Longer than the chart's 25 s: the property is that the worker drains what it holds, closes
    // everything and exits 0 before its grace runs out. How long the drain takes depends on the
    // machine (on two starved cores, 39 in-flight events took 25 s); the figure is printed.
    const GRACE_MS = 120_000;
    const w = spawnWorker(db, { SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    const { port, lines, stderr } = await w.ready;
    const url = `http://127.0.0.1:${port}/`;
    const N = 300;
    const events = Array.from({ length: N }, (_, i) => {
      const tenant = i % 5 === 4 ? 'drain-smtp' : `drain-${i % 5}`;
      return { id: `drain-${i}`, ...binaryEvent({ tenant, id: `drain-${i}`, data: taskData({ task_id: `drain-task-${i}` }) }) };
    });
    // The broker keeps delivering to whatever answers at `target` (the Service: old pod, then new).
    let target = url;
    const policy = { retry: 30, backoffMs: 50, maxBackoffMs: 500, timeoutMs: 30_000 }; // the chart's attempt timeout
    const run = Promise.all(events.map(async (ev, i) => {
      await new Promise((r) => setTimeout(r, i * 3));
      let last;
      for (let round = 0; round < 5; round++) {
        last = await deliver(target, ev, policy);
        if (last.result === 'delivered' || last.attempts.at(-1)!.status !== null) break;
      }
      return last!;
    }));

    // SIGTERM once the worker is busy: SMTP connections open and emails going out.
    // (Polls: a busy machine only makes these waits longer, never the outcome different.)
    for (let i = 0; i < 2400 && !(smtp.openConnections() > 0 && provider.accepted.length >= 20); i++) await new Promise((r) => setTimeout(r, 25));
    const openSmtpBefore = smtp.openConnections();
    const sigtermAt = Date.now();
    w.child.kill('SIGTERM');
    // From the moment it drains, readiness is false and new events are turned away (retryable).
    for (let i = 0; i < 6000 && !lines.some((l) => l.includes('"msg":"draining"')); i++) await new Promise((r) => setTimeout(r, 5));
    const ready = await fetch(new URL('/readyz', url)).then(async (r) => ({ status: r.status, body: await r.json() }), () => null);
    const refused = await fetch(url, { method: 'POST', headers: events[0]!.headers, body: events[0]!.body }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code: string }, connection: r.headers.get('connection') }), () => null);
    const code = await exited(w.child);
    const exitMs = Date.now() - sigtermAt;
    for (let i = 0; i < 1200 && smtp.openConnections() > 0; i++) await new Promise((r) => setTimeout(r, 25));
    const openSmtpAfter = smtp.openConnections();

    // The replacement instance.
    const next = spawnWorker(db);
    const { port: port2, lines: nextLines } = await next.ready;
    target = `http://127.0.0.1:${port2}/`;
    const deliveries = await run;
    next.child.kill('SIGTERM');
    expect(await exited(next.child)).toBe(0);

    const summary = summarize(deliveries);
    const copies = new Map<string, number>();
    for (const r of provider.accepted) copies.set(r.eventId, (copies.get(r.eventId) ?? 0) + 1);
    for (const m of smtp.received) {
      const id = String(m.parsed.headers.get('x-event-id') ?? '');
      copies.set(id, (copies.get(id) ?? 0) + 1);
    }
    const ids = events.map((e) => e.id);
    const emails = ids.reduce((a, id) => a + (copies.get(id) ?? 0), 0);
    const doubled = ids.filter((id) => (copies.get(id) ?? 0) > 1);
    const drained = lines.find((l) => l.includes('"msg":"draining"'));
    const at = (msg: string) => {
      const l = lines.find((x) => x.includes(`"msg":"${msg}"`));
      return l ? Date.parse(JSON.parse(l).time) : NaN;
    };
    const phases = { drain_ms: at('grace period over') || at('stopped') - at('draining'), stop_ms: at('stopped') - at('draining'), grace_over: lines.some((l) => l.includes('grace period over')) };
    console.log(
      `SIGTERM under load: ${N} events, ${summary.delivered} delivered, ${emails} emails, ${doubled.length} doubled; in flight at SIGTERM ${drained ? JSON.parse(drained).in_flight : '?'}; ` +
        `readyz while draining ${ready ? ready.status : 'closed'}, a new event ${refused ? `${refused.status} ${refused.body.code}` : 'refused'}; exit ${code} after ${exitMs} ms (grace ${GRACE_MS}; ${JSON.stringify(phases)}); SMTP connections open before/after ${openSmtpBefore}/${openSmtpAfter}; answers ${JSON.stringify(summary.byAnswer)}`,
    );
    expect(code).toBe(0);
    // Within the grace period by the worker's own account (it logs "grace period over" when it
    // had to stop waiting): the test's clock would also count how busy the machine was.
    // Never "ready" once draining started: 503 draining while events finish, or already closed.
    if (ready) expect(ready).toEqual({ status: 503, body: { status: 'draining' } });
    if (refused) expect(refused).toEqual({ status: 503, body: expect.objectContaining({ code: 'shutting_down' }), connection: 'close' });
    expect(JSON.parse(drained!).in_flight).toBeGreaterThan(0);
    expect(lines.join('\n')).toContain('"msg":"stopped"');
    expect(lines.join('\n')).not.toContain('grace period over');
    expect(openSmtpBefore).toBeGreaterThan(0);
    expect(openSmtpAfter).toBe(0);
    expect(summary.delivered).toBe(N);
    // Duplicates only inside the documented window (a send that ended in provider_timeout).
    const workerLog = [...lines, ...nextLines].join('\n');
    const { unexplained, extraCopies } = classifyCopies(deliveries, (id) => copies.get(id) ?? 0, workerLog);
    // What each worker logged for an unexplained copy, so a failing run says what happened.
    for (const id of unexplained) console.log(`${id}:\n${workerLog.split('\n').filter((l) => l.includes(`"event_id":"${id}"`)).join('\n')}`);
    expect(unexplained).toEqual([]);
    expect(emails).toBe(N + extraCopies);
    expect((lines.join('\n') + stderr()).includes('CANARY')).toBe(false);
  }, 600_000);
});
