import { Egress } from '../../src/net/egress';
import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { getTemplate } from '../../src/db/templates';
import { createSql } from '../../src/db/connect';
import { createDeliveryStore } from '../../src/db/deliveries';
import { startMailbox, type FakeResponse, type Mailbox } from '../../dev/mailbox';
import { makeApp } from '../../src/app';
import { ProviderClients } from '../../src/providers/clients';
import { createEventProcessor } from '../../src/worker/processEvent';
import { freePort } from '../../dev/embeddedPostgres';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker, testConfig } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

describe('global configuration and fallback accounts', () => {
  let db: TestDatabase;
  let primary: Mailbox;
  let secondary: Mailbox;
  let global: Mailbox;
  let primaryAnswer: FakeResponse | undefined;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;

  beforeAll(async () => {
    db = await createTestDatabase();
    primary = await startMailbox({ respond: () => primaryAnswer });
    secondary = await startMailbox();
    global = await startMailbox();
    await putSettings(db.worker(1), { current: KEY }, 'fo', {
      provider: 'sendgrid', api_key: 'SG.primary-account-key-0000', from_email: 'a@fo.example', provider_settings: { base_url: primary.url },
      enabled: true, daily_limit: 100,
      fallback: { provider: 'sendgrid', api_key: 'SG.fallback-account-key-000', provider_settings: { base_url: secondary.url } },
    });
    worker = await startTestWorker(db, captureLogs().logger, {
      SENDGRID_API_KEY: 'SG.global-platform-key-00000', SENDGRID_FROM_EMAIL: 'platform@codetether.example', SENDGRID_FROM_NAME: 'CodeTether',
      SENDGRID_BASE_URL: global.url, GLOBAL_DAILY_LIMIT: '3', GLOBAL_REPLY_TO_DOMAIN: 'reply.codetether.example',
    });
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([primary.close(), secondary.close(), global.close()]);
    await db.drop();
  });
  beforeEach(() => {
    primaryAnswer = undefined;
  });

  it('sends an event without a tenant through the global configuration', async () => {
    const res = await post(worker.url, binaryEvent({ id: 'g-1', data: taskData({ task_id: 'global-1' }) }));
    expect(res.status).toBe(202);
    const m = global.emails.at(-1)!;
    expect(m.authorization).toBe('Bearer SG.global-platform-key-00000');
    expect(m.body.from).toEqual({ email: 'platform@codetether.example', name: 'CodeTether' });
    expect(m.body.reply_to).toEqual({ email: 'reply+global-1@reply.codetether.example' });
    const [row] = await db.admin()`SELECT tenant_id, settings_source, status FROM email_deliveries WHERE event_id = 'g-1'`;
    expect(row).toEqual({ tenant_id: '(global)', settings_source: 'global', status: 'sent' });
  });

  it('sends for a tenant without settings through the global configuration, within GLOBAL_DAILY_LIMIT', async () => {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(worker.url, binaryEvent({ tenant: 'no-settings' }))).status);
    expect(statuses).toEqual([202, 202, 202, 422]);
  });

  it.each([
    ['a 503', { status: 503 }],
    ['a 401', { status: 401 }],
  ] as Array<[string, FakeResponse]>)('moves the event to the fallback account on %s from the primary, exactly once', async (_n, answer) => {
    primaryAnswer = answer;
    const before = secondary.emails.length;
    const id = `fo-${JSON.stringify(answer)}`;
    expect((await post(worker.url, binaryEvent({ tenant: 'fo', id }))).status).toBe(202);
    expect(secondary.emails.length - before).toBe(1);
    expect(secondary.emails.at(-1)!.authorization).toBe('Bearer SG.fallback-account-key-000');
    expect((await post(worker.url, binaryEvent({ tenant: 'fo', id }))).status).toBe(202);
    expect(secondary.emails.length - before).toBe(1);
  });

  it('does not fail over on a 400 rejection of the message itself', async () => {
    primaryAnswer = { status: 400, body: { errors: [{ field: 'personalizations.0.to', message: 'invalid' }] } };
    const before = secondary.emails.length;
    const res = await post(worker.url, binaryEvent({ tenant: 'fo' }));
    expect([res.status, JSON.parse(res.text).code]).toEqual([422, 'provider_rejected']);
    expect(secondary.emails.length).toBe(before);
  });

  it('answers 503 database_unavailable when PostgreSQL cannot be reached', async () => {
    const deadPort = await freePort();
    const config = testConfig(db);
    const sql = createSql(`postgres://email_worker:x@127.0.0.1:${deadPort}/nope`, { max: 1, connectTimeoutSeconds: 1, statementTimeoutMs: 1000, applicationName: 'dead' });
    const app = makeApp({
      config, logger: captureLogs().logger, state: { draining: false, inFlight: 0 },
      processEvent: createEventProcessor({ config, deliveries: createDeliveryStore(sql, { keys: { current: KEY }, leaseSeconds: 60, globalDailyLimit: null }), providers: new ProviderClients({ timeoutMs: 1000, allowEndpointOverride: true, egress: new Egress({ allowPrivate: true, allowedHosts: [] }) }), loadTemplate: (t, type) => getTemplate(sql, t, type) }),
      checkReady: async () => { await sql`SELECT 1`; return true; },
    });
    const server = app.listen(0);
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    try {
      const res = await post(url, binaryEvent({ tenant: 'fo' }));
      expect([res.status, JSON.parse(res.text).code]).toEqual([503, 'database_unavailable']);
      expect((await fetch(new URL('/readyz', url))).status).toBe(503);
    } finally {
      server.close();
      await sql.end({ timeout: 1 });
    }
  });
});
