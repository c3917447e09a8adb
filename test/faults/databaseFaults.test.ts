import { classifyCopies, deliverAll, summarize } from '../helpers/broker';
import { startOwnDatabase, type OwnDatabase } from '../helpers/pgControl';
import { binaryEvent, taskData } from '../helpers/events';
import { startFaultyProvider, type FaultyProvider } from '../helpers/faultyProvider';
import { captureLogs } from '../helpers/logCapture';
import { until } from '../helpers/until';
import { startTestWorker } from '../helpers/worker';

/**
 * A PostgreSQL of this file's own (the shared one serves the other test files), so it can be
 * stopped and started mid-run.
 */
describe('database faults', () => {
  let db: OwnDatabase;
  let pg: OwnDatabase['pg'];
  let workerUrl: string;
  let superuser: OwnDatabase['superuser'];
  let provider: FaultyProvider;
  const TENANTS = 10;

  beforeAll(async () => {
    provider = await startFaultyProvider({ error500: 0, rate429: 0, reset: 0, hang: 0, slow: 0 }, { slowMs: 0 });
    db = await startOwnDatabase('faults', { tenants: TENANTS, tenant: (t) => `dbf-${t}`, providerUrl: provider.url, superuserPool: 2 });
    ({ pg, workerUrl, superuser } = db);
  }, 600_000);
  afterAll(async () => {
    await db?.close();
    await provider?.close();
  });

  const events = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, ...binaryEvent({ tenant: `dbf-${i % TENANTS}`, id: `${prefix}-${i}`, data: taskData({ task_id: `${prefix}-task-${i}` }) }) }));
  const readyz = (url: string) => fetch(new URL('/readyz', url)).then((r) => r.status, () => 0);

  it('PostgreSQL stopped and started mid-run: 503s and /readyz false while down, recovery without a restart, no email lost or doubled', async () => {
    const logs = captureLogs('info');
    const w = await startTestWorker({ workerUrl }, logs.logger, { DB_CONNECT_TIMEOUT_SECONDS: '1', DB_STATEMENT_TIMEOUT_MS: '2000' });
    const N = 400;
    const readiness: number[] = [];
    try {
      const run = deliverAll(w.url, events('outage', N), { retry: 120, backoffMs: 50, maxBackoffMs: 500, timeoutMs: 30_000 }, 16);
      await until(() => provider.accepted.size >= 100, 300_000);
      await pg.stop();
      await until(async () => (await readyz(w.url)) === 503, 300_000);
      readiness.push(503);
      await new Promise((r) => setTimeout(r, 1500));
      readiness.push(await readyz(w.url));
      await pg.start();
      await until(async () => (await readyz(w.url)) === 200, 300_000);
      readiness.push(200);
      const deliveries = await run;
      const summary = summarize(deliveries);
      const ids = deliveries.map((d) => d.id);
      const emails = ids.reduce((a, id) => a + (provider.accepted.get(id) ?? 0), 0);
      // Duplicates only inside the documented window (a send that ended in provider_timeout).
      const { doubled, unexplained, extraCopies } = classifyCopies(deliveries, (id) => provider.accepted.get(id) ?? 0, logs.text());
      const lost = deliveries.filter((d) => d.result === 'delivered' && !provider.accepted.get(d.id)).map((d) => d.id);
      // Outcomes that could not be written during the outage are written in the background once it is back.
      const ledgerNow = () => superuser`SELECT count(*) FILTER (WHERE status = 'claimed')::int AS n FROM email_deliveries WHERE event_id LIKE 'outage-%'`.then(([r]) => r!.n as number);
      await until(async () => (await ledgerNow()) === 0, 20_000).catch(() => {});
      const [ledger] = await superuser`SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent, count(*) FILTER (WHERE status = 'claimed')::int AS unrecorded, count(*)::int AS rows FROM email_deliveries WHERE event_id LIKE 'outage-%'`;
      console.log(
        `database outage: ${summary.events} events, ${summary.delivered} delivered, ${summary.deadLettered} dead-lettered, ${emails} emails, ${doubled.length} doubled, ${lost.length} lost; ` +
          `${summary.attempts} attempts, slowest answer ${summary.maxAttemptMs} ms; answers ${JSON.stringify(summary.byAnswer)}; readyz ${readiness.join('→')}; ledger ${JSON.stringify(ledger)}`,
      );
      expect(readiness).toEqual([503, 503, 200]);
      expect(summary.delivered).toBe(N);
      expect(unexplained).toEqual([]);
      expect(lost).toEqual([]);
      expect(emails).toBe(N + extraCopies);
      expect(summary.byAnswer['503 database_unavailable']).toBeGreaterThan(0);
      expect(Object.keys(summary.byAnswer).filter((k) => k.startsWith('no answer') || k.startsWith('500'))).toEqual([]);
      // An email sent just before the outage whose outcome could not be written stays "sending"
      // (its lease keeps a redelivery out); it was answered 202, so the broker did not redeliver it.
      expect(ledger!.sent + ledger!.unrecorded).toBe(N);
    } finally {
      await w.shutdown();
    }
    expect(logs.text()).not.toContain('CANARY');
  }, 600_000);

  it('pool exhaustion: bounded in-flight work, retryable answers, then every email exactly once', async () => {
    const logs = captureLogs('info');
    const w = await startTestWorker({ workerUrl }, logs.logger, { DB_POOL_MAX: '1', MAX_IN_FLIGHT_EVENTS: '8', DB_STATEMENT_TIMEOUT_MS: '300' });
    let maxInFlight = 0;
    const sampler = setInterval(() => (maxInFlight = Math.max(maxInFlight, w.state.inFlight)), 2);
    const N = 200;
    try {
      // Another session holds the quota table: every claim blocks on it until its statement timeout.
      const blocker = superuser.begin(async (tx) => {
        await tx`LOCK TABLE tenant_email_usage IN EXCLUSIVE MODE`;
        await new Promise((r) => setTimeout(r, 2000));
      });
      const deliveries = await deliverAll(w.url, events('pool', N), { retry: 120, backoffMs: 50, maxBackoffMs: 500, timeoutMs: 30_000 }, 48);
      await blocker;
      const summary = summarize(deliveries);
      const ids = deliveries.map((d) => d.id);
      const { doubled, unexplained, extraCopies } = classifyCopies(deliveries, (id) => provider.accepted.get(id) ?? 0, logs.text());
      const emails = ids.reduce((a, id) => a + (provider.accepted.get(id) ?? 0), 0);
      console.log(
        `pool exhaustion: ${summary.events} events at concurrency 48 on a pool of 1, ${summary.delivered} delivered, ${emails} emails, ${doubled.length} doubled; ` +
          `max in flight ${maxInFlight} (cap 8); slowest answer ${summary.maxAttemptMs} ms; answers ${JSON.stringify(summary.byAnswer)}`,
      );
      expect(summary.delivered).toBe(N);
      expect(emails).toBe(N + extraCopies);
      expect(unexplained).toEqual([]);
      expect(maxInFlight).toBeLessThanOrEqual(8);
      expect(summary.byAnswer['503 overloaded']).toBeGreaterThan(0);
      expect(summary.byAnswer['503 database_unavailable']).toBeGreaterThan(0);
      expect(Object.keys(summary.byAnswer).filter((k) => k.startsWith('no answer') || k.startsWith('500'))).toEqual([]);
    } finally {
      clearInterval(sampler);
      await w.shutdown();
    }
  }, 600_000);
});
