import { Egress } from '../../src/net/egress';
import { execFileSync } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import path from 'node:path';
import { startMailbox, type Mailbox } from '../../dev/mailbox';
import { WorkerError } from '../../src/errors';
import { ProviderClients } from '../../src/providers/clients';
import { endpointOverride } from '../../src/providers/common';
import type { ProviderAccount, ProviderName } from '../../src/types';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { startFakeSmtp, type FakeSmtp } from '../helpers/fakeSmtp';

const opts = { timeoutMs: 2000, allowEndpointOverride: true, egress: new Egress({ allowPrivate: true, allowedHosts: [] }) };

describe('provider clients: verify(), cache and lazy loading', () => {
  let sendgrid: Mailbox;
  let ses: FakeApi;
  let postmark: FakeApi;
  let resend: FakeApi;
  let smtp: FakeSmtp;
  let accounts: Record<string, ProviderAccount>;
  beforeAll(async () => {
    [ses, postmark, resend, smtp] = await Promise.all([startFakeApi(PROVIDER_ROUTES.ses), startFakeApi(PROVIDER_ROUTES.postmark), startFakeApi(PROVIDER_ROUTES.resend), startFakeSmtp({ u: 'right' })]);
    sendgrid = await startMailbox({ respond: (r) => (r.authorization === 'Bearer SG.bad' ? { status: 401, body: { errors: [] } } : undefined) });
    accounts = {
      sendgrid: { provider: 'sendgrid', apiKey: 'SG.good', settings: { base_url: sendgrid.url } },
      ses: { provider: 'ses', apiKey: 'secret', settings: { region: 'us-east-1', access_key_id: 'AKIDVERIFY000000', endpoint: ses.url } },
      postmark: { provider: 'postmark', apiKey: 'token', settings: { base_url: postmark.url } },
      resend: { provider: 'resend', apiKey: 're_key', settings: { base_url: resend.url } },
      smtp: { provider: 'smtp', apiKey: 'right', settings: { host: '127.0.0.1', port: smtp.port, username: 'u', require_tls: false } },
    };
  });
  afterAll(async () => {
    await Promise.all([sendgrid.close(), ses.close(), postmark.close(), resend.close(), smtp.close()]);
  });

  it.each(['sendgrid', 'ses', 'postmark', 'resend', 'smtp'])('verifies %s credentials without sending an email', async (name) => {
    const clients = new ProviderClients(opts);
    await expect(clients.get('t', accounts[name]!).verify()).resolves.toBeUndefined();
    await clients.closeAll();
    expect(sendgrid.emails).toHaveLength(0);
    expect(smtp.received).toHaveLength(0);
    for (const api of [ses, postmark, resend]) expect(api.accepted.every((r) => r.method === 'GET')).toBe(true);
  });

  it.each([
    ['sendgrid', () => ({ ...accounts.sendgrid!, apiKey: 'SG.bad' }), undefined],
    ['ses', () => accounts.ses!, () => (ses.respond = () => ({ status: 403, headers: { 'x-amzn-ErrorType': 'UnrecognizedClientException' }, body: {} }))],
    ['postmark', () => accounts.postmark!, () => (postmark.respond = () => ({ status: 401, body: { ErrorCode: 10, Message: 'bad' } }))],
    ['resend', () => accounts.resend!, () => (resend.respond = () => ({ status: 401, body: { statusCode: 401, name: 'missing_api_key', message: 'x' } }))],
    ['smtp', () => ({ ...accounts.smtp!, apiKey: 'wrong' }), undefined],
  ] as Array<[string, () => ProviderAccount, (() => void) | undefined]>)('reports provider_auth_failed from %s verify() on bad credentials', async (_n, account, arrange) => {
    arrange?.();
    const clients = new ProviderClients(opts);
    const err = await clients.get('t', account()).verify().catch((e: unknown) => e);
    ses.respond = postmark.respond = resend.respond = undefined;
    await clients.closeAll();
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as WorkerError).code).toBe('provider_auth_failed');
  });

  it('reuses a client per credential, builds a new one when the key changes', () => {
    const clients = new ProviderClients(opts);
    const a = clients.get('t', accounts.resend!);
    expect(clients.get('t', { ...accounts.resend! })).toBe(a);
    expect(clients.get('t', { ...accounts.resend!, apiKey: 're_other' })).not.toBe(a);
    expect(clients.get('other-tenant', accounts.resend!)).not.toBe(a);
  });

  it('evicts the least recently used client past its bound and closes its SMTP pool', async () => {
    const clients = new ProviderClients({ ...opts, maxClients: 1 });
    const email = { from: { email: 'a@x.example', name: null }, to: 'b@y.example', replyTo: null, subject: 's', text: 't', html: '<p>t</p>', headers: {}, reference: '<ref-1@x.example>', tags: { tenantId: 'a', eventId: 'e' }, idempotencyKey: 'k' };
    await clients.get('tenant-a', accounts.smtp!).send(email);
    expect(smtp.openConnections()).toBe(1);
    clients.get('tenant-b', accounts.resend!);
    expect(clients.size).toBe(1);
    // Closing is asynchronous: poll (a busy machine only waits longer; jest's timeout guards a hang).
    while (smtp.openConnections() > 0) await new Promise((r) => setTimeout(r, 20));
    expect(smtp.openConnections()).toBe(0);
    await clients.closeAll();
  });

  it('uses the default AWS credential chain for SES when no key is stored (IRSA)', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'AKIDFROMTHECHAIN000';
    process.env.AWS_SECRET_ACCESS_KEY = 'chain-secret';
    try {
      const clients = new ProviderClients(opts);
      await clients.get('t', { provider: 'ses', apiKey: null, settings: { region: 'us-east-1', endpoint: ses.url } }).verify();
      expect(String(ses.requests.at(-1)!.headers.authorization)).toContain('Credential=AKIDFROMTHECHAIN000/');
      await clients.closeAll();
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });

  it('ignores endpoint overrides at send unless the platform allows them', () => {
    const account = (provider: ProviderName, settings: Record<string, unknown>) => ({ provider, apiKey: null, settings });
    expect(endpointOverride(account('sendgrid', { base_url: 'http://127.0.0.1:1' }), false)).toBeUndefined();
    expect(endpointOverride(account('sendgrid', { base_url: 'http://127.0.0.1:1' }), true)).toBe('http://127.0.0.1:1');
    expect(endpointOverride(account('ses', { endpoint: 'http://127.0.0.1:1' }), false)).toBeUndefined();
    expect(endpointOverride(account('ses', { endpoint: 'http://127.0.0.1:1' }), true)).toBe('http://127.0.0.1:1');
    // Each provider has one override setting: another provider's is not it.
    expect(endpointOverride(account('ses', { base_url: 'http://127.0.0.1:1' }), true)).toBeUndefined();
    expect(endpointOverride(account('smtp', { host: '127.0.0.1' }), true)).toBeUndefined();
  });

  it.each([
    ['a tenant endpoint (agents pinned to the egress policy)', false],
    ["SendGrid's own API (the agents all tenants share)", true],
  ])('SendGrid through %s asks the same TCP keep-alive of a socket every time, so node sets it once per connection', async (_what, platformManaged) => {
    const { Socket } = await import('node:net');
    const spy = jest.spyOn(Socket.prototype, 'setKeepAlive');
    try {
      const clients = new ProviderClients(opts);
      const email = { from: { email: 'a@x.example', name: null }, to: 'b@y.example', replyTo: null, subject: 's', text: 't', html: '<p>t</p>', headers: {}, reference: '<ref-k@x.example>', tags: { tenantId: 't', eventId: 'e' }, idempotencyKey: 'k' };
      const before = sendgrid.emails.length;
      for (let i = 0; i < 4; i++) await clients.get('t', { ...accounts.sendgrid!, platformManaged }).send(email);
      await new Promise((r) => setImmediate(r)); // the agent takes the last socket back on the next tick
      await clients.closeAll();
      expect(sendgrid.emails.length - before).toBe(4);
      // axios asks on each request and the agent again as it takes the socket back: node only
      // makes the system calls when the value differs from the socket's last one.
      const asked = new Map<unknown, Set<string>>();
      for (const [i, args] of spy.mock.calls.entries()) {
        const socket = spy.mock.contexts[i];
        asked.set(socket, (asked.get(socket) ?? new Set()).add(JSON.stringify(args)));
      }
      expect(spy.mock.calls.length).toBeGreaterThanOrEqual(8);
      expect([...asked.values()].map((set) => [...set])).toEqual([...asked.keys()].map(() => ['[true,60000]']));
    } finally {
      spy.mockRestore();
    }
  });

  it('loads no provider SDK, nor the modules only an event needs, at start-up', () => {
    const root = path.join(__dirname, '..', '..');
    const loaded = execFileSync(process.execPath, ['-e', `
      require('./dist/server.js'); require('./dist/cli.js');
      const mods = Object.keys(require.cache);
      console.log(JSON.stringify(['@aws-sdk', 'postmark', 'nodemailer', 'resend', '@sendgrid', 'handlebars', 'markdown-it', 'cloudevents', 'jose'].filter((m) => mods.some((k) => k.includes('/node_modules/' + m)))));
    `], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(loaded)).toEqual([]);
  });
});

