import { randomUUID } from 'node:crypto';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { cli } from '../helpers/cli';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, structuredEvent, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };

/** What a Knative broker POSTs to its dead letter sink: the event as it was, plus the knativeerror* extensions. */
function asDeadLetter(ev: { headers: Record<string, string>; body: string }, answer: { status: number; body: string }, dest: string) {
  const structured = ev.headers['content-type']?.startsWith('application/cloudevents+json');
  const data = Buffer.from(answer.body.slice(0, 1024)).toString('base64');
  if (structured) {
    const envelope = { ...(JSON.parse(ev.body) as object), knativeerrorcode: String(answer.status), knativeerrordest: dest, knativeerrordata: data };
    return { headers: ev.headers, body: JSON.stringify(envelope) };
  }
  return { headers: { ...ev.headers, 'ce-knativeerrorcode': String(answer.status), 'ce-knativeerrordest': dest, 'ce-knativeerrordata': data }, body: ev.body };
}

describe('the dead-letter store and replay', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let su: Sql;
  const logs = captureLogs();
  const deadLetters = (url: string, ev: { headers: Record<string, string>; body: string }) => post(new URL('/dead-letters', url).toString(), ev);

  beforeAll(async () => {
    db = await createTestDatabase();
    su = db.admin();
    mailbox = await startMailbox();
    const sql = db.worker(1);
    const s = { provider: 'sendgrid' as const, api_key: 'SG.CANARY-dlq-0000000000000', from_email: 'noreply@q.example', provider_settings: { base_url: mailbox.url }, enabled: true };
    await putSettings(sql, { current: KEY }, 'q', { ...s, daily_limit: 0 });
    await putSettings(sql, { current: KEY }, 'other', { ...s, daily_limit: 10 });
    // The Knative worker of the chart: the admin API off, so the dead-letter store on.
    worker = await startTestWorker(db, logs.logger, { ADMIN_API_ENABLED: 'false' });
  });
  afterAll(async () => {
    await worker.shutdown();
    await mailbox.close();
    await db.drop();
  });

  it('stores a binary-mode dead letter once under its tenant, with the error decoded; a second one counts', async () => {
    const ev = binaryEvent({ tenant: 'q', id: 'dl-binary', data: taskData({ task_id: 'task-dl' }) });
    const answer = await post(worker.url, ev);
    expect(answer.status).toBe(422);
    const dl = asDeadLetter(ev, { status: answer.status, body: answer.text }, worker.url);
    expect((await deadLetters(worker.url, dl)).status).toBe(202);
    expect((await deadLetters(worker.url, dl)).status).toBe(202);
    const rows = await su`SELECT tenant_id, event_type, http_status, error_code, dead_lettered, attributes, convert_from(body, 'UTF8') AS body FROM email_dead_letters WHERE event_id = 'dl-binary'`;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ tenant_id: 'q', event_type: 'codetether.task.created', http_status: 422, error_code: 'quota_exceeded', dead_lettered: 2, body: ev.body });
    expect(rows[0]!.attributes).toMatchObject({ id: 'dl-binary', tenant: 'q', source: ev.headers['ce-source'] });
    expect(Object.keys(rows[0]!.attributes as object).some((k) => k.startsWith('knativeerror'))).toBe(false);

    // Readable only under its tenant.
    const asOther = await cli(['dead-letters', 'list', '--tenant', 'other'], { DATABASE_URL: db.workerUrl });
    expect(JSON.parse(asOther.stdout)).toMatchObject({ total: 0, items: [] });
    const asQ = JSON.parse((await cli(['dead-letters', 'list', '--tenant', 'q'], { DATABASE_URL: db.workerUrl })).stdout);
    expect(asQ.counts).toEqual({ quota_exceeded: 1 });
  });

  it('stores a structured-mode dead letter, and a tenant-less one under the global id', async () => {
    const ev = structuredEvent({ tenant: 'q', id: 'dl-structured', data: taskData() });
    const dl = asDeadLetter(ev, { status: 400, body: '{"code":"invalid_data","message":"x"}' }, worker.url);
    expect((await deadLetters(worker.url, dl)).status).toBe(202);
    const none = asDeadLetter(binaryEvent({ tenant: null, id: 'dl-global', data: { task_id: 't' } }), { status: 503, body: 'upstream connect error' }, worker.url);
    expect((await deadLetters(worker.url, none)).status).toBe(202);
    const rows = await su`SELECT event_id, tenant_id, error_code, http_status, error_data FROM email_dead_letters WHERE event_id IN ('dl-structured', 'dl-global') ORDER BY event_id`;
    expect(rows).toEqual([
      { event_id: 'dl-global', tenant_id: '(global)', error_code: null, http_status: 503, error_data: 'upstream connect error' },
      { event_id: 'dl-structured', tenant_id: 'q', error_code: 'invalid_data', http_status: 400, error_data: '{"code":"invalid_data","message":"x"}' },
    ]);
    expect((await deadLetters(worker.url, { headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
  });

  it('is not served where the admin API is (the public listener)', async () => {
    const admin = await startTestWorker(db, captureLogs().logger, { ADMIN_API_ENABLED: 'true', ADMIN_JWT_SECRET: 'dead-letter-admin-secret-0123456789abcdef' });
    try {
      const ev = asDeadLetter(binaryEvent({ tenant: 'q', id: 'dl-public', data: taskData() }), { status: 422, body: '{}' }, admin.url);
      expect((await deadLetters(admin.url, ev)).status).toBe(404);
      expect(await su`SELECT 1 FROM email_dead_letters WHERE event_id = 'dl-public'`).toHaveLength(0);
    } finally {
      await admin.shutdown();
    }
  });

  it('replays 100 quota_exceeded dead letters after the quota resets: each email once; a second replay and a dry run send nothing', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `quota-${i}-${randomUUID().slice(0, 6)}`);
    for (const id of ids) {
      const ev = binaryEvent({ tenant: 'q', id, data: taskData({ notify_email: `${id}@q.example` }) });
      const answer = await post(worker.url, ev);
      expect(JSON.parse(answer.text).code).toBe('quota_exceeded');
      expect((await deadLetters(worker.url, asDeadLetter(ev, { status: answer.status, body: answer.text }, worker.url))).status).toBe(202);
    }
    // The quota day turns (here: the limit is raised, which frees the same room).
    await su`UPDATE tenant_email_settings SET daily_limit = 1000 WHERE tenant_id = 'q'`;
    const env = { DATABASE_URL: db.workerUrl };
    const before = mailbox.emails.length;

    const dry = await cli(['dead-letters', 'replay', '--tenant', 'q', '--code', 'quota_exceeded', '--to', worker.url, '--dry-run', '--rate', '1000'], env);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, selected: 101, replayed: 0 });
    expect(mailbox.emails.length).toBe(before);

    const first = await cli(['dead-letters', 'replay', '--tenant', 'q', '--code', 'quota_exceeded', '--to', worker.url, '--rate', '1000'], env);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ selected: 101, replayed: 101, answers: { '202': 101 } });
    // 100 of this test and the one stored first: each email exactly once.
    expect(mailbox.emails.length).toBe(before + 101);
    for (const id of ids) expect(mailbox.emails.filter((e) => e.body.personalizations[0]!.to[0]!.email === `${id}@q.example`)).toHaveLength(1);

    const again = await cli(['dead-letters', 'replay', '--tenant', 'q', '--code', 'quota_exceeded', '--to', worker.url, '--rate', '1000'], env);
    expect(JSON.parse(again.stdout)).toMatchObject({ replayed: 101, answers: { '202': 101 } });
    expect(mailbox.emails.length).toBe(before + 101);
    const [r] = await su`SELECT count(*) FILTER (WHERE replays = 2 AND replay_status = 202)::int AS n FROM email_dead_letters WHERE tenant_id = 'q' AND error_code = 'quota_exceeded'`;
    expect(r!.n).toBe(101);
    expect(JSON.parse((await cli(['dead-letters', 'replay', '--tenant', 'q', '--code', 'quota_exceeded', '--not-replayed', '--to', worker.url, '--dry-run'], env)).stdout).selected).toBe(0);
  });

  it('lists across tenants only through the maintenance connection, and purges by age', async () => {
    const noBypass = await cli(['dead-letters', 'list'], { MAINTENANCE_DATABASE_URL: db.ownerUrl });
    expect([noBypass.code, noBypass.stderr]).toEqual([1, expect.stringMatching(/bypasses row-level security/)]);
    const all = JSON.parse((await cli(['dead-letters', 'list', '--limit', '1'], { MAINTENANCE_DATABASE_URL: db.superuserUrl })).stdout);
    expect(all.counts).toEqual({ http_503: 1, invalid_data: 1, quota_exceeded: 101 });
    expect(all.items).toHaveLength(1);
    await su`UPDATE email_dead_letters SET received_at = now() - interval '40 days' WHERE event_id = 'dl-global'`;
    const purged = await cli(['dead-letters', 'purge'], { MAINTENANCE_DATABASE_URL: db.superuserUrl });
    expect(JSON.parse(purged.stdout)).toMatchObject({ deleted: 1 });
    expect(await su`SELECT 1 FROM email_dead_letters WHERE event_id = 'dl-global'`).toHaveLength(0);
  });
});
