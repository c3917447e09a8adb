import { parseTailRecords, summarizeTail, type TailRecord } from '../../bench/tail';

/** `npm run bench -- --tail-profile`: what the report says about the slowest events comes from these sums. */
describe('the bench tail profile', () => {
  // 100 events of 5 ms, one every 10 ms from t=1000; events 40 and 70 are slow (30 and 20 ms).
  const events: TailRecord[] = Array.from({ length: 100 }, (_, i) => ({ kind: 'event', run: 'quarter', start: 1000 + i * 10, ms: i === 40 ? 30 : i === 70 ? 20 : 5 }));
  const records: TailRecord[] = [
    ...events,
    // Inside event 40 (1400–1430): a 12 ms round trip, a 6 ms stall overlapping it by 2 ms, a GC pause within the stall.
    { kind: 'db', start: 1402, ms: 12 },
    { kind: 'stall', start: 1412, ms: 6, cpuMs: 1.5 },
    { kind: 'gc', start: 1413, ms: 3 },
    // Inside event 70 (1700–1720): two round trips that overlap each other, 1701–1709 and 1705–1711.
    { kind: 'db', start: 1701, ms: 8 },
    { kind: 'db', start: 1705, ms: 6 },
    // A fast provider call in event 70, a slow one outside every slow event.
    { kind: 'provider', start: 1712, ms: 1 },
    { kind: 'provider', start: 1100, ms: 9 },
    // Another run, before this one's window: not counted, nor what happened during it.
    { kind: 'event', run: 'half', start: 500, ms: 99 },
    { kind: 'gc', start: 500, ms: 50 },
  ];

  it('takes the run\'s events and their window, the p99, and what the slowest events\' time was spent inside', () => {
    const t = summarizeTail(records, 'quarter');
    expect(t.events).toBe(100);
    expect(t.p50).toBe(5);
    expect(t.p99).toBe(30);
    expect(t.max).toBe(30);
    // Only event 40 is at or above the p99 (index 99 of 100 sorted values).
    expect(t.slowest).toBe(1);
    expect(t.overlapped).toEqual({ db: 1, stall: 1, gc: 1, provider: 0, none: 0 });
    expect(t.covered.db).toBeCloseTo(12 / 30, 6);
    expect(t.covered.stall).toBeCloseTo(6 / 30, 6);
    expect(t.covered.gc).toBeCloseTo(3 / 30, 6);
    expect(t.covered.provider).toBe(0);
    expect(t.db).toEqual({ count: 3, p50: 8, p99: 12, max: 12 });
    expect(t.gc).toEqual({ count: 1, totalMs: 3, max: 3 });
    // 1.5 ms of CPU in a 6 ms stall: the process mostly waited for a CPU.
    expect(t.stalls).toEqual({ count: 1, max: 6, cpuShare: 0.25 });
  });

  it('counts overlapping round trips once in the time they cover', () => {
    // Event 70 alone: the window is its span.
    const t = summarizeTail(records.filter((r) => r.kind !== 'event' || r.start === 1700), 'quarter');
    expect(t.slowest).toBe(1);
    // 1701–1711 is 10 ms of the event's 20, not 8 + 6.
    expect(t.covered.db).toBeCloseTo(10 / 20, 6);
    // The provider call was fast (1 ms), so it is time covered but not an overlap over the threshold.
    expect(t.overlapped.provider).toBe(0);
    expect(t.covered.provider).toBeCloseTo(1 / 20, 6);
  });

  it('reads back the lines the probe writes', () => {
    expect(parseTailRecords('event 1000.500 5.250 quarter\ndb 1001.000 2.000\nstall 1002.000 6.000 1.500\n')).toEqual([
      { kind: 'event', start: 1000.5, ms: 5.25, run: 'quarter' },
      { kind: 'db', start: 1001, ms: 2 },
      { kind: 'stall', start: 1002, ms: 6, cpuMs: 1.5 },
    ]);
  });
});
