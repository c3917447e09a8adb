import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { keyId, loadConfig } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type FakeResponse, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';
import { until } from '../helpers/until';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

/**
 * A TCP proxy in front of the test PostgreSQL that can swallow one answer: once armed with a
 * marker, the first client message that carries it is passed on, and what the server sends back
 * on that connection is held; `cut()` then closes the connection without delivering it. The
 * statement ran and committed; its caller never learns so — as when PostgreSQL restarts or the
 * network drops between the commit and the answer.
 */
async function startAnswerEater(target: URL) {
  let marker: string | undefined;
  let victim: { client: Socket; upstream: Socket } | undefined;
  const sockets: Socket[] = [];
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.push(client, upstream);
    let holding = false;
    client.on('data', (d: Buffer) => {
      if (marker && d.includes(marker)) {
        marker = undefined;
        holding = true;
        victim = { client, upstream };
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!holding) client.write(d);
    });
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    arm: (m: string) => (marker = m),
    hasVictim: () => victim !== undefined,
    cut: () => (victim?.client.destroy(), victim?.upstream.destroy()),
    close: () => (sockets.forEach((s) => s.destroy()), new Promise<void>((r) => server.close(() => r()))),
  };
}

describe('claims a worker knows it will not use', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let fallbackBox: Mailbox;
  let answer: FakeResponse | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({ respond: () => answer });
    fallbackBox = await startMailbox();
    const sql = db.worker(1);
    // A daily limit of 1: the second claim below succeeds only if the first gave its unit back.
    await putSettings(sql, { current: KEY }, 'lost-answer', { provider: 'sendgrid', api_key: 'SG.CANARY-lost-answer-0000', from_email: 'a@lost.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 1 } as never);
    await putSettings(sql, { current: KEY }, 'slow-claim', { provider: 'sendgrid', api_key: 'SG.CANARY-slow-claim-00000', from_email: 'a@slow.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 1 } as never);
    await putSettings(sql, { current: KEY }, 'no-time', {
      provider: 'sendgrid', api_key: 'SG.CANARY-no-time-0000000', from_email: 'a@notime.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 10,
      fallback: { provider: 'sendgrid', api_key: 'SG.CANARY-no-time-fallback', provider_settings: { base_url: fallbackBox.url } },
    } as never);
  });
  afterAll(async () => {
    await Promise.all([mailbox.close(), fallbackBox.close()]);
    await db.drop();
  });
  beforeEach(() => (answer = undefined));
  const row = async (id: string) => (await db.admin()`SELECT status, error_code, attempts, claim_token FROM email_deliveries WHERE event_id = ${id}`)[0];
  const sentTo = (box: Mailbox, id: string) => box.emails.filter((e) => e.body.headers?.['X-Event-ID'] === id).length;

  it('a claim that committed but whose answer was lost is given up once the database answers, so the next redelivery sends at once (not after the lease)', async () => {
    const eater = await startAnswerEater(new URL(db.workerUrl));
    const url = new URL(db.workerUrl);
    url.port = String(eater.port);
    const logs = captureLogs('info');
    // A lease of 10 minutes: only the worker giving the claim up can let the redelivery through.
    const w = await startTestWorker({ workerUrl: url.toString() }, logs.logger, { CLAIM_LEASE_SECONDS: '600' });
    try {
      const id = 'lost-answer-1';
      const ev = binaryEvent({ tenant: 'lost-answer', id, data: taskData({ task_id: 'lost-task-1' }) });
      eater.arm(id);
      const first = post(w.url, ev);
      // The claim is committed: the row is there under the worker's token. Then its answer is lost.
      const claimed = await until(async () => (await row(id))?.status === 'claimed' && eater.hasVictim() && (await row(id)));
      eater.cut();
      const res = await first;
      expect({ status: res.status, code: JSON.parse(res.text).code }).toEqual({ status: 503, code: 'database_unavailable' });
      // The worker records the claim it never used as failed (which gives the quota unit back)…
      const released = await until(async () => {
        const r = await row(id);
        return r?.status === 'failed' && r;
      });
      expect(released).toMatchObject({ error_code: 'database_unavailable', attempts: 1 });
      expect(logs.text()).toContain('gave up a claim whose answer was lost');
      expect(sentTo(mailbox, id)).toBe(0);
      // …so the redelivery claims and sends at once, within the daily limit of 1.
      const again = await post(w.url, ev);
      expect(again.status).toBe(202);
      expect(sentTo(mailbox, id)).toBe(1);
      expect(await row(id)).toMatchObject({ status: 'sent', attempts: 2 });
      expect((await row(id))!.claim_token).toBeNull();
      expect(claimed.claim_token).not.toBeNull();
    } finally {
      await w.shutdown();
      await eater.close();
    }
    expect(logs.text()).not.toContain('CANARY');
  }, 300_000);

  it('no send starts that could outlast the claim: a claim slowed past lease − timeout − 2 s answers 503 claim_lease_expiring, sends nothing, and gives the quota back', async () => {
    const logs = captureLogs('info');
    // Lease 5 s, timeout 2 s: a send must start within 1 s of the claim.
    const w = await startTestWorker(db, logs.logger, { CLAIM_LEASE_SECONDS: '5', PROVIDER_TIMEOUT_MS: '2000', DB_STATEMENT_TIMEOUT_MS: '60000' });
    const locker = db.admin();
    let release: () => void = () => {};
    try {
      const id = 'slow-claim-1';
      const ev = binaryEvent({ tenant: 'slow-claim', id, data: taskData({ task_id: 'slow-task-1' }) });
      // The claim reads the tenant's template version; another session holds that table, so the
      // claim waits inside its transaction. Held until the worker has waited there well past 1 s.
      let locked!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const isLocked = new Promise<void>((r) => (locked = r));
      const lock = locker.begin(async (tx) => {
        await tx`LOCK TABLE tenant_email_templates IN ACCESS EXCLUSIVE MODE`;
        locked();
        await held;
      });
      await isLocked;
      const first = post(w.url, ev);
      await until(async () => (await locker`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%email_claim_event%' AND now() - query_start > interval '1.5 seconds'`).length > 0);
      release();
      await lock;
      const res = await first;
      expect({ status: res.status, code: JSON.parse(res.text).code }).toEqual({ status: 503, code: 'claim_lease_expiring' });
      expect(sentTo(mailbox, id)).toBe(0);
      expect(await row(id)).toMatchObject({ status: 'failed', error_code: 'claim_lease_expiring' });
      // The redelivery sends it, within the daily limit of 1.
      const again = await post(w.url, ev);
      expect(again.status).toBe(202);
      expect(sentTo(mailbox, id)).toBe(1);
    } finally {
      release(); // a failed run must not leave the table locked for the tests after it
      await w.shutdown();
    }
  }, 300_000);

  it('a fallback starts only while it can end inside the lease; otherwise the primary’s retryable error is answered', async () => {
    const logs = captureLogs('info');
    answer = { hang: true };
    // Lease 5 s, timeout 2 s: the primary times out at ≥ 2 s, past the 1 s a send may start in.
    const w = await startTestWorker(db, logs.logger, { CLAIM_LEASE_SECONDS: '5', PROVIDER_TIMEOUT_MS: '2000' });
    try {
      const res = await post(w.url, binaryEvent({ tenant: 'no-time', id: 'no-time-1', data: taskData({ task_id: 'no-time-1' }) }));
      expect({ status: res.status, code: JSON.parse(res.text).code }).toEqual({ status: 503, code: 'provider_timeout' });
      expect(fallbackBox.requests).toBe(0);
      expect(logs.text()).toContain("the claim's lease leaves no time for the fallback");
    } finally {
      await w.shutdown();
    }
    // With room in the lease (60 s) the same failure goes to the fallback.
    const roomy = await startTestWorker(db, captureLogs('info').logger, { CLAIM_LEASE_SECONDS: '60', PROVIDER_TIMEOUT_MS: '2000' });
    try {
      const res = await post(roomy.url, binaryEvent({ tenant: 'no-time', id: 'no-time-2', data: taskData({ task_id: 'no-time-2' }) }));
      expect(res.status).toBe(202);
      expect(sentTo(fallbackBox, 'no-time-2')).toBe(1);
    } finally {
      await roomy.shutdown();
    }
  }, 300_000);

  it('start-up refuses a lease too short for one provider call, naming both settings and the least that works', () => {
    const env = { DATABASE_URL: 'postgres://u@localhost/db', DB_ENCRYPTION_KEY: CANARY_DB_KEY };
    expect(() => loadConfig({ ...env, CLAIM_LEASE_SECONDS: '12' })).toThrow(/CLAIM_LEASE_SECONDS \(12\) is too short for PROVIDER_TIMEOUT_MS \(10000\).*at least 13/);
    expect(() => loadConfig({ ...env, CLAIM_LEASE_SECONDS: '13' })).not.toThrow();
    expect(loadConfig(env).claimLeaseSeconds).toBe(30);
  });
});
