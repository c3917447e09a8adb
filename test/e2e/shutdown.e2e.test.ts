import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

describe('graceful shutdown', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let gate: { opened: Promise<void>; open(): void } | undefined;
  const until = async (what: () => boolean) => {
    // Polls; a busy machine only makes the wait longer (jest's timeout guards a hang).
    while (!what()) await new Promise((r) => setTimeout(r, 10));
  };
  beforeAll(async () => {
    db = await createTestDatabase();
    // Each send waits at the provider until the test opens the gate (400 ms when none is set).
    mailbox = await startMailbox({ respond: () => (gate ? { until: gate.opened } : { delayMs: 400 }) });
    await putSettings(db.worker(1), { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, 'slow', {
      provider: 'sendgrid', api_key: 'SG.slow-provider-key-000000', from_email: 'a@slow.example',
      provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100,
    });
  });
  afterAll(async () => {
    await mailbox.close();
    await db.drop();
  });

  it('answers 503 overloaded with Retry-After beyond MAX_IN_FLIGHT_EVENTS, and loses nothing', async () => {
    let open!: () => void;
    gate = { opened: new Promise<void>((r) => (open = r)), open: () => open() };
    const w = await startTestWorker(db, captureLogs().logger, { MAX_IN_FLIGHT_EVENTS: '2', PROVIDER_TIMEOUT_MS: '120000', CLAIM_LEASE_SECONDS: '200' });
    try {
      const before = mailbox.emails.length;
      // Two sends held at the provider keep the worker full while the other three arrive.
      const pending = Array.from({ length: 5 }, (_, i) => post(w.url, binaryEvent({ tenant: 'slow', id: `burst-${i}` })));
      let answered = 0;
      for (const p of pending) void p.then(() => answered++);
      await until(() => answered === 3);
      gate.open();
      gate = undefined;
      const answers = await Promise.all(pending);
      const ok = answers.filter((a) => a.status === 202);
      const busy = answers.filter((a) => a.status === 503);
      expect([ok.length, busy.length]).toEqual([2, 3]);
      expect(JSON.parse(busy[0]!.text).code).toBe('overloaded');
      expect(busy[0]!.headers.get('retry-after')).toBe('1');
      // The broker's retries of the refused ones go through.
      for (let i = 0; i < 5; i++) expect((await post(w.url, binaryEvent({ tenant: 'slow', id: `burst-${i}` }))).status).toBe(202);
      expect(mailbox.emails.length - before).toBe(5);
    } finally {
      await w.shutdown();
    }
  });

  it('stops taking events, finishes the in-flight ones, then closes', async () => {
    let open!: () => void;
    gate = { opened: new Promise<void>((r) => (open = r)), open: () => open() };
    // The provider holds every send until the gate opens: no provider timeout may end one first.
    const w = await startTestWorker(db, captureLogs().logger, { PROVIDER_TIMEOUT_MS: '120000', CLAIM_LEASE_SECONDS: '200' });
    const inFlight = Array.from({ length: 5 }, (_, i) => post(w.url, binaryEvent({ tenant: 'slow', data: taskData({ task_id: `drain-${i}` }) })));
    await until(() => w.state.inFlight === 5);
    const closing = w.shutdown();
    expect(w.state.draining).toBe(true);
    gate.open();
    const answers = await Promise.all(inFlight);
    gate = undefined;
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    await closing;
    expect(mailbox.emails.filter((e) => /drain-/.test(JSON.stringify(e.body)))).toHaveLength(5);
    await expect(fetch(new URL('/healthz', w.url))).rejects.toThrow();
    const [row] = await db.admin()`SELECT count(*)::int AS n FROM email_deliveries WHERE status = 'sent' AND task_id LIKE 'drain-%'`;
    expect(row!.n).toBe(5);
  });
});
