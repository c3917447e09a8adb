import type { ClientRequest } from '@sendgrid/client/src/request';
import type { ClientResponse } from '@sendgrid/client/src/response';
import type { MailDataRequired } from '@sendgrid/helpers/classes/mail';
import { WorkerError } from '../errors';
import { endpointFor, errorFromHttpStatus, pinnedAgents, sharedAgents } from './common';
import type { ProviderAccount, DomainState } from '../types';
import type { EmailProvider, OutgoingEmail, ProviderOptions } from './types';

/**
 * SendGrid through @sendgrid/mail with a client of its own per tenant credential (never the
 * module singleton, which holds one key for the whole process). Required lazily so that a
 * worker that never sends through SendGrid does not load it.
 */
export function createSendgridProvider(account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  if (!account.apiKey) throw new WorkerError('provider_auth_failed', 'SendGrid needs an API key');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { MailService } = require('@sendgrid/mail') as { MailService: new () => SendgridMail };
  const { Client } = require('@sendgrid/client') as { Client: new () => SendgridClient };
  /* eslint-enable @typescript-eslint/no-require-imports */

  const client = new Client();
  client.setApiKey(account.apiKey);
  const endpoint = endpointFor(account, opts);
  if (endpoint) client.setDefaultRequest('baseUrl', endpoint.url);
  // A tenant's endpoint: every connection goes to an address the egress policy checked. Otherwise
  // the agents all SendGrid clients share (common.ts says why not Node's global ones).
  const agents = endpoint?.lookup ? pinnedAgents(endpoint.lookup) : sharedAgents();
  client.setDefaultRequest('httpAgent', agents.http);
  client.setDefaultRequest('httpsAgent', agents.https);
  client.setDefaultRequest('timeout', opts.timeoutMs);
  // SendGrid's API does not redirect. Not following redirects means a 3xx is an error (mapped by
  // status like any other) rather than a request to wherever the answer points, which an
  // endpoint override could aim at a private address past the egress check (src/net/egress.ts).
  // It also takes axios off follow-redirects onto Node's own http(s): ~6% of the worker's CPU
  // per event in the bench's profile.
  client.setDefaultRequest('maxRedirects', 0);
  const mail = new MailService();
  mail.setClient(client);
  /** A v3 API call with the tenant's key; rejects with a WorkerError. */
  const call = async <T>(req: ClientRequest): Promise<T> => {
    try {
      const [, body] = await client.request(req);
      return body as T;
    } catch (err) {
      throw mapSendgridError(err);
    }
  };

  return {
    name: 'sendgrid',
    async close() {
      agents?.http.destroy();
      agents?.https.destroy();
    },
    async send(email: OutgoingEmail) {
      try {
        const [response] = await mail.send({
          from: email.from.name ? { email: email.from.email, name: email.from.name } : email.from.email,
          to: email.to,
          ...(email.replyTo ? { replyTo: email.replyTo } : {}),
          subject: email.subject,
          text: email.text,
          html: email.html,
          headers: { ...email.headers },
          customArgs: { tenant_id: email.tags.tenantId, event_id: email.tags.eventId },
          categories: ['tenant-email-worker'],
        });
        const id = response.headers?.['x-message-id'];
        return { messageId: typeof id === 'string' ? id : null };
      } catch (err) {
        throw mapSendgridError(err);
      }
    },
    async verify() {
      try {
        const request: ClientRequest = { method: 'GET', url: '/v3/scopes' };
        await client.request(request);
      } catch (err) {
        throw mapSendgridError(err);
      }
    },
    domains() {
      return {
        // Domain authentication (whitelabel): the key needs the whitelabel scopes, not only mail.send.
        async register(domain) {
          const found = await call<SendgridDomain[]>({ method: 'GET', url: '/v3/whitelabel/domains', qs: { domain, limit: 50 } });
          const existing = (found ?? []).find((d) => d.domain.toLowerCase() === domain);
          return sendgridDomainState(existing ?? (await call<SendgridDomain>({ method: 'POST', url: '/v3/whitelabel/domains', body: { domain, automatic_security: true } })));
        },
        async check(_domain, id) {
          await call({ method: 'POST', url: `/v3/whitelabel/domains/${encodeURIComponent(id)}/validate` });
          return sendgridDomainState(await call<SendgridDomain>({ method: 'GET', url: `/v3/whitelabel/domains/${encodeURIComponent(id)}` }));
        },
      };
    },
    webhooks() {
      return {
        // The account's Event Webhook, then its signing (which answers the verification key).
        // The key needs the user.webhooks scopes.
        async register(url) {
          await call({ method: 'PATCH', url: '/v3/user/webhooks/event/settings', body: { enabled: true, url, ...SENDGRID_EVENTS } });
          const signed = await call<{ public_key?: string }>({ method: 'PATCH', url: '/v3/user/webhooks/event/settings/signed', body: { enabled: true } });
          if (!signed?.public_key) throw new WorkerError('provider_rejected', 'SendGrid turned signing on but answered no verification key');
          return { providerWebhookId: null, events: Object.keys(SENDGRID_EVENTS).filter((k) => SENDGRID_EVENTS[k as keyof typeof SENDGRID_EVENTS]), publicKey: signed.public_key };
        },
      };
    },
  };
}

