import { connect, type Socket } from 'node:net';
import { WorkerError } from '../errors';
import { refusalReason } from '../net/egress';
import type { ProviderAccount } from '../types';
import { stringSetting } from './common';
import type { EmailProvider, OutgoingEmail, ProviderOptions } from './types';

type NodemailerModule = typeof import('nodemailer');

/** When an SMTP server defers (4xx) without saying for how long: one minute, as greylisting expects. */
export const SMTP_DEFER_SECONDS = 60;

/**
 * SMTP through nodemailer, one pooled transport per tenant credential (closed when the client
 * cache evicts it). Settings: `host`, `port` (587), `secure` (implicit TLS, port 465),
 * `username` (the stored api_key is the password), `require_tls` (STARTTLS required; default
 * true so the password never crosses the network in clear).
 */
export function createSmtpProvider(account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodemailer = require('nodemailer') as NodemailerModule;
  const host = stringSetting(account.settings, 'host');
  if (!host) throw new WorkerError('provider_rejected', 'SMTP settings need a host');
  const port = typeof account.settings.port === 'number' ? account.settings.port : 587;
  const secure = account.settings.secure === true;
  const username = stringSetting(account.settings, 'username');
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: 2,
    maxMessages: 100,
    host,
    port,
    secure,
    requireTLS: !secure && account.settings.require_tls !== false,
    ignoreTLS: !secure && account.settings.require_tls === false,
    ...(username ? { auth: { user: username, pass: account.apiKey ?? '' } } : {}),
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    // Every connection resolves the host through the egress policy and connects to the address it
    // checked, so a host name that re-resolves to an internal address is refused then too.
    getSocket: (_o: unknown, callback: (err: Error | null, socketOptions?: { connection: Socket }) => void) => {
      opts.egress.check(host).then((addresses) => {
        // TLS (implicit or STARTTLS) still verifies the certificate against `host`, the name.
        const socket = connect({ host: addresses[0] as string, port });
        const fail = (err: Error) => {
          socket.destroy();
          callback(err);
        };
        socket.setTimeout(opts.timeoutMs, () => fail(Object.assign(new Error('connection timed out'), { code: 'ETIMEDOUT' })));
        socket.once('error', fail);
        socket.once('connect', () => {
          socket.removeListener('error', fail);
          socket.setTimeout(0);
          callback(null, { connection: socket });
        });
      }, (err: Error) => callback(err));
    },
    // No protocol logging: nodemailer's logger would print the AUTH exchange.
    logger: false,
    debug: false,
  });

  return {
    name: 'smtp',
    async send(email: OutgoingEmail) {
      try {
        const info = await transport.sendMail({
          from: email.from.name ? { name: email.from.name, address: email.from.email } : email.from.email,
          to: email.to,
          ...(email.replyTo ? { replyTo: email.replyTo } : {}),
          subject: email.subject,
          text: email.text,
          html: email.html,
          // List-Unsubscribe stays on one line (prepared: not folded), as DKIM signs it and
          // mailbox providers parse it (a folded one broke DKIM in nodemailer #1654).
          headers: Object.fromEntries(Object.entries(email.headers).map(([k, v]) => [k, k.toLowerCase() === 'list-unsubscribe' ? { prepared: true, value: v } : v])),
          // Stable per delivery: a resend after a crash has the same Message-ID.
          messageId: email.reference,
        });
        return { messageId: typeof info.messageId === 'string' ? info.messageId : null };
      } catch (err) {
        throw mapSmtpError(err);
      }
    },
    async verify() {
      try {
        await transport.verify();
      } catch (err) {
        throw mapSmtpError(err);
      }
    },
    async close() {
      transport.close();
    },
  };
}

/** By nodemailer's error code and the SMTP reply code, never the reply text (DESIGN §5). */
export function mapSmtpError(err: unknown): WorkerError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; responseCode?: unknown };
  const refusal = refusalReason(err);
  if (refusal) {
    return refusal === 'internal' ? (err as WorkerError) : new WorkerError('provider_network', `the SMTP server could not be reached (${(err as WorkerError).message})`);
  }
  const code = typeof e.code === 'string' ? e.code : '';
  const reply = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  if (code === 'EAUTH' || reply === 535 || reply === 534 || reply === 530) {
    return new WorkerError('provider_auth_failed', `the SMTP server rejected the credentials${reply ? ` (${reply})` : ''}`);
  }
  if (code === 'ETIMEDOUT') return new WorkerError('provider_timeout', 'the SMTP server did not answer in time');
  if (reply !== undefined && reply >= 400 && reply < 500) {
    return new WorkerError('provider_deferred', `the SMTP server deferred the message (${reply})`, { retryAfterSeconds: SMTP_DEFER_SECONDS });
  }
  if (reply !== undefined && reply >= 500) {
    return new WorkerError('provider_rejected', `the SMTP server rejected the message (${reply})`);
  }
  // The server cannot do the TLS this account requires: the account's setup, not the message.
  if (code === 'ETLS') return new WorkerError('provider_forbidden', 'the SMTP server does not offer the TLS this account requires');
  if (code === 'EENVELOPE' || code === 'EMESSAGE') return new WorkerError('provider_rejected', `the SMTP server refused the message (${code})`);
  return new WorkerError('provider_network', `the SMTP server could not be reached${code ? ` (${code})` : ''}`);
}
