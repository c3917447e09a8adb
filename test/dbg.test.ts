import { keyId } from '../src/config';
import { putWebhook } from '../src/db/feedback';
import { createTestDatabase } from '../test/helpers/db';
it('x', async () => {
  const db = await createTestDatabase();
  const s = 'k'.repeat(44);
  try { await putWebhook(db.worker(1), { current: { id: keyId(s), secret: s } }, 'acme', 'sendgrid', { publicKey: 'abc', topicArns: ['x'] }); } catch (e) { console.log(e); }
  await db.drop();
});
