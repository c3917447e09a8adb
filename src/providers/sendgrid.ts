import type { ClientRequest } from '@sendgrid/client/src/request';
import type { ClientResponse } from '@sendgrid/client/src/response';
import type { MailDataRequired } from '@sendgrid/helpers/classes/mail';
import { WorkerError } from '../errors';
import type { ProviderAccount } from '../types';
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
  const baseUrl = opts.allowEndpointOverride ? stringSetting(account, 'base_url') : undefined;
  if (baseUrl) client.setDefaultRequest('baseUrl', baseUrl);
  client.setDefaultRequest('timeout', opts.timeoutMs);
  const mail = new MailService();
  mail.setClient(client);

  return {
    name: 'sendgrid',
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
  };
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

function stringSetting(account: ProviderAccount, key: string): string | undefined {
  const v = account.settings[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
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
  const status = typeof e.code === 'number' ? e.code : undefined;
  if (status === undefined) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') return new WorkerError('provider_timeout', 'SendGrid did not answer in time');
    return new WorkerError('provider_network', `SendGrid could not be reached${code ? ` (${code})` : ''}`);
  }
  switch (status) {
    case 400:
      return new WorkerError('provider_rejected', 'SendGrid rejected the message (400)');
    case 401:
      return new WorkerError('provider_auth_failed', 'SendGrid rejected the API key (401)');
    case 403:
      return new WorkerError('provider_forbidden', 'SendGrid refused the request for this account (403)');
    case 413:
      return new WorkerError('provider_payload_too_large', 'SendGrid rejected the message as too large (413)');
    case 429: {
      const reset = Number(e.response?.headers?.['x-ratelimit-reset']);
      const retryAfterSeconds = Number.isFinite(reset) && reset > 0 ? Math.max(1, Math.ceil(reset - now() / 1000)) : undefined;
      return new WorkerError('provider_rate_limited', 'SendGrid rate limit reached (429)', { retryAfterSeconds });
    }
    default:
      if (status >= 500) return new WorkerError('provider_unavailable', `SendGrid server error (${status})`);
      // Any other 4xx: the request is wrong for this account; a retry would be the same request.
      return new WorkerError('provider_rejected', `SendGrid rejected the request (${status})`);
  }
}
