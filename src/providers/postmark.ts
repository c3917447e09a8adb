import { WorkerError } from '../errors';
import type { ProviderAccount } from '../types';
import { endpointOverride, errorFromHttpStatus, formatFrom, ranOutOfTime, stringSetting } from './common';
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
  const base = endpointOverride(account.settings, opts.allowEndpointOverride);
  const url = base ? new URL(base) : undefined;
  const client = new postmark.ServerClient(account.apiKey, {
    timeout: Math.max(1, Math.ceil(opts.timeoutMs / 1000)),
    ...(url ? { useHttps: url.protocol === 'https:', requestHost: url.host } : {}),
  });
  const stream = stringSetting(account.settings, 'message_stream');

  return {
    name: 'postmark',
    async send(email: OutgoingEmail) {
      const started = Date.now();
      try {
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
      } catch (err) {
        throw mapPostmarkError(err, ranOutOfTime(started, opts.timeoutMs * 1.05));
      }
    },
    async verify() {
      const started = Date.now();
      try {
        await client.getServer();
      } catch (err) {
        throw mapPostmarkError(err, ranOutOfTime(started, opts.timeoutMs * 1.05));
      }
    },
  };
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
