import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { findPgbouncer } from '../dev/pgbouncer';

const BENCH = path.join(__dirname, '..', 'dist-tools', 'bench', 'run.js');

/**
 * `npm run bench` at a small size, so it keeps working as the code changes. No timing is
 * asserted (that is what the bench prints, not what a test can rely on on a shared machine);
 * what is asserted is what must hold at any speed: every figure is reported, nothing was lost or
 * doubled, the quota was not overshot, and the hot path stayed at two round trips.
 */
describe('npm run bench (small)', () => {
  it('prints every figure with its config; no email lost or doubled, no quota overshoot, 2 round trips', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BENCH, '--events', '300', '--tenants', '5', '--cold-starts', '1', '--half-rate-seconds', '1', '--quota-limit', '20', '--tail-profile'],
      { timeout: 540_000, maxBuffer: 10 * 1024 * 1024 }, // a hang guard: a starved run took 191 s
    );
    expect(stdout).toMatch(/^machine: .*Node v\d+.*PostgreSQL \d+.*\(embedded, fsync on, tables analyzed after each warm-up\)$/m);
    expect(stdout).toMatch(/^disk: 8 KiB write \+ fdatasync in PostgreSQL's data directory .*: p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms$/m);
    expect(stdout).toMatch(/^config: events=300 concurrency=32 tenants=5 pool-max=4/m);
    for (const run of ['worker, 5 tenants, concurrency 32', 'open loop at', '1 hot tenant', 'quota check', 'ceiling: bare express 202', 'ceiling: per-event SQL direct', 'floor: bare express 202, open loop at']) {
      expect(stdout).toContain(run);
    }
    expect(stdout).toMatch(/\| emails received = 202 answers, no duplicates \(every run\) \| met \|/);
    expect(stdout).toMatch(/\| no quota overshoot \| met \| 20 sent, 60 refused, ledger 20, limit 20 \|/);
    expect(stdout).toMatch(/\| ≤ 2 database round trips per event \| met \| 2\.00 \|/);
    expect(stdout).toMatch(/^cold start \(exec → \/readyz 200\): worker [\d,]+ ms \[[\d,]+\] → [\d.]+×; .*bare express [\d,]+ ms/m);
    // The cold worker's first event was answered 202 (the bench throws otherwise) and timed.
    expect(stdout).toMatch(/^first event after a cold start \(exec → its 202, sent once \/readyz is 200\): worker [\d,]+ ms \[[\d,]+\] → [\d.]+×; .*bare express [\d,]+ ms/m);
    // The compile cache is measured where this node has one, and said to be absent where not.
    expect(stdout).toMatch(/^(compile cache: loaded \d+ entry modules|no compile cache: node v\d+[^ ]* did not enable)/m);
    expect(stdout).toMatch(/^worker node flags: --heap-growing-percent=50 /m);
    expect(stdout).toMatch(/^CPU per event, main run: worker [\d.]+ ms, PostgreSQL [\d.]+ ms \(its worker-role sessions [\d.]+ ms; [^)]*\), fake SendGrid [\d.]+ ms, load generator [\d.]+ ms; [\d.]+ ms in all → \d+ cores carry at most [\d,]+ events\/s/m);
    expect(stdout).toMatch(/^p99 against load \(open loops\): [\d.]+ ms at \d+\/s, machine busy \d+%, chain CPU [\d.]+ ms per event; [\d.]+ ms at \d+\/s, machine busy \d+%, chain CPU [\d.]+ ms per event; the harness alone [\d.]+ ms at \d+\/s$/m);
    expect(stdout).toMatch(/\| worker, 5 tenants, open loop at \d+\/s \|[^\n]*\n\| worker, 5 tenants, open loop at \d+\/s \|/);
    // --tail-profile: the worker's probe saw every event of each open loop, and its round trips.
    const loops = [...stdout.matchAll(/^\| worker, 5 tenants, open loop at (\d+)\/s \| (\d+) \|/gm)].map((m) => [m[1], m[2]]);
    expect(loops).toHaveLength(2);
    for (const [rate, count] of loops) {
      const line = stdout.match(
        new RegExp(
          `^tail profile at ${rate}/s \\(the worker's own clock, from a POST's arrival to its answer\\): ${count} events, p50 [\\d.]+ ms, p99 [\\d.]+ ms, max [\\d.]+ ms; ` +
            `the slowest \\d+ overlapped .* of their time, database round trips covered \\d+%, .*; database round trips p50 [\\d.]+, p99 [\\d.]+, max [\\d.]+ ms \\((\\d+)\\); provider calls .* \\(${count}\\); `,
          'm',
        ),
      );
      expect(line).not.toBeNull();
      // Two statements per event, but statements pipelined on one connection are one round trip,
      // and how many are depends on the machine's stalls: only that the probe saw the database.
      expect(Number(line![1])).toBeGreaterThan(0);
    }
    expect(stdout).toMatch(/peak RSS ≤ 150 MB \| (met|\*\*missed\*\*) \| \d+\.\d MB/);
    // Issue 23's figures are printed on every run, met or not.
    expect(stdout).toMatch(/\| PostgreSQL CPU ≤ 0\.6 ms per event \(main run\) \| (met|\*\*missed\*\*) \| [\d.]+ ms \(its worker-role sessions [\d.]+ ms\) \|/);
    expect(stdout).toMatch(/\| worker CPU ≤ 1\.2 ms per event \(main run\) \| (met|\*\*missed\*\*) \| [\d.]+ ms \|/);
    expect(stdout).toMatch(/\| first event after a cold start ≤ 2× bare express \| (met|\*\*missed\*\*) \| [\d,]+ ms vs [\d,]+ ms → [\d.]+× \((with the compile cache|no compile cache on this node)\) \|/);
  }, 600_000);

  it('soak mode prints one row per window and its verdicts, with nothing lost or doubled', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BENCH, '--soak-seconds', '3', '--soak-window-seconds', '1', '--events', '300', '--tenants', '5'],
      { timeout: 540_000, maxBuffer: 10 * 1024 * 1024 }, // a hang guard: a starved run took 191 s
    );
    expect(stdout).toMatch(/^config: soak-seconds=3 soak-window-seconds=1 tenants=5/m);
    expect(stdout).toMatch(/^peak \(closed loop, 300 events\): [\d,]+\/s → soak at \d+\/s/m);
    expect(stdout.match(/^\| \d+ \| \d+ \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \| [\d.]+ \|$/gm)).toHaveLength(3);
    expect(stdout).toMatch(/\| RSS flat .* \| (met|\*\*missed\*\*) \| [\d.]+ → [\d.]+ MB/);
    expect(stdout).toMatch(/\| error rate flat \(no error answers in any window\) \| met \| 0 error answers of \d+ \|/);
    expect(stdout).toMatch(/\| every 202 is one email, none doubled \| met \| \d+ emails, 0 duplicates \|/);
  }, 600_000);

  (findPgbouncer() || process.env.CI ? it : it.skip)('scale-out mode prints one row per process count, through PgBouncer, nothing lost or doubled', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BENCH, '--scale-out', '1,2', '--server-pool', '3', '--events', '200', '--tenants', '5'],
      { timeout: 540_000, maxBuffer: 10 * 1024 * 1024 },
    );
    expect(stdout).toMatch(/^config: scale-out=1,2 events=200 .* PgBouncer 3 server connections \(transaction mode\)/m);
    const rows = stdout.match(/^\| [12] \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+% \| \d+ of 3 \| .* \| (\d+) \/ (\d+) \/ 0 \|$/gm);
    expect(rows).toHaveLength(2);
    expect(stdout).toContain('every 202 one email, none doubled, PostgreSQL within the server pool: yes');
  }, 600_000);

  it('--cold-only on the image\'s Node.js 22: the worker with the compile cache the image ships, beside the worker without it and bare express', async () => {
    const node22 = process.env.TEW_NODE22;
    if (!node22) throw new Error('no TEW_NODE22: run the suite with `npm test` (its global setup runs scripts/test-tools.js)');
    const { stdout } = await promisify(execFile)(process.execPath, [BENCH, '--cold-only', '--cold-starts', '1', '--node', node22], { timeout: 240_000, maxBuffer: 1024 * 1024 });
    expect(stdout).toMatch(/^machine: .*Node v22\.\d+\.\d+ for the worker and bare express/m);
    expect(stdout).toMatch(/^compile cache: loaded \d+ entry modules \(\d+ app files\) with node v22\.\d+\.\d+ into /m);
    for (const what of ['cold start \\(exec → \\/readyz 200\\)', 'first event after a cold start \\(exec → its 202, sent once \\/readyz is 200\\)']) {
      expect(stdout).toMatch(new RegExp(`^${what}: worker [\\d,]+ ms \\[[\\d,]+\\] → [\\d.]+×; with the compile cache [\\d,]+ ms \\[[\\d,]+\\] → [\\d.]+×; bare express [\\d,]+ ms`, 'm'));
    }
  }, 300_000);
});
