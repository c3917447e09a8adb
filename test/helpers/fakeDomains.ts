import { randomUUID } from 'node:crypto';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi, type RecordedRequest } from './fakeApi';

/**
 * Stateful fakes of each provider's sender-domain API (and its send endpoint), shaped as the
 * official SDKs read them. A domain is pending until the test "publishes DNS" with
 * `publish(domain)`; the next verification request then finds it verified, as at the provider.
 */
export interface DomainFake {
  api: FakeApi;
  url: string;
  /** The DNS records are in place: the provider's next check succeeds. */
  publish(domain: string): void;
  /** Domains registered at the fake. */
  domains(): string[];
  close(): Promise<void>;
}

type Provider = 'sendgrid' | 'resend' | 'ses' | 'postmark';

interface State {
  id: string;
  name: string;
  verified: boolean;
  /** Set by a verification request once DNS is published. */
  published: boolean;
}

export async function startDomainFake(provider: Provider): Promise<DomainFake> {
  const byId = new Map<string, State>();
  const byName = (name: string) => [...byId.values()].find((d) => d.name === name);
  let next = 1000;
  const add = (name: string, id = String(next++)): State => {
    const s = { id, name, verified: false, published: false };
    byId.set(id, s);
    return s;
  };
  const check = (s: State) => {
    if (s.published) s.verified = true;
    return s;
  };
  const notFound = { status: 404, body: { message: 'not found' } };
  const routes = ROUTES[provider]({ byId, byName, add, check, notFound });
  const api = await startFakeApi(routes);
  return {
    api,
    url: api.url,
    publish: (name) => {
      const s = byName(name);
      if (!s) throw new Error(`fake ${provider}: ${name} is not registered`);
      s.published = true;
    },
    domains: () => [...byId.values()].map((d) => d.name),
    close: () => api.close(),
  };
}

interface Ctx {
  byId: Map<string, State>;
  byName(name: string): State | undefined;
  add(name: string, id?: string): State;
  check(s: State): State;
  notFound: { status: number; body: unknown };
}
type Routes = Record<string, (r: RecordedRequest) => { status: number; headers?: Record<string, string>; body: unknown }>;

