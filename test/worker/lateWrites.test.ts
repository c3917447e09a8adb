import { createLogger } from '../../src/logger';
import { LateWrites } from '../../src/worker/lateWrites';

const log = createLogger({ level: 'silent' });

describe('LateWrites', () => {
  it('a shutdown flush waits for a write already under way instead of dropping it', async () => {
    const dropped: string[] = [];
    const late = new LateWrites((what) => dropped.push(what));
    let finish!: (ok: boolean) => void;
    let calls = 0;
    late.add('outcome', () => (calls++, new Promise<boolean>((r) => (finish = r))), log);
    late.nudge(); // the database is back: the write starts now and is still running
    expect(calls).toBe(1);
    const flushed = late.flush();
    finish(true);
    await flushed;
    expect({ calls, dropped, size: late.size }).toEqual({ calls: 1, dropped: [], size: 0 });
  });

  it('a flush drops (and counts) what the database still does not take', async () => {
    const dropped: string[] = [];
    const late = new LateWrites((what) => dropped.push(what));
    late.add('release', () => Promise.reject(Object.assign(new Error('down'), { code: 'ECONNREFUSED' })), log);
    await late.flush();
    expect({ dropped, size: late.size }).toEqual({ dropped: ['release'], size: 0 });
  });
});
