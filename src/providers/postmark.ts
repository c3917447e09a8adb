import { WorkerError } from '../errors';
import type { ProviderAccount, DomainState } from '../types';
import { endpointFor, errorFromHttpStatus, formatFrom, pinnedDispatcher, stringSetting, timedCall } from './common';
import type { EmailProvider, OutgoingEmail, ProviderOptions } from './types';

type PostmarkModule = typeof import('postmark');

/**
 * Postmark through the `postmark` ServerClient. The stored api_key is the server token;
 * `message_stream` picks the stream (default "outbound").
 */
export function createPostmarkProvider(account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  if (!account.apiKey) throw new WorkerError('provider_auth_failed', 'Postmark needs a server token');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const postmark = require('postmark') as PostmarkModule;
  const endpoint = endpointFor(account, opts);
  const url = endpoint ? new URL(endpoint.url) : undefined;
  // A tenant's endpoint: every connection goes to an address the egress policy checked.
  const dispatcher = endpoint?.lookup ? pinnedDispatcher(endpoint.lookup) : undefined;
  const clientOptions = {
    timeout: Math.max(1, Math.ceil(opts.timeoutMs / 1000)),
    ...(url ? { useHttps: url.protocol === 'https:', requestHost: url.host } : {}),
    // Redirects are not followed: a 3xx is an error by its status. Following one would reach a
    // host the egress check (src/net/egress.ts) never saw. The SDK takes a fetch of our own; the
    // dispatcher goes to fetch() as Resend's does (resend.ts).
    fetch: (input: string | URL | Request, init?: RequestInit) => fetch(input, { ...init, redirect: 'manual', ...(dispatcher ? { dispatcher } : {}) } as RequestInit),
  };
  const client = new postmark.ServerClient(account.apiKey, clientOptions);
  const stream = stringSetting(account.settings, 'message_stream');

  const call = timedCall(opts.timeoutMs, mapPostmarkError);

  return {
    name: 'postmark',
    async close() {
      await dispatcher?.close();
    },
    send: (email: OutgoingEmail) =>
      call(async () => {
        const out = await client.sendEmail({
          From: formatFrom(email.from),
          To: email.to,
          ...(email.replyTo ? { ReplyTo: email.replyTo } : {}),
          Subject: email.subject,
          TextBody: email.text,
          HtmlBody: email.html,
          Headers: Object.entries(email.headers).map(([Name, Value]) => ({ Name, Value })),
          Tag: 'tenant-email-worker',
          Metadata: { tenant_id: email.tags.tenantId, event_id: email.tags.eventId },
          ...(stream ? { MessageStream: stream } : {}),
        });
        return { messageId: out.MessageID ?? null };
      }),
    verify: () =>
      call(async () => {
        await client.getServer();
      }),
    webhooks() {
      return {
        // A server webhook with the worker's basic-auth credentials (Postmark signs nothing).
        async register(url, { existingId, basicAuth }) {
          const body = {
            Url: url,
            ...(basicAuth ? { HttpAuth: { Username: basicAuth.username, Password: basicAuth.password } } : {}),
            Triggers: {
              Delivery: { Enabled: true },
              Bounce: { Enabled: true, IncludeContent: false },
              SpamComplaint: { Enabled: true, IncludeContent: false },
              SubscriptionChange: { Enabled: true },
              Open: { Enabled: false },
              Click: { Enabled: false },
            },
          };
          const hook = await call(() =>
            existingId && /^\d+$/.test(existingId) ? client.editWebhook(Number(existingId), body) : client.createWebhook({ ...body, ...(stream ? { MessageStream: stream } : {}) }),
          );
          return { providerWebhookId: String(hook.ID), events: ['Delivery', 'Bounce', 'SpamComplaint', 'SubscriptionChange'] };
        },
      };
    },
    domains({ accountToken }) {
      // Domains belong to the Postmark account, not the server: they need the account token.
      if (!accountToken) throw new WorkerError('account_token_required');
      const account = new postmark.AccountClient(accountToken, clientOptions);
      return {
        async register(domain) {
          const list = await call(() => account.getDomains({ count: 500, offset: 0 }));
          const existing = list.Domains.find((d) => d.Name.toLowerCase() === domain);
          const details = existing
            ? await call(() => account.getDomain(existing.ID))
            : await call(() => account.createDomain({ Name: domain, ReturnPathDomain: `pm-bounces.${domain}` }));
          return postmarkDomainState(details);
        },
        async check(_domain, id) {
          await call(() => account.verifyDomainReturnPath(Number(id)));
          return postmarkDomainState(await call(() => account.verifyDomainDKIM(Number(id))));
        },
      };
    },
  };
}

/** Postmark sends from a domain once its DKIM record is verified; the Return-Path CNAME is recommended. */
function postmarkDomainState(d: {
  ID: number;
  DKIMVerified: boolean;
  DKIMHost: string;
  DKIMTextValue: string;
  DKIMPendingHost: string;
  DKIMPendingTextValue: string;
  ReturnPathDomain: string;
  ReturnPathDomainCNAMEValue: string;
  ReturnPathDomainVerified: boolean;
}): DomainState {
  const records = [
    {
      type: 'TXT',
      name: d.DKIMPendingHost || d.DKIMHost,
      value: d.DKIMPendingTextValue || d.DKIMTextValue,
      status: d.DKIMVerified ? 'verified' : 'pending',
    },
    ...(d.ReturnPathDomain
      ? [{ type: 'CNAME', name: d.ReturnPathDomain, value: d.ReturnPathDomainCNAMEValue, status: d.ReturnPathDomainVerified ? 'verified' : 'pending' }]
      : []),
  ].filter((r) => r.name && r.value);
  return { providerDomainId: String(d.ID), status: d.DKIMVerified ? 'verified' : 'pending', records };
}

// Postmark API ErrorCodes (https://postmarkapp.com/developer/api/overview#error-codes).
const AUTH_CODES = new Set([10]);
// The account or sender is the problem: another provider account may succeed.
const ACCOUNT_CODES = new Set([400, 401, 405, 412, 413]);
// Recipient or content: would fail the same way anywhere.
const MESSAGE_CODES = new Set([300, 406, 402, 403, 409, 411]);

/** By HTTP status and Postmark's ErrorCode, never the message (DESIGN §5). */
export function mapPostmarkError(err: unknown, timedOut = false): WorkerError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { statusCode?: unknown; code?: unknown };
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const code = typeof e.code === 'number' ? e.code : 0;
  if (AUTH_CODES.has(code)) return new WorkerError('provider_auth_failed', 'Postmark rejected the server token (ErrorCode 10)');
  if (code === 100) return new WorkerError('provider_unavailable', 'Postmark is in maintenance (ErrorCode 100)');
  if (ACCOUNT_CODES.has(code)) return new WorkerError('provider_forbidden', `Postmark refused to send for this sender or account (ErrorCode ${code})`);
  if (MESSAGE_CODES.has(code)) return new WorkerError('provider_rejected', `Postmark rejected the message (ErrorCode ${code})`);
  return errorFromHttpStatus('Postmark', status, { timedOut });
}
