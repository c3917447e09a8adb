import { cli } from './helpers/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';

describe('tenant-email suppressions and reputation', () => {
  let db: TestDatabase;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    env = { DATABASE_URL: db.workerUrl };
  });
  afterAll(async () => {
    await db.drop();
  });

  it('adds, gets, lists by reason with a cursor and removes with who and why; another tenant sees none of it', async () => {
    for (const a of ['b@cli.example', 'A@cli.example']) {
      const r = await cli(['suppressions', 'add', '--tenant', 'acme', '--address', a, '--note', 'asked by phone', '--by', 'ops@test'], env);
      expect(r.code).toBe(0);
    }
    expect((await cli(['suppressions', 'add', '--tenant', 'acme', '--address', 'a@cli.example'], env)).stderr).toContain('was already suppressed (manual)');
    expect(JSON.parse((await cli(['suppressions', 'get', '--tenant', 'acme', '--address', 'a@cli.example'], env)).stdout)).toMatchObject({ address: 'a@cli.example', reason: 'manual', created_by: 'ops@test' });
    const page = JSON.parse((await cli(['suppressions', 'list', '--tenant', 'acme', '--reason', 'manual', '--limit', '1'], env)).stdout);
    expect(page).toEqual({ items: [expect.objectContaining({ address: 'a@cli.example' })], next_cursor: 'a@cli.example' });
    const next = JSON.parse((await cli(['suppressions', 'list', '--tenant', 'acme', '--limit', '1', '--cursor', page.next_cursor], env)).stdout);
    expect(next.items.map((i: { address: string }) => i.address)).toEqual(['b@cli.example']);
    expect((await cli(['suppressions', 'get', '--tenant', 'globex', '--address', 'a@cli.example'], env)).code).toBe(1);

    // Removing needs a reason; the log keeps who and why.
    expect((await cli(['suppressions', 'remove', '--tenant', 'acme', '--address', 'a@cli.example'], env)).code).not.toBe(0);
    const removed = await cli(['suppressions', 'remove', '--tenant', 'acme', '--address', 'a@cli.example', '--note', 'mailbox fixed', '--by', 'ops@test'], env);
    expect([removed.code, removed.stderr.trim()]).toEqual([0, 'removed a@cli.example from the suppression list of tenant acme']);
    expect(await db.admin()`SELECT action, actor, note FROM email_suppression_log WHERE address = 'a@cli.example' ORDER BY id`).toEqual([
      { action: 'added', actor: 'ops@test', note: 'asked by phone' },
      { action: 'removed', actor: 'ops@test', note: 'mailbox fixed' },
    ]);
    expect((await cli(['suppressions', 'add', '--tenant', 'acme', '--address', 'not-an-address'], env)).stderr).toContain('--address must be an email address');
  });

  it('shows and lifts a pause', async () => {
    await db.admin()`INSERT INTO tenant_email_reputation (tenant_id, paused_at, paused_reason, paused_detail) VALUES ('acme', now(), 'complaint_rate', '{"sent": 1000, "complaints": 4}')`;
    expect(JSON.parse((await cli(['reputation', 'show', '--tenant', 'acme'], env)).stdout)).toMatchObject({ paused: true, paused_reason: 'complaint_rate', complaint_threshold: 0.003 });
    const r = await cli(['reputation', 'resume', '--tenant', 'acme', '--by', 'ops@test'], env);
    expect([r.code, r.stderr.trim()]).toEqual([0, 'resumed tenant acme']);
    expect(JSON.parse(r.stdout)).toMatchObject({ paused: false, resumed_by: 'ops@test' });
    expect((await cli(['reputation', 'resume', '--tenant', 'acme'], env)).stderr.trim()).toBe('tenant acme was not paused');
  });
});
