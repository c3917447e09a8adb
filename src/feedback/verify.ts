import { createHash, timingSafeEqual } from 'node:crypto';
import { firstHeader, type HeaderMap } from '../core/httpHeader';
import { WorkerError } from '../errors';
import type { WebhookProvider } from '../types';
import { PayloadError, normalisePostmark, normaliseResend, normaliseSendgrid, normaliseSes, type Normalised } from './normalize';

/**
 * Verifying a provider's webhook request with the provider's own scheme (DESIGN §9), before
 * anything in it is trusted. Every failure is `webhook_unauthorized` (401) with a reason for the
 * log that names no secret; a signed SNS message from a topic the tenant did not register is
 * `webhook_forbidden` (403).
 */

export interface WebhookRequest {
  headers: HeaderMap;
  body: Buffer;
}

/** What the tenant stored (db/feedback.ts WebhookVerifier). */
export interface VerificationMaterial {
  publicKey: string | null;
  signingSecret: string | null;
  topicArns: string[];
  basicUsername: string | null;
  basicPasswordSha256: Buffer | null;
}

export interface VerifyOptions {
  /** SendGrid's signed timestamp may be at most this old (or this far ahead). */
  maxAgeSeconds: number;
  /** Hosts an SNS signing certificate and SubscribeURL may be on. */
  snsHostPattern: RegExp;
  now?: () => number;
}

export type Verified =
  | { kind: 'events'; normalised: Normalised }
  /** An SNS SubscriptionConfirmation to be confirmed by visiting subscribeUrl. */
  | { kind: 'sns_subscribe'; subscribeUrl: string; topicArn: string }
  | { kind: 'nothing'; why: string };

export const unauthorized = (why: string) => new WorkerError('webhook_unauthorized', undefined, { detail: { message: why } });
const badPayload = (err: unknown) => new WorkerError('webhook_invalid_payload', err instanceof PayloadError ? err.message : 'the body is not valid JSON');

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badPayload(err);
  }
}

function normalising<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof PayloadError) throw badPayload(err);
    throw err;
  }
}

export async function verifyWebhook(provider: WebhookProvider, req: WebhookRequest, m: VerificationMaterial | null, opts: VerifyOptions): Promise<Verified> {
  if (!m) throw unauthorized('no webhook set up for this tenant and provider');
  switch (provider) {
    case 'sendgrid':
      return verifySendgrid(req, m, opts);
    case 'ses':
      return verifySns(req, m, opts);
    case 'postmark':
      return verifyPostmark(req, m);
    case 'resend':
      return verifyResend(req, m);
  }
}

function verifySendgrid(req: WebhookRequest, m: VerificationMaterial, opts: VerifyOptions): Verified {
  const signature = firstHeader(req.headers, 'x-twilio-email-event-webhook-signature');
  const timestamp = firstHeader(req.headers, 'x-twilio-email-event-webhook-timestamp');
  if (!m.publicKey) throw unauthorized('no SendGrid verification key stored');
  if (!signature || !timestamp) throw unauthorized('signature headers missing');
  if (!/^\d{1,12}$/.test(timestamp)) throw unauthorized('timestamp malformed');
  const age = (opts.now?.() ?? Date.now()) / 1000 - Number(timestamp);
  if (Math.abs(age) > opts.maxAgeSeconds) throw unauthorized('timestamp outside the allowed age');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { EventWebhook } = require('@sendgrid/eventwebhook') as typeof import('@sendgrid/eventwebhook');
  const ew = new EventWebhook();
  let ok = false;
  try {
    ok = ew.verifySignature(ew.convertPublicKeyToECDSA(m.publicKey), req.body, signature, timestamp);
  } catch {
    ok = false; // a malformed signature or key
  }
  if (!ok) throw unauthorized('signature does not verify');
  const body = parseJson(req.body);
  return { kind: 'events', normalised: normalising(() => normaliseSendgrid(body)) };
}

async function verifySns(req: WebhookRequest, m: VerificationMaterial, opts: VerifyOptions): Promise<Verified> {
  const message = parseJson(req.body);
  if (typeof message !== 'object' || message === null || Array.isArray(message)) throw badPayload(new PayloadError('an SNS message is a JSON object'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const MessageValidator = require('sns-validator') as new (hostPattern?: RegExp) => { validate(m: unknown, cb: (err: Error | null, msg?: Record<string, string>) => void): void };
  const validator = new MessageValidator(opts.snsHostPattern);
  const valid = await new Promise<Record<string, string>>((resolve, reject) => {
    validator.validate(message, (err, msg) => (err || !msg ? reject(unauthorized('SNS signature does not verify')) : resolve(msg)));
  });
  if (!m.topicArns.includes(valid.TopicArn ?? '')) {
    throw new WorkerError('webhook_forbidden', undefined, { detail: { message: "topic not registered by this tenant" } });
  }
  switch (valid.Type) {
    case 'SubscriptionConfirmation': {
      const url = valid.SubscribeURL ?? '';
      let host = '';
      try {
        const u = new URL(url);
        host = u.protocol === 'https:' ? u.host : '';
      } catch {
        host = '';
      }
      if (!opts.snsHostPattern.test(host)) throw unauthorized('SubscribeURL is not on an SNS host');
      return { kind: 'sns_subscribe', subscribeUrl: url, topicArn: valid.TopicArn! };
    }
    case 'Notification': {
      let inner: unknown;
      try {
        inner = JSON.parse(valid.Message ?? '');
      } catch (err) {
        throw badPayload(err);
      }
      return { kind: 'events', normalised: normalising(() => normaliseSes(inner, valid.MessageId ?? '')) };
    }
    default:
      return { kind: 'nothing', why: `SNS ${String(valid.Type)}` };
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

function verifyPostmark(req: WebhookRequest, m: VerificationMaterial): Verified {
  if (!m.basicUsername || !m.basicPasswordSha256) throw unauthorized('no Postmark credentials generated');
  const auth = firstHeader(req.headers, 'authorization') ?? '';
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(auth.trim());
  if (!match) throw unauthorized('basic auth missing');
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon < 0 ? decoded : decoded.slice(0, colon);
  const password = colon < 0 ? '' : decoded.slice(colon + 1);
  // Both compared in constant time over digests of equal length, and both always compared.
  const userOk = timingSafeEqual(sha256(user), sha256(m.basicUsername));
  const passwordOk = timingSafeEqual(sha256(password), m.basicPasswordSha256);
  if (!(userOk && passwordOk)) throw unauthorized('basic auth does not match');
  const body = parseJson(req.body);
  return { kind: 'events', normalised: normalising(() => normalisePostmark(body)) };
}

function verifyResend(req: WebhookRequest, m: VerificationMaterial): Verified {
  if (!m.signingSecret) throw unauthorized('no Resend signing secret stored');
  const id = firstHeader(req.headers, 'svix-id');
  const timestamp = firstHeader(req.headers, 'svix-timestamp');
  const signature = firstHeader(req.headers, 'svix-signature');
  if (!id || !timestamp || !signature) throw unauthorized('svix headers missing');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Webhook } = require('svix') as typeof import('svix');
  let payload: unknown;
  try {
    // Checks the HMAC over id.timestamp.body against every v1 signature given (rotation), and
    // that the timestamp is within 5 minutes.
    payload = new Webhook(m.signingSecret).verify(req.body.toString('utf8'), { 'svix-id': id, 'svix-timestamp': timestamp, 'svix-signature': signature });
  } catch {
    throw unauthorized('svix signature or timestamp does not verify');
  }
  return { kind: 'events', normalised: normalising(() => normaliseResend(payload, id)) };
}
