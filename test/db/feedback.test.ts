import type { Sql } from '../../src/db/connect';
import { applyFeedback, type FeedbackEventRow, type FeedbackPolicy } from '../../src/db/feedback';
import { outboxDone, takeOutbox } from '../../src/db/outbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

const POLICY: FeedbackPolicy = { softBounceLimit: 2, complaintThreshold: 0.003, bounceThreshold: 0.05, minVolume: 1000, windowDays: 7 };
const ev = (id: string, messageId: string, status: string, extra: Partial<FeedbackEventRow> = {}): FeedbackEventRow => ({
  id, message_id: messageId, recipient: `${messageId}@fb.example`, status, bounce_type: status === 'bounced' ? 'hard' : null, raw_type: status, reason: null, at: null, ...extra,
});

describe('email_apply_feedback and the outbox (real PostgreSQL, worker role, RLS)', () => {
  let db: TestDatabase;
  let sql: Sql;
  let su: Sql;

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = db.worker(8);
    su = db.admin();
    await su`INSERT INTO email_deliveries (tenant_id, event_source, event_id, event_type, status, provider, message_id, quota_day)
             SELECT t, '/s', 'e' || g, 'codetether.task.created', 'sent', 'sendgrid', 'm' || g, current_date
             FROM unnest(ARRAY['fb-a', 'fb-b']) t, generate_series(1, 20) g`;
  });
  afterAll(async () => {
    await db.drop();
  });

  it("finds deliveries only within the URL's tenant: another tenant's message ids are unmatched", async () => {
    const r = await applyFeedback(sql, 'fb-b', 'sendgrid', [ev('x1', 'm1', 'delivered'), ev('x2', 'nope', 'delivered')], POLICY);
    expect(r).toMatchObject({ received: 2, applied: 1, unmatched: 1 });
    const rows = await su`SELECT tenant_id, delivery_status FROM email_deliveries WHERE message_id = 'm1' ORDER BY tenant_id`;
    expect(rows).toEqual([{ tenant_id: 'fb-a', delivery_status: null }, { tenant_id: 'fb-b', delivery_status: 'delivered' }]);
  });

  it('counts one status change once when two requests bring it concurrently, and suppresses soft bounces only at the limit', async () => {
    // The same bounce in 10 concurrent requests under different event ids (SES notifications and event publishing both on).
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => applyFeedback(sql, 'fb-a', 'sendgrid', [ev(`c${i}`, 'm2', 'bounced')], POLICY)));
    expect(results.reduce((n, r) => n + r.applied, 0)).toBe(1);
    const [daily] = await su`SELECT sum(bounced_hard)::int AS n FROM email_feedback_daily WHERE tenant_id = 'fb-a'`;
    expect(daily!.n).toBe(1);

    await applyFeedback(sql, 'fb-a', 'sendgrid', [ev('s1', 'm3', 'bounced', { bounce_type: 'soft', recipient: 'soft@fb.example' })], POLICY);
    expect(await su`SELECT 1 FROM email_suppressions WHERE tenant_id = 'fb-a' AND address = 'soft@fb.example'`).toHaveLength(0);
    await applyFeedback(sql, 'fb-a', 'sendgrid', [ev('s2', 'm4', 'bounced', { bounce_type: 'soft', recipient: 'Soft@FB.example' })], POLICY);
    expect(await su`SELECT reason FROM email_suppressions WHERE tenant_id = 'fb-a' AND address = 'soft@fb.example'`).toEqual([{ reason: 'soft_bounce' }]);
  });

  it('writes the outbox only when asked, and only its definer functions reach it', async () => {
    await applyFeedback(sql, 'fb-a', 'sendgrid', [ev('o1', 'm5', 'delivered')], POLICY, false);
    expect((await su`SELECT count(*)::int AS n FROM email_outbox`)[0]!.n).toBe(0);
    await applyFeedback(sql, 'fb-a', 'sendgrid', [ev('o2', 'm6', 'delivered'), ev('o3', 'm6', 'deferred')], POLICY, true);
    const taken = await takeOutbox(sql, 10);
    expect(taken.map((t) => [t.tenantId, t.ceType, t.data.event_id])).toEqual([['fb-a', 'codetether.email.delivered', 'e6']]);
    // Taken rows are not due again until their backoff ends.
    expect(await takeOutbox(sql, 10)).toEqual([]);
    await outboxDone(sql, taken.map((t) => t.id));
    expect((await su`SELECT count(*)::int AS n FROM email_outbox`)[0]!.n).toBe(0);

    await expect(sql`SELECT * FROM email_outbox`).rejects.toThrow(/permission denied/);
    // email_outbox_add writes only for the transaction's own tenant context.
    await expect(sql.begin(async (tx) => {
      await tx`SELECT set_config('app.current_tenant_id', 'fb-a', true)`;
      await tx`SELECT email_outbox_add('fb-b', '[{"ce_id": "x", "ce_type": "codetether.email.delivered", "data": {}}]'::jsonb)`;
    })).rejects.toThrow(/not the transaction's tenant context/);
  });
});
