import { loadConfig } from '../src/config';
import { createServer, type AddressInfo } from 'node:net';
import { startWorker } from '../src/server';
import { createTestDatabase, type TestDatabase } from './helpers/db';
import { captureLogs } from './helpers/logCapture';
import { CANARY_DB_KEY } from './helpers/worker';
import { UsageError } from '../src/errors';

describe('start-up safety', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  const cfg = (url: string) => loadConfig({ DATABASE_URL: url, DB_ENCRYPTION_KEY: CANARY_DB_KEY });

  it.each([
    ['the table owner', () => db.ownerUrl, /owns \(or is a member of the owner of\) tenant_email_settings/],
    ['a superuser', () => db.superuserUrl, /is a superuser/],
  ])('refuses to run as %s', async (_name, url, message) => {
    const err = await startWorker(cfg(url()), captureLogs().logger, { port: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
  });

  it('refuses to run when RLS is not forced on a table', async () => {
    const owner = db.owner();
    await owner`ALTER TABLE email_deliveries NO FORCE ROW LEVEL SECURITY`;
    try {
      const err = await startWorker(cfg(db.workerUrl), captureLogs().logger, { port: 0 }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/not enabled and forced on email_deliveries/);
    } finally {
      await owner`ALTER TABLE email_deliveries FORCE ROW LEVEL SECURITY`;
    }
  });

  it('a port already in use: refuses to start, naming the port and PORT, and leaves nothing open', async () => {
    const busy = createServer();
    const port = await new Promise<number>((resolve) => busy.listen(0, () => resolve((busy.address() as AddressInfo).port)));
    try {
      const err = await startWorker(cfg(db.workerUrl), captureLogs().logger, { port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe(`the worker: port ${port} is already in use (EADDRINUSE); stop what listens there, or choose another port with PORT (serve --port)`);
    } finally {
      busy.close();
    }
  });

  it('starts as the worker role', async () => {
    const w = await startWorker(cfg(db.workerUrl), captureLogs().logger, { port: 0 });
    await w.shutdown();
  });

  it.each([
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: must be a postgres:\/\//],
    [{ DB_ENCRYPTION_KEY: 'short' }, /DB_ENCRYPTION_KEY: must be at least 32 bytes.*keys generate/],
    [{ PORT: 'eighty' }, /PORT: must be a whole number/],
    [{ SENDGRID_API_KEY: 'SG.x' }, /SENDGRID_FROM_EMAIL is not/],
    [{ SENDGRID_BASE_URL: 'http://x', SENDGRID_API_KEY: 'SG.x', SENDGRID_FROM_EMAIL: 'a@b.example' }, /ALLOW_PROVIDER_ENDPOINT_OVERRIDE/],
    [{ DB_ENCRYPTION_KEY_PREVIOUS: CANARY_DB_KEY }, /DB_ENCRYPTION_KEY_PREVIOUS is set but DB_ENCRYPTION_KEY is not/],
    [{ SMTP_ALLOWED_HOSTS: 'relay.example,10.0.0.0/33' }, /SMTP_ALLOWED_HOSTS: an entry with a \/ is not a CIDR \(or its prefix is out of range\)/],
    [{ SMTP_ALLOWED_HOSTS: '10.0.0/8' }, /SMTP_ALLOWED_HOSTS: an entry with a \/ is not a CIDR/],
  ])('fails fast with a fix-it message for %j', (env, message) => {
    expect(() => loadConfig(env)).toThrow(UsageError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('freezes the configuration', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow();
  });

});
