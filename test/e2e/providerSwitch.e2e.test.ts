import { randomUUID } from 'node:crypto';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { cli } from '../helpers/cli';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

describe('the provider outage switch', () => {
  let db: TestDatabase;
  let su: Sql;
  let mailbox: Mailbox;
  let postmark: FakeApi;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  const logs = captureLogs();

  const send = async (tenant: string, id = `evt-${randomUUID()}`) => {
    const res = await post(worker.url, binaryEvent({ tenant, id, data: taskData() }));
    return { ...res, id };
  };
  /** Wait until the worker's /metrics says the switch is in the given state (it refreshes off the event path). */
  const switchIs = async (w: { url: string }, provider: string, value: 0 | 1) => {
    const line = `tew_provider_disabled{provider="${provider}"} ${value}`;
    const until = Date.now() + 60_000;
    let text = '';
    while (Date.now() < until) {
      text = await (await fetch(new URL('/metrics', w.url))).text();
      if (text.includes(line)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(text).toContain(line);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    su = db.admin();
    mailbox = await startMailbox();
    postmark = await startFakeApi(PROVIDER_ROUTES.postmark);
    const sql = db.worker(1);
    const base = { provider: 'sendgrid' as const, api_key: 'SG.CANARY-switch-00000000000', from_email: 'noreply@sw.example', provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100 };
    await putSettings(sql, { current: KEY }, 'both', { ...base, fallback: { provider: 'postmark', api_key: 'CANARY-switch-postmark-token', provider_settings: { base_url: postmark.url } } });
    await putSettings(sql, { current: KEY }, 'solo', base);
    worker = await startTestWorker(db, logs.logger, { PROVIDER_SWITCH_REFRESH_MS: '100' });
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([mailbox.close(), postmark.close()]);
    await db.drop();
  });

  it('moves every tenant off a provider in one step and back: the fallback sends, a tenant without one is answered a retryable 503 and sent later', async () => {
    expect((await send('both')).status).toBe(202);
    const sg = mailbox.emails.length;
    const pm = postmark.accepted.length;

    const off = await cli(['providers', 'disable', 'sendgrid', '--note', 'SendGrid incident 1234', '--by', 'ops@test'], { MAINTENANCE_DATABASE_URL: db.ownerUrl });
    expect([off.code, off.stderr]).toEqual([0, expect.stringContaining('sendgrid is out of service')]);
    expect(JSON.parse((await cli(['providers', 'list'], { DATABASE_URL: db.workerUrl })).stdout)).toEqual([expect.objectContaining({ provider: 'sendgrid', disabled_by: 'ops@test', note: 'SendGrid incident 1234' })]);
    await switchIs(worker, 'sendgrid', 1);
    expect(logs.text()).toContain('provider outage switch: these providers are out of service');

    expect((await send('both')).status).toBe(202);
    expect([mailbox.emails.length, postmark.accepted.length]).toEqual([sg, pm + 1]);
    const held = await send('solo');
    expect(held.status).toBe(503);
    expect(held.headers.get('retry-after')).toBe('60');
    expect(JSON.parse(held.text).code).toBe('provider_disabled');
    expect(mailbox.emails.length).toBe(sg);
    expect((await su`SELECT status, error_code, quota_day FROM email_deliveries WHERE tenant_id = 'solo' AND event_id = ${held.id}`)[0]).toEqual({ status: 'failed', error_code: 'provider_disabled', quota_day: null });
    expect(await (await fetch(new URL('/metrics', worker.url))).text()).toMatch(/tew_provider_switch_events_total\{provider="sendgrid",fallback_provider="postmark"\} 1/);

    const on = await cli(['providers', 'enable', 'sendgrid'], { MAINTENANCE_DATABASE_URL: db.ownerUrl });
    expect(on.stderr).toContain('sendgrid is back in service');
    await switchIs(worker, 'sendgrid', 0);
    expect((await send('both')).status).toBe(202);
    expect(mailbox.emails.length).toBe(sg + 1);
    // The broker's retry of the held event sends it now.
    expect((await send('solo', held.id)).status).toBe(202);
    expect(mailbox.emails.length).toBe(sg + 2);
  });

  it('PROVIDERS_DISABLED does the same for one deployment, from its start', async () => {
    const w = await startTestWorker(db, captureLogs().logger, { PROVIDERS_DISABLED: 'sendgrid' });
    try {
      await switchIs(w, 'sendgrid', 1);
      const pm = postmark.accepted.length;
      expect((await post(w.url, binaryEvent({ tenant: 'both', data: taskData() }))).status).toBe(202);
      expect(postmark.accepted.length).toBe(pm + 1);
    } finally {
      await w.shutdown();
    }
    await expect(startTestWorker(db, captureLogs().logger, { PROVIDERS_DISABLED: 'sendgird' })).rejects.toThrow(/PROVIDERS_DISABLED: unknown provider sendgird/);
  });
});
