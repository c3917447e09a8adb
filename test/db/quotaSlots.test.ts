import type { Sql } from '../../src/db/connect';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

/**
 * The two rules the quota's eight slots are made of (sql/functions.sql), each written once and
 * called by the claim's fast path and email_quota_take: a slot's share of the daily limit, and
 * the slot an event tries first. As the worker role, which the grants allow and nobody else.
 */
describe('quota slots: a slot\'s share of the limit, and the first slot an event tries', () => {
  let db: TestDatabase;
  let sql: Sql;
  beforeAll(async () => {
    db = await createTestDatabase();
    sql = db.worker(1);
  });
  afterAll(() => db.drop());

  it('splits every limit from 0 to 1,000 into eight shares that add up to it exactly, none more than one apart', async () => {
    const rows = await sql<{ lim: number; total: number; lo: number; hi: number }[]>`
      SELECT l.lim, sum(c.cap)::int AS total, min(c.cap) AS lo, max(c.cap) AS hi
        FROM generate_series(0, 1000) AS l(lim)
        CROSS JOIN LATERAL (SELECT email_quota_slot_cap(l.lim, s.slot::smallint) AS cap FROM generate_series(0, 7) AS s(slot)) c
        GROUP BY l.lim ORDER BY l.lim`;
    expect(rows).toHaveLength(1001);
    for (const r of rows) expect({ lim: r.lim, total: r.total, spread: r.hi - r.lo }).toEqual({ lim: r.lim, total: r.lim, spread: r.lim % 8 === 0 ? 0 : 1 });
    // The first (limit mod 8) slots carry the extra unit: a limit of 3 is 1,1,1,0,0,0,0,0.
    const three = await sql<{ cap: number }[]>`SELECT email_quota_slot_cap(3, s::smallint) AS cap FROM generate_series(0, 7) s ORDER BY s`;
    expect(three.map((r) => r.cap)).toEqual([1, 1, 1, 0, 0, 0, 0, 0]);
  });

  it('starts each event at a slot from 0 to 7 that its id fixes, spread over all eight', async () => {
    const rows = await sql<{ slot: number; n: number }[]>`
      SELECT email_quota_start_slot('event-' || i) AS slot, count(*)::int AS n FROM generate_series(1, 800) i GROUP BY 1 ORDER BY 1`;
    expect(rows.map((r) => r.slot)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const r of rows) expect(r.n).toBeGreaterThan(50); // 100 each on average
    const [again] = await sql<{ a: number; b: number }[]>`SELECT email_quota_start_slot('event-7') AS a, email_quota_start_slot('event-7') AS b`;
    expect(again!.a).toBe(again!.b);
  });

  it('is inlined by the planner where the quota statements use it (no function call per slot row)', async () => {
    const plan = (await sql.unsafe(
      `EXPLAIN (VERBOSE, COSTS OFF) SELECT u.slot FROM tenant_email_usage u
        WHERE u.tenant_id = 't' AND u.day = current_date AND u.sent_count < email_quota_slot_cap(9, u.slot)
        ORDER BY (u.slot - email_quota_start_slot('e') + 8) % 8`,
    )) as unknown as Array<{ 'QUERY PLAN': string }>;
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).not.toMatch(/email_quota_slot_cap|email_quota_start_slot/);
    expect(text).toMatch(/\(9 \/ 8\)|\(9 % 8\)|CASE WHEN/);
  });

  it('is not callable by roles the grants do not name', async () => {
    const [row] = await db.admin()`SELECT has_function_privilege('public', 'email_quota_slot_cap(integer, smallint)', 'EXECUTE') AS cap,
      has_function_privilege('public', 'email_quota_start_slot(text)', 'EXECUTE') AS start`;
    expect(row).toEqual({ cap: false, start: false });
  });
});
