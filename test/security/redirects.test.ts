import { Egress } from '../../src/net/egress';
import { WorkerError } from '../../src/errors';
import { ProviderClients } from '../../src/providers/clients';
import type { ProviderAccount } from '../../src/types';
import { plainEmail } from '../helpers/compose';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';

/**
 * A provider endpoint that answers with a redirect must not carry the worker (and the tenant's
 * key) somewhere else: the egress check (src/net/egress.ts) saw only the first host, so
 * following a Location to an internal address would walk past it. Every HTTP provider's SDK is
 * pointed at a fake that redirects everything to a second fake; the second must see nothing.
 */
describe('HTTP providers do not follow redirects', () => {
  let redirector: FakeApi;
  let target: FakeApi;
  const opts = { timeoutMs: 2000, allowEndpointOverride: true, egress: new Egress({ allowPrivate: true, allowedHosts: [] }) };
  const email = plainEmail();
  beforeAll(async () => {
    target = await startFakeApi({ ...PROVIDER_ROUTES.ses, ...PROVIDER_ROUTES.postmark, ...PROVIDER_ROUTES.resend });
    redirector = await startFakeApi({});
    redirector.respond = (r) => ({ status: 307, headers: { Location: `${target.url}${r.path}` }, body: {} });
  });
  afterAll(async () => {
    await Promise.all([redirector.close(), target.close()]);
  });

  const accounts = (): Record<string, ProviderAccount> => ({
    sendgrid: { provider: 'sendgrid', apiKey: 'SG.key', settings: { base_url: redirector.url } },
    ses: { provider: 'ses', apiKey: 'secret', settings: { region: 'us-east-1', access_key_id: 'AKIDREDIRECT0000', endpoint: redirector.url } },
    postmark: { provider: 'postmark', apiKey: 'token', settings: { base_url: redirector.url } },
    resend: { provider: 'resend', apiKey: 're_key', settings: { base_url: redirector.url } },
  });

  it.each(['sendgrid', 'ses', 'postmark', 'resend'])('%s: send() and verify() fail on a 307 and nothing reaches its Location', async (name) => {
    const clients = new ProviderClients(opts);
    const provider = clients.get('acme', accounts()[name]!);
    const before = redirector.requests.length;
    const sent = await provider.send(email).catch((e: unknown) => e);
    const verified = await provider.verify().catch((e: unknown) => e);
    await clients.closeAll();
    expect(redirector.requests.length).toBeGreaterThan(before); // the SDK did reach the endpoint
    expect(target.requests).toEqual([]);
    for (const err of [sent, verified]) {
      expect(err).toBeInstanceOf(WorkerError);
      expect((err as WorkerError).retryable).toBe(false);
    }
  });
});
