import type { Sql } from '../../src/db/connect';
import { withTenant } from '../../src/db/settings';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

/**
 * The ledger's row rules (sql/013 folds them into one CHECK calling email_delivery_row_ok, for
 * the CPU each write costs). Each rule is tried on its own, as the worker role under RLS: a row
 * that breaks it is refused (23514) and nothing is written; the row beside it that keeps it is taken.
 */
const BASE = {
  status: 'sent', claim_token: null, settings_source: 'tenant', template_source: 'builtin', sender_tier: 'custom',
  quota_slot: 3, delivery_status: null, bounce_type: null, delivery_raw_type: null, delivery_reason: null,
} as Record<string, unknown>;

const BROKEN: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
  ['an unknown status', { status: 'lost' }, { status: 'suppressed' }],
  ['a claim without its token', { status: 'claimed' }, { status: 'claimed', claim_token: '00000000-0000-4000-8000-000000000001' }],
  ['a token on a row that is not a claim', { claim_token: '00000000-0000-4000-8000-000000000002' }, {}],
  ['an unknown settings source', { settings_source: 'elsewhere' }, { settings_source: 'global' }],
  ['an unknown template source', { template_source: 'mine' }, { template_source: 'builtin_fallback' }],
  ['an unknown sender tier', { sender_tier: 'gold' }, { sender_tier: 'platform' }],
  ['a quota slot past 7', { quota_slot: 8 }, { quota_slot: 7 }],
  ['a negative quota slot', { quota_slot: -1 }, { quota_slot: 0 }],
  ['an unknown delivery status', { delivery_status: 'read' }, { delivery_status: 'complained' }],
  ['an unknown bounce type', { delivery_status: 'bounced', bounce_type: 'medium' }, { delivery_status: 'bounced', bounce_type: 'soft' }],
  ['a bounce without its type', { delivery_status: 'bounced' }, { delivery_status: 'bounced', bounce_type: 'hard' }],
  ['a bounce type on a delivery that did not bounce', { delivery_status: 'delivered', bounce_type: 'hard' }, { delivery_status: 'delivered' }],
  ['a raw type over 100 characters', { delivery_status: 'dropped', delivery_raw_type: 'x'.repeat(101) }, { delivery_status: 'dropped', delivery_raw_type: 'x'.repeat(100) }],
  ['a reason over 500 characters', { delivery_status: 'deferred', delivery_reason: 'r'.repeat(501) }, { delivery_status: 'deferred', delivery_reason: 'r'.repeat(500) }],
];

describe('ledger row rules (one CHECK, every rule)', () => {
  let db: TestDatabase;
  let sql: Sql;
  beforeAll(async () => {
    db = await createTestDatabase();
    sql = db.worker(2);
  });
  afterAll(() => db.drop());

  const insert = (eventId: string, row: Record<string, unknown>) =>
    withTenant(sql, 'rules-t', (tx) => tx`
      INSERT INTO email_deliveries (tenant_id, event_source, event_id, event_type, status, claim_token, lease_expires_at, settings_source,
        template_source, sender_tier, quota_slot, delivery_status, bounce_type, delivery_raw_type, delivery_reason)
      VALUES ('rules-t', 's', ${eventId}, 'codetether.task.created', ${row.status as string}, ${row.claim_token as string | null}::uuid,
        ${row.claim_token ? new Date(Date.now() + 60_000) : null}, ${row.settings_source as string}, ${row.template_source as string},
        ${row.sender_tier as string}, ${row.quota_slot as number}, ${row.delivery_status as string | null}, ${row.bounce_type as string | null},
        ${row.delivery_raw_type as string | null}, ${row.delivery_reason as string | null})`);

  it.each(BROKEN)('refuses %s, and takes the row that keeps the rule', async (name, broken, kept) => {
    const id = name.replace(/\W+/g, '-');
    await expect(insert(`${id}-broken`, { ...BASE, ...broken })).rejects.toMatchObject({ code: '23514' });
    await insert(`${id}-kept`, { ...BASE, ...kept });
    const rows = await db.admin()`SELECT event_id FROM email_deliveries WHERE tenant_id = 'rules-t' AND event_id LIKE ${`${id}-%`} ORDER BY 1`;
    expect(rows.map((r) => r.event_id)).toEqual([`${id}-kept`]);
  });

  it('applies the rules to updates too', async () => {
    await insert('upd', BASE);
    await expect(withTenant(sql, 'rules-t', (tx) => tx`UPDATE email_deliveries SET status = 'claimed' WHERE tenant_id = 'rules-t' AND event_id = 'upd'`)).rejects.toMatchObject({ code: '23514' });
    const [r] = await db.admin()`SELECT status FROM email_deliveries WHERE tenant_id = 'rules-t' AND event_id = 'upd'`;
    expect(r!.status).toBe('sent');
  });
});
