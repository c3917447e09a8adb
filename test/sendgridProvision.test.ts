import { keyId } from '../src/config';
import { createDeliveryStore } from '../src/db/deliveries';
import type { FakeResponse } from '../dev/mailbox';
import { cli } from './helpers/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';
import { startFakeApi, type FakeApi, type RecordedRequest } from './helpers/fakeApi';
import { CANARY_DB_KEY } from './helpers/worker';

const MASTER = 'SG.CANARY-MASTER-KEY-000000000000';


describe('sendgrid provision', () => {
  let db: TestDatabase;
  let api: FakeApi;
  const state = { subusers: [] as string[], senders: [] as string[], keys: [] as Array<{ api_key_id: string; name: string; key: string }>, ips: [] as string[] };
  let keyCount = 0;
  let failApiKeys = false;
  const onBehalf = (r: RecordedRequest) => String(r.headers['on-behalf-of']);

  beforeAll(async () => {
    db = await createTestDatabase();
    const routes: Parameters<typeof startFakeApi>[0] = {
      'GET /v3/subusers': () => ({ status: 200, body: state.subusers.map((username) => ({ username })) }),
      'POST /v3/subusers': (r) => { state.subusers.push((r.body as { username: string }).username); return { status: 201, body: {} }; },
      'GET /v3/verified_senders': () => ({ status: 200, body: { results: state.senders.map((from_email) => ({ from_email })) } }),
      'POST /v3/verified_senders': (r) => { state.senders.push((r.body as { from_email: string }).from_email); return { status: 201, body: {} }; },
      'GET /v3/api_keys': () => ({ status: 200, body: { result: state.keys.map(({ api_key_id, name }) => ({ api_key_id, name })) } }),
      'POST /v3/api_keys': () => {
        keyCount++;
        const k = { api_key_id: `key-${keyCount}`, name: 'tenant-email-worker', key: `SG.subuser-key-${keyCount}-0000000000` };
        state.keys.push(k);
        return { status: 201, body: { api_key: k.key, api_key_id: k.api_key_id, name: k.name, scopes: ['mail.send'] } };
      },
      'PUT /v3/subusers/tew-acme/ips': (r) => { state.ips = r.body as string[]; return { status: 200, body: {} }; },
    };
    for (let i = 1; i <= 5; i++) routes[`DELETE /v3/api_keys/key-${i}`] = () => { state.keys = state.keys.filter((k) => k.api_key_id !== `key-${i}`); return { status: 204, body: {} }; };
    api = await startFakeApi(routes);
    api.respond = (r): FakeResponse | undefined => {
      if (r.headers.authorization !== `Bearer ${MASTER}`) return { status: 401, body: { errors: [{ message: 'bad key' }] } };
      if (failApiKeys && r.method === 'POST' && r.path === '/v3/api_keys') return { status: 500, body: { errors: [] } };
      return undefined;
    };
  });
  afterAll(async () => {
    await api.close();
    await db.drop();
  });

  const env = () => ({ DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY, SENDGRID_MASTER_API_KEY: MASTER, SENDGRID_BASE_URL: api.url, ALLOW_PROVIDER_ENDPOINT_OVERRIDE: 'true', ALLOW_PRIVATE_SMTP_HOSTS: 'true' });
  const args = ['sendgrid', 'provision', '--tenant', 'acme', '--from-email', 'noreply@acme.example', '--from-name', 'Acme', '--address', '1 Main St', '--city', 'Springfield', '--country', 'USA', '--ip', '192.0.2.10'];

  it('finishes on a re-run what a run that failed half way left undone', async () => {
    failApiKeys = true;
    const first = await cli(args, env());
    expect(first.code).toBe(1);
    expect(first.stderr).toMatch(/creating the API key failed: provider_unavailable.*run the command again/);
    expect(state.subusers).toEqual(['tew-acme']);
    expect(state.senders).toEqual(['noreply@acme.example']);
    expect((await cli(['settings', 'get', '--tenant', 'acme'], env())).code).toBe(1);

    failApiKeys = false;
    const second = await cli(args, env());
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual({ username: 'tew-acme', subuser: 'exists', sender: 'exists', api_key: 'created', ip: 'assigned' });
    expect(state.subusers).toEqual(['tew-acme']);
    expect(state.ips).toEqual(['192.0.2.10']);
    const created = api.accepted.find((r) => r.method === 'POST' && r.path === '/v3/api_keys')!;
    expect(onBehalf(created)).toBe('tew-acme');
    expect(created.body).toEqual({ name: 'tenant-email-worker', scopes: ['mail.send'] });

    const store = createDeliveryStore(db.worker(1), { keys: { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } }, leaseSeconds: 60, globalDailyLimit: null });
    const claim = await store.claim({ tenantId: 'acme', eventSource: 's', eventId: 'e', eventType: 't', taskId: 'x', hasRecipient: true });
    expect(claim.outcome === 'claimed' && claim.settings?.primary.apiKey).toBe('SG.subuser-key-1-0000000000');
  });

  it('changes nothing when run again on a complete tenant', async () => {
    const before = api.accepted.filter((r) => r.method !== 'GET').length;
    const again = await cli(args, env());
    expect(JSON.parse(again.stdout)).toMatchObject({ subuser: 'exists', sender: 'exists', api_key: 'kept' });
    expect(api.accepted.filter((r) => r.method !== 'GET').length - before).toBe(1); // only the idempotent IP PUT
    expect(state.keys).toHaveLength(1);
  });

  it('keeps the master key out of its output and says what is missing', async () => {
    const bad = await cli(args, { ...env(), SENDGRID_MASTER_API_KEY: 'SG.CANARY-WRONG-MASTER-000000' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/looking up the subuser failed: provider_auth_failed/);
    expect(bad.stdout + bad.stderr).not.toContain('CANARY');
    const noMaster = await cli(args, { DATABASE_URL: db.workerUrl, DB_ENCRYPTION_KEY: CANARY_DB_KEY });
    expect(noMaster.stderr).toMatch(/SENDGRID_MASTER_API_KEY is not set/);
    const noAddress = await cli(['sendgrid', 'provision', '--tenant', 'beta', '--from-email', 'b@beta.example', '--from-name', 'B'], env());
    expect(noAddress.stderr).toMatch(/pass --address, --city and --country/);
  });
});