/**
 * PROVIDER_TIMEOUT_MS holds for every provider the same way. Each fake holds the request (or, for
 * SMTP, the greeting) until the test opens its gate, and answers success then: a call that waited
 * for the answer would succeed, so only a deadline gives provider_timeout. The gate opens by
 * itself after a minute, a hang guard far past the 300 ms deadline; the outcome, not the time,
 * is asserted.
 */
describe('provider deadline (PROVIDER_TIMEOUT_MS)', () => {
  const TIMEOUT_MS = 300;
  const email = { from: { email: 'a@x.example', name: null }, to: 'b@y.example', replyTo: null, subject: 's', text: 't', html: '<p>t</p>', headers: {}, reference: '<ref-d@x.example>', tags: { tenantId: 't', eventId: 'e' }, idempotencyKey: 'k' };
  let open!: () => void;
  let gate: Promise<void>;
  let http: Server;
  let smtp: NetServer;
  const held: Socket[] = [];
  const OK_BODY: Record<string, unknown> = { '/v3/mail/send': {}, '/email': { MessageID: 'pm-1', ErrorCode: 0 }, '/emails': { id: 're-1' }, '/v2/email/outbound-emails': { MessageId: 'ses-1' } };
  beforeAll(async () => {
    gate = new Promise<void>((r) => (open = r));
    const guard = setTimeout(() => open(), 60_000);
    guard.unref();
    http = createHttpServer((req, res) => {
      req.resume();
      void gate.then(() => res.writeHead(req.url === '/v3/mail/send' ? 202 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(OK_BODY[req.url ?? ''] ?? {})));
    });
    smtp = createNetServer((socket) => {
      held.push(socket);
      void gate.then(() => socket.destroy());
    });
    await Promise.all([new Promise<void>((r) => http.listen(0, '127.0.0.1', r)), new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r))]);
  });
  afterAll(async () => {
    open();
    http.closeAllConnections();
    for (const s of held) s.destroy();
    await Promise.all([new Promise((r) => http.close(r)), new Promise((r) => smtp.close(r))]);
  });

  it.each(['sendgrid', 'ses', 'postmark', 'resend', 'smtp'] as const)('%s: a provider that does not answer in time is provider_timeout', async (provider) => {
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const account: ProviderAccount = {
      sendgrid: { provider: 'sendgrid', apiKey: 'SG.deadline', settings: { base_url: url } },
      ses: { provider: 'ses', apiKey: 'secret', settings: { region: 'us-east-1', access_key_id: 'AKIDDEADLINE0000', endpoint: url } },
      postmark: { provider: 'postmark', apiKey: 'token', settings: { base_url: url } },
      resend: { provider: 'resend', apiKey: 're_deadline', settings: { base_url: url } },
      smtp: { provider: 'smtp', apiKey: 'pw', settings: { host: '127.0.0.1', port: (smtp.address() as AddressInfo).port, username: 'u', require_tls: false } },
    }[provider] as ProviderAccount;
    const clients = new ProviderClients({ ...opts, timeoutMs: TIMEOUT_MS });
    try {
      const err = await clients.get('t', account).send(email).then(() => 'sent', (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkerError);
      expect((err as WorkerError).code).toBe('provider_timeout');
    } finally {
      await clients.closeAll();
    }
  });
});
