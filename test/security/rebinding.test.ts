import { WorkerError } from '../../src/errors';
import { Egress } from '../../src/net/egress';
import { ProviderClients } from '../../src/providers/clients';
import type { ProviderAccount } from '../../src/types';
import { plainEmail } from '../helpers/compose';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';

/**
 * A tenant's endpoint override is checked against the egress policy before every call. If the
 * SDK then resolved the name again itself, a name that answers "public" to the check and
 * "internal" to the connection (DNS rebinding) would walk past it. Each HTTP provider's SDK
 * connects through the policy's own lookup instead, so the address it connects to is the one
 * that was checked.
 *
 * The names below exist only in the test's resolver. An SDK that resolved them itself would
 * fail with ENOTFOUND: a send that reaches the fake proves the connection used the policy's
 * lookup.
 */
describe('HTTP providers connect to the address the egress policy checked', () => {
  let api: FakeApi;
  const email = plainEmail();
  beforeAll(async () => {
    api = await startFakeApi({
      ...PROVIDER_ROUTES.ses,
      ...PROVIDER_ROUTES.postmark,
      ...PROVIDER_ROUTES.resend,
      'POST /v3/mail/send': () => ({ status: 202, headers: { 'X-Message-Id': 'sg-1' }, body: '' }),
    });
  });
  afterAll(() => api.close());

  const port = () => new URL(api.url).port;
  const accounts = (host: string): Record<string, ProviderAccount> => {
    const url = `http://${host}:${port()}`;
    return {
      sendgrid: { provider: 'sendgrid', apiKey: 'SG.key', settings: { base_url: url } },
      ses: { provider: 'ses', apiKey: 'secret', settings: { region: 'us-east-1', access_key_id: 'AKIDREBIND000000', endpoint: url } },
      postmark: { provider: 'postmark', apiKey: 'token', settings: { base_url: url } },
      resend: { provider: 'resend', apiKey: 're_key', settings: { base_url: url } },
    };
  };
  const providers = ['sendgrid', 'ses', 'postmark', 'resend'];

  it.each(providers)('%s: the connection goes where the policy resolved the name', async (name) => {
    const lookups: string[] = [];
    const egress = new Egress({ allowPrivate: true, allowedHosts: [] }, async (host) => {
      lookups.push(host);
      if (host === 'pinned.test') return ['127.0.0.1'];
      throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    });
    const clients = new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: true, egress });
    const before = api.requests.length;
    try {
      await clients.get('acme', accounts('pinned.test')[name]!).send(email);
    } finally {
      await clients.closeAll();
    }
    expect(api.requests.length).toBe(before + 1);
    // Once for the check before the call, once more for the connection.
    expect(lookups.length).toBeGreaterThanOrEqual(2);
  });

  it.each(providers)('%s: a name that rebinds to an internal address after the check is refused at connect', async (name) => {
    let answers = 0;
    // Public for the check before the call, loopback for everything after: the rebinding attack.
    const egress = new Egress({ allowPrivate: false, allowedHosts: [] }, async () => (answers++ === 0 ? ['93.184.216.34'] : ['127.0.0.1']));
    const clients = new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: true, egress });
    const before = api.requests.length;
    const err = await clients
      .get('acme', accounts('rebind.test')[name]!)
      .send(email)
      .catch((e: unknown) => e)
      .finally(() => clients.closeAll());
    expect(err).toBeInstanceOf(WorkerError);
    // The same answer as a name that resolves inward at the check: not retried, dead-lettered.
    expect((err as WorkerError).code).toBe('destination_forbidden');
    expect(answers).toBeGreaterThanOrEqual(2); // the connection asked the policy again
    expect(api.requests.length).toBe(before); // and nothing reached the internal address
  });

  it("leaves the platform's own endpoint (the global account) to the system resolver", async () => {
    const egress = new Egress({ allowPrivate: false, allowedHosts: [] }, async () => {
      throw new Error('the policy must not be asked about the platform endpoint');
    });
    const clients = new ProviderClients({ timeoutMs: 2000, allowEndpointOverride: true, egress });
    const before = api.requests.length;
    try {
      await clients.get('(global)', { ...accounts('127.0.0.1').resend!, platformManaged: true }).send(email);
    } finally {
      await clients.closeAll();
    }
    expect(api.requests.length).toBe(before + 1);
  });
});
