import { WorkerError } from '../errors';
import type { ProviderAccount, DomainRecord, DomainState } from '../types';
import { endpointFor, errorFromHttpStatus, formatFrom, fqdn, parseRetryAfter, pinnedDispatcher, tagValue } from './common';
import type { EmailProvider, OutgoingEmail, ProviderOptions } from './types';

type ResendModule = typeof import('resend');

/** The fetch options the SDK passes through to fetch(). */
interface RequestOptions {
  signal: AbortSignal;
  redirect: 'manual';
  /** undici's: fetch() connects through it (a tenant's endpoint, pinned to checked addresses). */
  dispatcher?: import('undici').Agent;
}

interface ResendResult<T> {
  data: T | null;
  error: { statusCode?: number | null; name?: string } | null;
  headers?: Record<string, string> | null;
}

/**
 * Resend through the `resend` SDK, which returns `{data, error}` instead of throwing. The
 * delivery's ledger key goes out as Resend's Idempotency-Key, so even a send repeated after a
 * crash (lease taken over) is deduplicated by Resend within its idempotency window.
 */
export function createResendProvider(account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  if (!account.apiKey) throw new WorkerError('provider_auth_failed', 'Resend needs an API key');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resend } = require('resend') as ResendModule;
  const endpoint = endpointFor(account, opts);
  const client = new Resend(account.apiKey, endpoint ? { baseUrl: endpoint.url } : undefined);
  // A tenant's endpoint: every connection goes to an address the egress policy checked.
  const dispatcher = endpoint?.lookup ? pinnedDispatcher(endpoint.lookup) : undefined;

  // Every request goes out with a deadline and without following redirects: the SDK spreads
  // these request options into its fetch() call. A redirect is answered as an error carrying a
  // Location header; following it would reach a host the egress check never saw.
  const call = async <T>(fn: (init: RequestOptions) => Promise<ResendResult<T>>): Promise<T> => {
    const signal = AbortSignal.timeout(opts.timeoutMs);
    let result: ResendResult<T>;
    try {
      result = await fn({ signal, redirect: 'manual', ...(dispatcher ? { dispatcher } : {}) });
    } catch {
      throw errorFromHttpStatus('Resend', null, { timedOut: signal.aborted });
    }
    if (result.error) throw mapResendError(result.error, result.headers ?? null, signal.aborted);
    return result.data as T;
  };

  return {
    name: 'resend',
    async close() {
      await dispatcher?.close();
    },
    async send(email: OutgoingEmail) {
      const data = await call<{ id: string }>((init) =>
        client.emails.send(
          {
            from: formatFrom(email.from),
            to: [email.to],
            ...(email.replyTo ? { replyTo: email.replyTo } : {}),
            subject: email.subject,
            text: email.text,
            html: email.html,
            headers: { ...email.headers },
            tags: [
              { name: 'tenant_id', value: tagValue(email.tags.tenantId) },
              { name: 'event_id', value: tagValue(email.tags.eventId) },
            ],
          },
          { idempotencyKey: email.idempotencyKey, ...init } as never,
        ) as Promise<ResendResult<{ id: string }>>,
      );
      return { messageId: data?.id ?? null };
    },
    async verify() {
      await call((init) => client.domains.list({}, init as never) as Promise<ResendResult<unknown>>);
    },
    webhooks() {
      const events = ['email.delivered', 'email.delivery_delayed', 'email.bounced', 'email.complained', 'email.suppressed'];
      return {
        async register(url, { existingId }) {
          if (existingId) {
            await call((init) => client.webhooks.update(existingId, { endpoint: url, events: events as never, status: 'enabled' }, init as never) as Promise<ResendResult<unknown>>);
            // The signing secret stays what it was (and what is stored).
            return { providerWebhookId: existingId, events };
          }
          const created = await call<{ id: string; signing_secret: string }>(
            (init) => client.webhooks.create({ endpoint: url, events: events as never }, init as never) as Promise<ResendResult<{ id: string; signing_secret: string }>>,
          );
          return { providerWebhookId: created.id, events, signingSecret: created.signing_secret };
        },
      };
    },
    domains() {
      const details = async (id: string, domain: string): Promise<DomainState> => {
        const d = await call<ResendDomain>((init) => client.domains.get(id, init as never) as Promise<ResendResult<ResendDomain>>);
        return resendDomainState(d, domain);
      };
      return {
        async register(domain) {
          // Registering twice is not an error: the account's existing domain is used.
          const list = await call<{ data?: Array<{ id: string; name: string }> }>((init) => client.domains.list({}, init as never) as Promise<ResendResult<{ data?: Array<{ id: string; name: string }> }>>);
          const existing = (list?.data ?? []).find((d) => d.name.toLowerCase() === domain);
          if (existing) return details(existing.id, domain);
          const created = await call<ResendDomain>((init) => client.domains.create({ name: domain }, init as never) as Promise<ResendResult<ResendDomain>>);
          return resendDomainState(created, domain);
        },
        async check(domain, id) {
          await call((init) => client.domains.verify(id, init as never) as Promise<ResendResult<unknown>>);
          return details(id, domain);
        },
      };
    },
  };
}

interface ResendDomain {
  id: string;
  status?: string;
  records?: Array<{ type: string; name: string; value: string; priority?: number; status?: string }>;
}

/** Resend reports not_started/pending/partially_* until every record checks out. */
function resendDomainState(d: ResendDomain, domain: string): DomainState {
  const records: DomainRecord[] = (d.records ?? []).map((r) => ({
    type: r.type,
    name: fqdn(r.name, domain),
    value: r.value,
    ...(r.priority !== undefined ? { priority: r.priority } : {}),
    ...(r.status ? { status: r.status } : {}),
  }));
  const status = d.status === 'verified' ? 'verified' : d.status === 'failed' ? 'failed' : 'pending';
  return { providerDomainId: d.id, status, records };
}

/** By statusCode (null: no response) and the retry-after header (DESIGN §5). */
export function mapResendError(
  error: { statusCode?: number | null; name?: string },
  headers: Record<string, string> | null,
  timedOut = false,
): WorkerError {
  // Redirects are not followed (`redirect: 'manual'`); the SDK then reports the 3xx as an error
  // whose body it parsed, which may carry no status, but the answer's Location header is there.
  if (headers?.location !== undefined) return new WorkerError('provider_rejected', 'Resend answered with a redirect, which is not followed');
  const status = typeof error.statusCode === 'number' ? error.statusCode : null;
  // Resend answers a bad key with 400/401/403 and name "validation_error"/"missing_api_key"/"invalid_api_key".
  if (error.name === 'invalid_api_key' || error.name === 'missing_api_key' || error.name === 'restricted_api_key') {
    return new WorkerError('provider_auth_failed', `Resend rejected the API key (${error.name})`);
  }
  return errorFromHttpStatus('Resend', status, { timedOut, retryAfterSeconds: parseRetryAfter(headers?.['retry-after']) });
}
