import { keyId } from '../src/config';
import { createDeliveryStore } from '../src/db/deliveries';
import { loadWebhookVerifier, putWebhook } from '../src/db/feedback';
import { startMailbox, type Mailbox } from '../dev/mailbox';
import { cli } from './helpers/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';
import { captureLogs } from './helpers/logCapture';
import { startTestWorker } from './helpers/worker';

const KEY_A = 'key-A-0123456789abcdef0123456789abcdef-aaaa';
const KEY_B = 'key-B-0123456789abcdef0123456789abcdef-bbbb';


describe('ops commands', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let envA: Record<string, string>;
  const settings = (key: string) => JSON.stringify({ provider: 'sendgrid', api_key: key, from_email: 'ops@t.example', provider_settings: { base_url: mailbox.url } });

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({ respond: (r) => (r.authorization === 'Bearer SG.wrong-key-00000000000' ? { status: 401, body: {} } : undefined) });
    envA = { DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: KEY_A, ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true' };
    for (const t of ['r1', 'r2', 'r3']) expect((await cli(['settings', 'put', '--tenant', t], envA, settings(`SG.rotate-me-${t}-000000000`))).code).toBe(0);
    // A webhook signing secret is encrypted under the same key (sql/009).
    await putWebhook(db.worker(1), { current: { id: keyId(KEY_A), secret: KEY_A } }, 'r1', 'resend', { signingSecret: 'whsec_rotate-me-0000000000', signingSecretHint: 'whsec_…0000' });
  });
  afterAll(async () => {
    await mailbox.close();
    await db.drop();
  });

  it('rotates keys in batches, resumes after an interruption, and leaves workers with only the new key able to send', async () => {
    const envRotate = { DB_ENCRYPTION_KEY: KEY_B, DB_ENCRYPTION_KEY_PREVIOUS: KEY_A, MAINTENANCE_DATABASE_URL: db.superuserUrl };
    const first = await cli(['keys', 'rotate', '--batch-size', '1', '--max-batches', '1'], envRotate);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ rotated: 1, remaining: 3, unknownKey: 0 });
    expect(first.stderr).toContain('run keys rotate again');
    const second = await cli(['keys', 'rotate', '--batch-size', '2'], envRotate);
    expect(JSON.parse(second.stdout)).toMatchObject({ rotated: 3, remaining: 0 });
    // The webhook secret opens with the new key alone, and the census no longer names the old key.
    expect((await loadWebhookVerifier(db.worker(1), { current: { id: keyId(KEY_B), secret: KEY_B } }, 'r1', 'resend'))?.signingSecret).toBe('whsec_rotate-me-0000000000');
    expect((await db.worker(1)`SELECT key_id FROM email_encryption_key_census()`).map((r) => r.key_id)).toEqual([keyId(KEY_B)]);
    const store = createDeliveryStore(db.worker(1), { keys: { current: { id: keyId(KEY_B), secret: KEY_B } }, leaseSeconds: 60, globalDailyLimit: null });
    for (const t of ['r1', 'r2', 'r3']) {
      const c = await store.claim({ tenantId: t, eventSource: 's', eventId: 'after-rotation', eventType: 't', taskId: 'x', hasRecipient: true });
      expect(c.outcome === 'claimed' && c.settings?.primary.apiKey).toBe(`SG.rotate-me-${t}-000000000`);
    }
  });

  it('refuses to rotate without a role that bypasses RLS, or without the previous key', async () => {
    const noBypass = await cli(['keys', 'rotate'], { DB_ENCRYPTION_KEY: KEY_A, DB_ENCRYPTION_KEY_PREVIOUS: KEY_B, MAINTENANCE_DATABASE_URL: db.ownerUrl });
    expect([noBypass.code, noBypass.stderr]).toEqual([1, expect.stringMatching(/bypasses row-level security/)]);
    const noPrev = await cli(['keys', 'rotate'], { DB_ENCRYPTION_KEY: KEY_A, MAINTENANCE_DATABASE_URL: db.superuserUrl });
    expect([noPrev.code, noPrev.stderr]).toEqual([1, expect.stringMatching(/DB_ENCRYPTION_KEY_PREVIOUS is not set/)]);
    const noUrl = await cli(['keys', 'rotate'], { DB_ENCRYPTION_KEY: KEY_A, DB_ENCRYPTION_KEY_PREVIOUS: KEY_B });
    expect(noUrl.stderr).toMatch(/MAINTENANCE_DATABASE_URL is not set/);
  });

  it('backfills tenants without settings from the global configuration, once', async () => {
    await db.admin()`INSERT INTO tenants (id) VALUES ('legacy-1'), ('legacy-2') ON CONFLICT DO NOTHING`;
    const env = { DB_ENCRYPTION_KEY: KEY_B, MAINTENANCE_DATABASE_URL: db.superuserUrl, SENDGRID_API_KEY: 'SG.global-backfill-key-0000', SENDGRID_FROM_EMAIL: 'noreply@platform.example', GLOBAL_DAILY_LIMIT: '50' };
    const first = await cli(['backfill', '--from-global'], env);
    expect(JSON.parse(first.stdout)).toEqual({ created: 2, tenants: ['legacy-1', 'legacy-2'] });
    expect(JSON.parse((await cli(['backfill', '--from-global'], env)).stdout)).toEqual({ created: 0, tenants: [] });
    const got = await cli(['settings', 'get', '--tenant', 'legacy-1'], { DATABASE_URL: db.workerUrl });
    expect(JSON.parse(got.stdout)).toMatchObject({ provider: 'sendgrid', from_email: 'noreply@platform.example', daily_limit: 50, api_key_masked: 'SG.…0000', key_id: keyId(KEY_B) });
  });

  it('verifies settings from the command line', async () => {
    const envB = { ...envA, DB_ENCRYPTION_KEY: KEY_B };
    const ok = await cli(['settings', 'verify', '--tenant', 'r1'], envB);
    expect([ok.code, ok.stdout]).toEqual([0, 'primary sendgrid: ok\n']);
    await cli(['settings', 'put', '--tenant', 'wrong'], envB, settings('SG.wrong-key-00000000000'));
    const bad = await cli(['settings', 'verify', '--tenant', 'wrong'], envB);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/primary sendgrid: provider_auth_failed/);
  });

  it('sends and replays an event with `events send`, and prints stats', async () => {
    const w = await startTestWorker(db, captureLogs().logger, { DB_ENCRYPTION_KEY: KEY_B });
    try {
      const args = ['events', 'send', '--url', w.url, '--tenant', 'r2', '--notify-email', 'me@r2.example', '--id', 'replay-1'];
      const sent = await cli(args, {});
      expect([sent.code, sent.stdout]).toEqual([0, '202 ce-id=replay-1\n']);
      expect((await cli(args, {})).stdout).toBe('202 ce-id=replay-1\n');
      expect(mailbox.emails.filter((e) => e.body.custom_args?.event_id === 'replay-1')).toHaveLength(1);
      const file = JSON.stringify({ specversion: '1.0', id: 'file-1', source: '/x', type: 'codetether.task.created', tenant: 'nobody', data: { task_id: 't', notify_email: 'a@b.example' } });
      const rejected = await cli(['events', 'send', '--url', w.url, '--file', '-'], {}, file);
      expect(rejected.code).toBe(1);
      expect(rejected.stdout).toMatch(/^422 ce-id=file-1 .*unknown_tenant/);
      const stats = await cli(['stats', '--tenant', 'r2', '--days', '7'], { DATABASE_URL: db.workerUrl });
      expect(JSON.parse(stats.stdout)).toMatchObject({ tenant_id: 'r2', totals: { sent: 1, duplicates: 1 } });
    } finally {
      await w.shutdown();
    }
  });
});