const ROUTES: Record<Provider, (c: Ctx) => Routes> = {
  sendgrid: ({ byId, byName, add, check, notFound }) => {
    const view = (s: State) => ({
      id: Number(s.id),
      domain: s.name,
      valid: s.verified,
      dns: {
        mail_cname: { host: `em${s.id}.${s.name}`, type: 'cname', data: `u${s.id}.wl.sendgrid.net`, valid: s.verified },
        dkim1: { host: `s1._domainkey.${s.name}`, type: 'cname', data: `s1.domainkey.u${s.id}.wl.sendgrid.net`, valid: s.verified },
        dkim2: { host: `s2._domainkey.${s.name}`, type: 'cname', data: `s2.domainkey.u${s.id}.wl.sendgrid.net`, valid: s.verified },
      },
    });
    return {
      'POST /v3/mail/send': () => ({ status: 202, headers: { 'x-message-id': `sg-${randomUUID()}` }, body: '' }),
      'GET /v3/whitelabel/domains': (r) => ({ status: 200, body: [...byId.values()].filter((d) => !r.query.domain || d.name === r.query.domain).map(view) }),
      'POST /v3/whitelabel/domains': (r) => {
        const name = (r.body as { domain: string }).domain;
        if (byName(name)) return { status: 400, body: { errors: [{ message: 'domain already exists' }] } };
        return { status: 201, body: view(add(name)) };
      },
      'POST /v3/whitelabel/domains/:id/validate': (r) => {
        const s = byId.get(r.params.id as string);
        return s ? { status: 200, body: { id: Number(s.id), valid: check(s).verified, validation_results: {} } } : notFound;
      },
      'GET /v3/whitelabel/domains/:id': (r) => {
        const s = byId.get(r.params.id as string);
        return s ? { status: 200, body: view(s) } : notFound;
      },
    };
  },

  resend: ({ byId, byName, add, check, notFound }) => {
    const view = (s: State) => ({
      object: 'domain',
      id: s.id,
      name: s.name,
      status: s.verified ? 'verified' : 'not_started',
      created_at: new Date().toISOString(),
      region: 'us-east-1',
      records: [
        { record: 'SPF', name: 'send', type: 'MX', ttl: 'Auto', status: s.verified ? 'verified' : 'not_started', value: 'feedback-smtp.us-east-1.amazonses.com', priority: 10 },
        { record: 'SPF', name: 'send', type: 'TXT', ttl: 'Auto', status: s.verified ? 'verified' : 'not_started', value: '"v=spf1 include:amazonses.com ~all"' },
        { record: 'DKIM', name: 'resend._domainkey', type: 'TXT', ttl: 'Auto', status: s.verified ? 'verified' : 'not_started', value: 'p=MIGfMA0GCSqGSIb3DQEB' },
      ],
    });
    return {
      ...PROVIDER_ROUTES.resend,
      'GET /domains': () => ({ status: 200, body: { object: 'list', data: [...byId.values()].map((s) => ({ id: s.id, name: s.name, status: view(s).status })) } }),
      'POST /domains': (r) => {
        const name = (r.body as { name: string }).name;
        if (byName(name)) return { status: 422, body: { name: 'validation_error', message: 'domain exists', statusCode: 422 } };
        return { status: 200, body: view(add(name, randomUUID())) };
      },
      'GET /domains/:id': (r) => {
        const s = byId.get(r.params.id as string);
        return s ? { status: 200, body: view(s) } : notFound;
      },
      'POST /domains/:id/verify': (r) => {
        const s = byId.get(r.params.id as string);
        if (!s) return notFound;
        check(s);
        return { status: 200, body: { object: 'domain', id: s.id } };
      },
    };
  },

  ses: ({ byName, add, check }) => {
    const view = (s: State) => ({
      IdentityType: 'DOMAIN',
      VerifiedForSendingStatus: s.verified,
      DkimAttributes: { SigningEnabled: true, Status: s.verified ? 'SUCCESS' : 'PENDING', Tokens: ['tok1aaaa', 'tok2bbbb', 'tok3cccc'].map((t) => `${t}${s.id}`) },
    });
    const awsError = (status: number, type: string) => ({ status, headers: { 'x-amzn-errortype': type }, body: { message: type } });
    return {
      ...PROVIDER_ROUTES.ses,
      'POST /v2/email/identities': (r) => {
        const name = (r.body as { EmailIdentity: string }).EmailIdentity;
        if (byName(name)) return awsError(400, 'AlreadyExistsException');
        return { status: 200, body: view(add(name)) };
      },
      // SES checks DNS on its own schedule; reading the identity shows the latest result.
      'GET /v2/email/identities/:id': (r) => {
        const s = byName(r.params.id as string);
        return s ? { status: 200, body: view(check(s)) } : awsError(404, 'NotFoundException');
      },
    };
  },

  postmark: ({ byId, byName, add, check, notFound }) => {
    const view = (s: State) => ({
      ID: Number(s.id),
      Name: s.name,
      DKIMVerified: s.verified,
      WeakDKIM: false,
      DKIMHost: s.verified ? `${s.id}pm._domainkey.${s.name}` : '',
      DKIMTextValue: s.verified ? 'k=rsa;p=MIGfMA0' : '',
      DKIMPendingHost: s.verified ? '' : `${s.id}pm._domainkey.${s.name}`,
      DKIMPendingTextValue: s.verified ? '' : 'k=rsa;p=MIGfMA0',
      DKIMRevokedHost: '',
      DKIMRevokedTextValue: '',
      SafeToRemoveRevokedKeyFromDNS: false,
      DKIMUpdateStatus: s.verified ? 'Verified' : 'Pending',
      ReturnPathDomain: `pm-bounces.${s.name}`,
      ReturnPathDomainVerified: s.verified,
      ReturnPathDomainCNAMEValue: 'pm.mtasv.net',
    });
    const account = (r: RecordedRequest) => r.headers['x-postmark-account-token'] === POSTMARK_ACCOUNT_TOKEN;
    const denied = { status: 401, body: { ErrorCode: 10, Message: 'No Account API token provided' } };
    return {
      ...PROVIDER_ROUTES.postmark,
      'GET /domains': (r) => (account(r) ? { status: 200, body: { TotalCount: byId.size, Domains: [...byId.values()].map((s) => ({ ID: Number(s.id), Name: s.name })) } } : denied),
      'POST /domains': (r) => {
        if (!account(r)) return denied;
        const name = (r.body as { Name: string }).Name;
        if (byName(name)) return { status: 422, body: { ErrorCode: 503, Message: 'exists' } };
        return { status: 200, body: view(add(name)) };
      },
      'GET /domains/:id': (r) => {
        const s = byId.get(r.params.id as string);
        return !account(r) ? denied : s ? { status: 200, body: view(s) } : notFound;
      },
      'PUT /domains/:id/verifyReturnPath': (r) => {
        const s = byId.get(r.params.id as string);
        return !account(r) ? denied : s ? { status: 200, body: view(check(s)) } : notFound;
      },
      'PUT /domains/:id/verifyDKIM': (r) => {
        const s = byId.get(r.params.id as string);
        return !account(r) ? denied : s ? { status: 200, body: view(check(s)) } : notFound;
      },
    };
  },
};

/** The Postmark account token the fake accepts (a canary: it must never be stored or logged). */
export const POSTMARK_ACCOUNT_TOKEN = 'CANARY-POSTMARK-ACCOUNT-TOKEN-9f8e7d';