/** The Event Webhook's delivery events (engagement events are off: opens and clicks change no status). */
const SENDGRID_EVENTS = { bounce: true, deferred: true, delivered: true, dropped: true, spam_report: true, unsubscribe: true, group_unsubscribe: true, processed: false, open: false, click: false, group_resubscribe: false };

interface SendgridDomain {
  id: number;
  domain: string;
  valid: boolean;
  dns?: Record<string, { host: string; type: string; data: string; valid: boolean }>;
}

function sendgridDomainState(d: SendgridDomain): DomainState {
  const records = Object.values(d.dns ?? {}).map((r) => ({ type: r.type.toUpperCase(), name: r.host, value: r.data, status: r.valid ? 'verified' : 'pending' }));
  return { providerDomainId: String(d.id), status: d.valid ? 'verified' : 'pending', records };
}

// The SDK's typings declare these classes only as named exports of an `export =` module, which
// TypeScript cannot reach; these are the parts we use.
interface SendgridClient {
  setApiKey(key: string): void;
  setDefaultRequest(key: string, value: unknown): void;
  request(req: ClientRequest): Promise<[ClientResponse, unknown]>;
}
interface SendgridMail {
  setClient(client: SendgridClient): void;
  send(data: MailDataRequired): Promise<[ClientResponse, unknown]>;
}

interface SendgridLikeError {
  code?: unknown;
  response?: { headers?: Record<string, unknown>; status?: unknown };
}

/**
 * By status code (DESIGN §5): 400/401/403/413 permanent, 429 with X-RateLimit-Reset, 5xx and no
 * response retryable. Nothing of the SDK error is kept: its request config holds the API key.
 */
export function mapSendgridError(err: unknown, now: () => number = Date.now): WorkerError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SendgridLikeError;
  // A ResponseError (4xx/5xx) carries the status as `code`; a 3xx (redirects are not followed)
  // comes back as axios's own error with only `response.status`.
  const status = typeof e.code === 'number' ? e.code : typeof e.response?.status === 'number' ? e.response.status : undefined;
  if (status === 429) {
    // X-RateLimit-Reset is the epoch second at which the limit resets.
    const reset = Number(e.response?.headers?.['x-ratelimit-reset']);
    const retryAfterSeconds = Number.isFinite(reset) && reset > 0 ? Math.max(1, Math.ceil(reset - now() / 1000)) : undefined;
    return errorFromHttpStatus('SendGrid', status, { retryAfterSeconds });
  }
  // axios reports a timeout as ECONNABORTED/ETIMEDOUT with no response.
  const timedOut = status === undefined && (e.code === 'ECONNABORTED' || e.code === 'ETIMEDOUT');
  // 400 and 413 are the message's fault, 401/403 the account's; see errorFromHttpStatus in common.ts.
  return errorFromHttpStatus('SendGrid', status, { timedOut });
}
