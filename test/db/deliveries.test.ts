import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { createDeliveryStore, type ClaimRequest, type DeliveryStore } from '../../src/db/deliveries';
import { mapDatabaseError } from '../../src/db/errors';
import { putSettings } from '../../src/db/settings';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

const key = (s: string) => ({ id: keyId(s), secret: s });
const KEY_A = key('a'.repeat(44));
const KEY_B = key('b'.repeat(44));
const noContent = { templateSource: null, templateVersion: null, senderTier: null, senderNote: null };

const base = (tenantId: string, eventId: string): ClaimRequest => ({
  tenantId, eventSource: '/src', eventId, eventType: 'codetether.task.created', taskId: 'task-1', hasRecipient: true,
});

async function usage(owner: Sql, tenant: string): Promise<number> {
  const [r] = await owner`SELECT COALESCE(sum(sent_count), 0)::int AS n FROM tenant_email_usage WHERE tenant_id = ${tenant}`;
  return r!.n;
}

describe('claim, quota and outcome (email_claim_event / email_record_outcome)', () => {
  let db: TestDatabase;
  let sql: Sql;
  let owner: Sql;
  let store: DeliveryStore;

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = db.worker(20);
    // FORCE RLS binds the owner too; cross-tenant assertions read through a superuser pool.
    owner = db.admin();
    store = createDeliveryStore(sql, { keys: { current: KEY_A }, leaseSeconds: 60, globalDailyLimit: null });
    const s = { provider: 'sendgrid' as const, api_key: 'SG.key-for-tenant-q-0000', from_email: 'q@q.example', provider_settings: {}, enabled: true };
    await putSettings(sql, { current: KEY_A }, 'quota-t', { ...s, daily_limit: 20 });
    await putSettings(sql, { current: KEY_A }, 'dup-t', { ...s, daily_limit: 100 });
    await putSettings(sql, { current: KEY_A }, 'flow-t', { ...s, daily_limit: 2 });
    await putSettings(sql, { current: KEY_A }, 'off-t', { ...s, daily_limit: 5, enabled: false });
    await putSettings(sql, { current: KEY_A }, 'slots-t', { ...s, daily_limit: 37 });
    await putSettings(sql, { current: KEY_A }, 'spread-t', { ...s, daily_limit: 100_000 });
  });

  const slotCounts = async (tenant: string) =>
    (await owner`SELECT slot, sent_count FROM tenant_email_usage WHERE tenant_id = ${tenant} ORDER BY slot`).map((r) => r.sent_count as number);

  describe('quota slots (sql/005): the limit split over 8 rows, never exceeded', () => {
    it('grants exactly 37 of 300 concurrent claims, filling each slot to its cap', async () => {
      const results = await Promise.all(Array.from({ length: 300 }, (_, i) => store.claim(base('slots-t', `s-${i}`))));
      expect(results.filter((r) => r.outcome === 'claimed')).toHaveLength(37);
      expect(results.filter((r) => r.outcome === 'quota_exceeded')).toHaveLength(263);
      // cap(i) = 37 / 8 + (i < 37 % 8): five slots of 5, three of 4.
      expect(await slotCounts('slots-t')).toEqual([5, 5, 5, 5, 5, 4, 4, 4]);
    });

    it('follows a limit changed mid-day: lowered, nothing more; raised, exactly the difference', async () => {
      await owner`UPDATE tenant_email_settings SET daily_limit = 20 WHERE tenant_id = 'slots-t'`;
      const lowered = await Promise.all(Array.from({ length: 20 }, (_, i) => store.claim(base('slots-t', `low-${i}`))));
      expect(lowered.filter((r) => r.outcome === 'claimed')).toHaveLength(0);
      await owner`UPDATE tenant_email_settings SET daily_limit = 50 WHERE tenant_id = 'slots-t'`;
      const raised = await Promise.all(Array.from({ length: 100 }, (_, i) => store.claim(base('slots-t', `high-${i}`))));
      expect(raised.filter((r) => r.outcome === 'claimed')).toHaveLength(13);
      expect(await usage(owner, 'slots-t')).toBe(50);
    });

    it("gives a failed send's unit back to the slot it was taken from", async () => {
      await owner`UPDATE tenant_email_settings SET daily_limit = 51 WHERE tenant_id = 'slots-t'`;
      const r = await store.claim(base('slots-t', 'give-back'));
      if (r.outcome !== 'claimed') throw new Error(r.outcome);
      const [row] = await owner`SELECT quota_slot FROM email_deliveries WHERE tenant_id = 'slots-t' AND event_id = 'give-back'`;
      const slot = row!.quota_slot as number;
      const before = await slotCounts('slots-t');
      await store.recordOutcome({ ...base('slots-t', 'give-back'), claimToken: r.claimToken, status: 'failed', provider: 'sendgrid', messageId: null, errorCode: 'provider_unavailable', ...noContent });
      const after = await slotCounts('slots-t');
      expect(before[slot]! - after[slot]!).toBe(1);
      expect(after.reduce((a, b) => a + b, 0)).toBe(50);
    });

    it("spreads one tenant's concurrent claims over the slots (no single-row convoy)", async () => {
      await Promise.all(Array.from({ length: 200 }, (_, i) => store.claim(base('spread-t', `sp-${i}`))));
      const counts = await slotCounts('spread-t');
      expect(counts.reduce((a, b) => a + b, 0)).toBe(200);
      expect(counts.filter((n) => n > 0).length).toBeGreaterThanOrEqual(6);
    });
  });
  afterAll(() => db.drop());

  it('returns the decrypted settings on a claim', async () => {
    const r = await store.claim(base('dup-t', 'decrypt-1'));
    expect(r.outcome).toBe('claimed');
    if (r.outcome !== 'claimed') return;
    expect(r.settings?.primary).toEqual({ provider: 'sendgrid', apiKey: 'SG.key-for-tenant-q-0000', settings: {} });
    expect(r.settings?.fromEmail).toBe('q@q.example');
  });

  it('grants exactly daily_limit claims to 50 concurrent distinct events', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.claim(base('quota-t', `q-${i}`))));
    const outcomes = results.map((r) => r.outcome);
    expect(outcomes.filter((o) => o === 'claimed')).toHaveLength(20);
    expect(outcomes.filter((o) => o === 'quota_exceeded')).toHaveLength(30);
    expect(await usage(owner, 'quota-t')).toBe(20);
  });

  it('lets one of 20 concurrent deliveries of the same event claim it; the rest see it in flight', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => store.claim(base('dup-t', 'same-event'))));
    const outcomes = results.map((r) => r.outcome).sort();
    expect(outcomes.filter((o) => o === 'claimed')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'in_flight')).toHaveLength(19);
  });

  it('answers duplicate after the send is recorded, without spending quota', async () => {
    const r = await store.claim(base('flow-t', 'e-dup'));
    if (r.outcome !== 'claimed') throw new Error(r.outcome);
    const before = await usage(owner, 'flow-t');
    expect(await store.recordOutcome({ ...base('flow-t', 'e-dup'), claimToken: r.claimToken, status: 'sent', provider: 'sendgrid', messageId: 'm1', errorCode: null, ...noContent })).toBe(true);
    expect((await store.claim(base('flow-t', 'e-dup'))).outcome).toBe('duplicate');
    expect((await store.claim(base('flow-t', 'e-dup'))).outcome).toBe('duplicate');
    expect(await usage(owner, 'flow-t')).toBe(before);
    const [row] = await owner`SELECT status, duplicates, attempts FROM email_deliveries WHERE tenant_id = 'flow-t' AND event_id = 'e-dup'`;
    expect(row).toEqual({ status: 'sent', duplicates: 2, attempts: 1 });
  });

  it('gives the quota unit back when the send fails, and lets a redelivery claim again', async () => {
    const before = await usage(owner, 'flow-t');
    const r = await store.claim(base('flow-t', 'e-fail'));
    if (r.outcome !== 'claimed') throw new Error(r.outcome);
    expect(await usage(owner, 'flow-t')).toBe(before + 1);
    await store.recordOutcome({ ...base('flow-t', 'e-fail'), claimToken: r.claimToken, status: 'failed', provider: 'sendgrid', messageId: null, errorCode: 'provider_unavailable', ...noContent });
    expect(await usage(owner, 'flow-t')).toBe(before);
    const again = await store.claim(base('flow-t', 'e-fail'));
    expect(again.outcome).toBe('claimed');
    const [row] = await owner`SELECT status, attempts, error_code FROM email_deliveries WHERE tenant_id = 'flow-t' AND event_id = 'e-fail'`;
    expect(row).toEqual({ status: 'claimed', attempts: 2, error_code: null });
  });

  it('lets a redelivery take over an expired claim without spending a second unit, and fences the old holder', async () => {
    const first = await store.claim(base('dup-t', 'e-lease'));
    if (first.outcome !== 'claimed') throw new Error(first.outcome);
    const before = await usage(owner, 'dup-t');
    expect((await store.claim(base('dup-t', 'e-lease'))).outcome).toBe('in_flight');
    await owner`UPDATE email_deliveries SET lease_expires_at = now() - interval '1 second' WHERE tenant_id = 'dup-t' AND event_id = 'e-lease'`;
    const second = await store.claim(base('dup-t', 'e-lease'));
    if (second.outcome !== 'claimed') throw new Error(second.outcome);
    expect(await usage(owner, 'dup-t')).toBe(before);
    // The crashed first holder comes back late: its write is refused.
    expect(await store.recordOutcome({ ...base('dup-t', 'e-lease'), claimToken: first.claimToken, status: 'sent', provider: 'sendgrid', messageId: 'late', errorCode: null, ...noContent })).toBe(false);
    expect(await store.recordOutcome({ ...base('dup-t', 'e-lease'), claimToken: second.claimToken, status: 'sent', provider: 'sendgrid', messageId: 'ok', errorCode: null, ...noContent })).toBe(true);
    const [row] = await owner`SELECT status, message_id FROM email_deliveries WHERE tenant_id = 'dup-t' AND event_id = 'e-lease'`;
    expect(row).toEqual({ status: 'sent', message_id: 'ok' });
  });

  it('records a quota rejection that can be replayed once the limit allows', async () => {
    // Two units used today, spread over the slots the way sql/005 spreads an existing count.
    await owner`
      INSERT INTO tenant_email_usage (tenant_id, day, slot, sent_count)
        SELECT 'flow-t', (now() AT TIME ZONE 'UTC')::date, g, 2 / 8 + CASE WHEN g < 2 % 8 THEN 1 ELSE 0 END FROM generate_series(0, 7) g
      ON CONFLICT (tenant_id, day, slot) DO UPDATE SET sent_count = EXCLUDED.sent_count`;
    expect((await store.claim(base('flow-t', 'e-quota'))).outcome).toBe('quota_exceeded');
    const [row] = await owner`SELECT status, quota_day FROM email_deliveries WHERE tenant_id = 'flow-t' AND event_id = 'e-quota'`;
    expect(row).toEqual({ status: 'quota_exceeded', quota_day: null });
    await owner`UPDATE tenant_email_settings SET daily_limit = 3 WHERE tenant_id = 'flow-t'`;
    expect((await store.claim(base('flow-t', 'e-quota'))).outcome).toBe('claimed');
  });

  it('skips a disabled tenant and an event without a recipient, and records why', async () => {
    expect((await store.claim(base('off-t', 'e-off'))).outcome).toBe('skipped_disabled');
    expect((await store.claim({ ...base('dup-t', 'e-norcpt'), hasRecipient: false })).outcome).toBe('skipped_no_recipient');
    expect((await store.claim(base('off-t', 'e-off'))).outcome).toBe('duplicate');
    const rows = await owner`SELECT tenant_id, status, error_code FROM email_deliveries WHERE event_id IN ('e-off', 'e-norcpt') ORDER BY tenant_id`;
    expect(rows).toEqual([
      { tenant_id: 'dup-t', status: 'skipped', error_code: 'no_recipient' },
      { tenant_id: 'off-t', status: 'skipped', error_code: 'tenant_disabled' },
    ]);
    expect(await usage(owner, 'off-t')).toBe(0);
  });

  it('falls back to the global configuration only when one is set, with its own daily limit', async () => {
    expect((await store.claim(base('no-settings-t', 'g-1'))).outcome).toBe('unknown_tenant');
    const withGlobal = createDeliveryStore(sql, { keys: { current: KEY_A }, leaseSeconds: 60, globalDailyLimit: 1 });
    const first = await withGlobal.claim(base('no-settings-t', 'g-1'));
    expect(first).toMatchObject({ outcome: 'claimed', settings: null, dailyLimit: 1 });
    expect((await withGlobal.claim(base('no-settings-t', 'g-2'))).outcome).toBe('quota_exceeded');
  });

  it('decrypts rows under the previous key during rotation and refuses an unknown key id', async () => {
    await putSettings(sql, { current: KEY_B }, 'rot-t', { provider: 'sendgrid', api_key: 'SG.rotation-key-000000', from_email: 'r@r.example', provider_settings: {}, enabled: true, daily_limit: 10 });
    const rotating = createDeliveryStore(sql, { keys: { current: KEY_A, previous: KEY_B }, leaseSeconds: 60, globalDailyLimit: null });
    const r = await rotating.claim(base('rot-t', 'rot-1'));
    expect(r.outcome === 'claimed' && r.settings?.primary.apiKey).toBe('SG.rotation-key-000000');
    const err = await store.claim(base('rot-t', 'rot-2')).catch((e: unknown) => e);
    expect(mapDatabaseError(err).code).toBe('settings_undecryptable');
    // The failed claim rolled back: nothing half-written.
    const rows = await owner`SELECT 1 FROM email_deliveries WHERE tenant_id = 'rot-t' AND event_id = 'rot-2'`;
    expect(rows).toHaveLength(0);
  });
});
