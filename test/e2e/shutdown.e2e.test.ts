import { keyId } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../src/dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

describe('graceful shutdown', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox({ respond: () => ({ delayMs: 400 }) });
    await putSettings(db.worker(1), { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, 'slow', {
      provider: 'sendgrid', api_key: 'SG.slow-provider-key-000000', from_email: 'a@slow.example',
      provider_settings: { base_url: mailbox.url }, enabled: true, daily_limit: 100,
    });
  });
  afterAll(async () => {
    await mailbox.close();
    await db.drop();
  });

  it('stops taking events, finishes the in-flight ones, then closes', async () => {
    const w = await startTestWorker(db, captureLogs().logger);
    const inFlight = Array.from({ length: 5 }, (_, i) => post(w.url, binaryEvent({ tenant: 'slow', data: taskData({ task_id: `drain-${i}` }) })));
    await new Promise((r) => setTimeout(r, 150));
    expect(w.state.inFlight).toBe(5);
    const closing = w.shutdown();
    expect(w.state.draining).toBe(true);
    const answers = await Promise.all(inFlight);
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    await closing;
    expect(mailbox.emails).toHaveLength(5);
    await expect(fetch(new URL('/healthz', w.url))).rejects.toThrow();
    const [row] = await db.admin()`SELECT count(*)::int AS n FROM email_deliveries WHERE status = 'sent'`;
    expect(row!.n).toBe(5);
  });
});
