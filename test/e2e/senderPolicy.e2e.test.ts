import { SignJWT } from 'jose';
import { getSettings, putSettings } from '../../src/db/settings';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { captureLogs } from '../helpers/logCapture';
import { startTestWorker } from '../helpers/worker';
import { requireKeyRing } from '../../src/config/require';

const SECRET = 'admin-jwt-secret-for-sender-policy-0123456789';

/**
 * The default SENDER_DOMAIN_POLICY (platform-paid), end to end: the seed's whole flow (a tenant
 * saves its own provider key and a from_email, then events arrive) sends from that from_email at
 * once, while an account the platform pays for sends from a tenant's domain only once verified.
 */
describe('sender policy with the default configuration', () => {
  let db: TestDatabase;
  let mailbox: Mailbox;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let token: string;
  const logs = captureLogs();

  const settingsCall = async (method: string, tenant: string, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${tenant}/email-settings`, worker.url), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, json: (await res.json().catch(() => null)) as { code?: string } & Record<string, unknown> | null };
  };
  const send = async (tenant: string) => {
    const data = taskData();
    const r = await post(worker.url, binaryEvent({ tenant, data }));
    const email = mailbox.emails.find((e) => e.body.content.some((c) => c.value.includes(String(data.task_id))));
    return { status: r.status, code: r.text ? JSON.parse(r.text).code : null, from: email?.body.from.email ?? null };
  };
  const own = () => ({ provider: 'sendgrid', api_key: 'SG.tenant-own-key-000000', from_email: 'alerts@acme-own.example', provider_settings: { base_url: mailbox.url } });

  beforeAll(async () => {
    db = await createTestDatabase();
    mailbox = await startMailbox();
    // No SENDER_DOMAIN_POLICY and no EMAIL_TENANT_FROM_PATTERN: the defaults under test.
    worker = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: SECRET });
    expect(worker.config.senderDomainPolicy).toBe('platform-paid');
    token = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
  });
  afterAll(async () => {
    await worker.shutdown();
    await mailbox.close();
    await db.drop();
  });

  it("sends the seed's flow (the tenant's own key and from_email) from that from_email, with no domain registered", async () => {
    expect((await settingsCall('PUT', 'acme', own())).status).toBe(201);
    expect(await send('acme')).toEqual({ status: 202, code: null, from: 'alerts@acme-own.example' });
    expect((await settingsCall('GET', 'acme')).json).toMatchObject({ platform_paid: false, provider_settings: { base_url: mailbox.url } });
  });

  it('refuses an unverified tenant domain on an account the platform pays for, until the tenant brings its own key', async () => {
    // What `tenant-email sendgrid provision` stores: the platform's subuser key, marked platform-paid.
    await putSettings(worker.sql, requireKeyRing(worker.config), 'paid', { ...own(), api_key: 'SG.platform-subuser-key-0000', from_email: 'ceo@bank.example', enabled: true, daily_limit: 100 } as never, { platformPaid: true });
    expect(await getSettings(worker.sql, 'paid')).toMatchObject({ platform_paid: true, provider_settings: { base_url: mailbox.url } });
    expect(await send('paid')).toEqual({ status: 422, code: 'sender_domain_unverified', from: null });

    // An update that keeps the platform's key keeps the mark: changing from_email does not lift the check.
    const { api_key: _kept, ...withoutKey } = own();
    expect((await settingsCall('PUT', 'paid', { ...withoutKey, from_email: 'ceo@other-bank.example' })).status).toBe(200);
    expect((await settingsCall('GET', 'paid')).json).toMatchObject({ platform_paid: true });
    expect(await send('paid')).toEqual({ status: 422, code: 'sender_domain_unverified', from: null });

    // The tenant cannot set the mark itself, nor send it back inside provider_settings.
    const forged = await settingsCall('PUT', 'acme', { ...own(), provider_settings: { base_url: mailbox.url, platform_paid: false } });
    expect([forged.status, forged.json?.code]).toEqual([400, 'invalid_request']);

    // Its own key: the account is the tenant's, and its provider enforces its senders.
    expect((await settingsCall('PUT', 'paid', { ...own(), from_email: 'ceo@other-bank.example' })).status).toBe(200);
    expect((await settingsCall('GET', 'paid')).json).toMatchObject({ platform_paid: false });
    expect(await send('paid')).toEqual({ status: 202, code: null, from: 'ceo@other-bank.example' });
  });
});
