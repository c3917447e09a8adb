import { createHash } from 'node:crypto';
import type { WebhookProvider } from '../types';

/** The statuses a provider's webhook can give a delivery (DESIGN §9). */
export type DeliveryStatus = 'delivered' | 'deferred' | 'bounced' | 'complained' | 'unsubscribed' | 'dropped';

/**
 * One provider event, normalised. Field names are the ones email_apply_feedback (sql/functions.sql)
 * reads. No message content is kept: the provider's event type, and its reason (an SMTP
 * diagnostic), capped.
 */
export interface FeedbackEvent {
  /** The provider's own id for this event (remembered, so a resent event changes nothing). */
  id: string;
  /** The provider's message id, as the send stored it in the ledger. */
  message_id: string | null;
  recipient: string | null;
  status: DeliveryStatus;
  bounce_type: 'hard' | 'soft' | null;
  raw_type: string;
  reason: string | null;
  /** When it happened (ISO 8601), as the provider says. */
  at: string | null;
}

/** What a request carried: the events that change a status, and how many others (opens, clicks, sends) were ignored. */
export interface Normalised {
  events: FeedbackEvent[];
  ignored: number;
}

const REASON_MAX = 500;
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : null);
const reason = (v: unknown): string | null => str(v)?.slice(0, REASON_MAX) ?? null;
const obj = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const isoFromUnix = (v: unknown): string | null => (typeof v === 'number' && Number.isFinite(v) ? new Date(v * 1000).toISOString() : null);
const iso = (v: unknown): string | null => {
  const s = str(v);
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
};
/** An id for an event the provider gives none: a digest of what identifies it. */
const digestId = (...parts: (string | null)[]) => createHash('sha256').update(parts.map((p) => p ?? '').join('\0')).digest('base64url');

export class PayloadError extends Error {}

/**
 * SendGrid Event Webhook: a JSON array of events. `sg_message_id` is the X-Message-ID the send
 * answered (stored in the ledger) followed by ".filter…"; `sg_event_id` is the event's own id.
 * A `bounce` of type `blocked` is SendGrid's temporary refusal: a soft bounce.
 */
export function normaliseSendgrid(body: unknown): Normalised {
  if (!Array.isArray(body)) throw new PayloadError('a SendGrid Event Webhook body is a JSON array of events');
  const out: Normalised = { events: [], ignored: 0 };
  for (const raw of body) {
    const e = obj(raw);
    const type = str(e.event);
    const base = {
      id: str(e.sg_event_id) ?? digestId('sendgrid', type, str(e.sg_message_id), str(e.email), str(e.timestamp)),
      message_id: str(e.sg_message_id)?.split('.')[0] ?? null,
      recipient: str(e.email),
      raw_type: (type ?? 'unknown').slice(0, 100),
      reason: reason(e.reason ?? e.response),
      at: isoFromUnix(e.timestamp),
    };
    switch (type) {
      case 'delivered':
        out.events.push({ ...base, status: 'delivered', bounce_type: null });
        break;
      case 'deferred':
        out.events.push({ ...base, status: 'deferred', bounce_type: null });
        break;
      case 'bounce':
        out.events.push({ ...base, status: 'bounced', bounce_type: e.type === 'blocked' ? 'soft' : 'hard', raw_type: `bounce/${str(e.type) ?? 'bounce'}`.slice(0, 100) });
        break;
      case 'dropped':
        out.events.push({ ...base, status: 'dropped', bounce_type: null });
        break;
      case 'spamreport':
        out.events.push({ ...base, status: 'complained', bounce_type: null });
        break;
      case 'unsubscribe':
      case 'group_unsubscribe':
        out.events.push({ ...base, status: 'unsubscribed', bounce_type: null });
        break;
      default:
        out.ignored++;
    }
  }
  return out;
}

/**
 * An Amazon SES event (the `Message` of an SNS notification), from event publishing
 * (`eventType`) or from identity notifications (`notificationType`): one event per recipient.
 * A bounce because the address is on SES's own suppression list is SES dropping it.
 */
export function normaliseSes(message: unknown, snsMessageId: string): Normalised {
  const m = obj(message);
  const type = str(m.eventType) ?? str(m.notificationType);
  if (!type) throw new PayloadError('the SNS message is not an SES event (no eventType or notificationType)');
  const mail = obj(m.mail);
  const messageId = str(mail.messageId);
  const out: Normalised = { events: [], ignored: 0 };
  const each = (recipients: unknown[], make: (r: Record<string, unknown>, address: string | null) => Omit<FeedbackEvent, 'id' | 'message_id' | 'recipient'>) => {
    recipients.forEach((r, i) => {
      const rec = typeof r === 'string' ? { emailAddress: r } : obj(r);
      const address = str(rec.emailAddress);
      out.events.push({ id: `${snsMessageId}:${i}`, message_id: messageId, recipient: address, ...make(rec, address) });
    });
  };
  switch (type) {
    case 'Bounce': {
      const b = obj(m.bounce);
      const sub = str(b.bounceSubType) ?? '';
      const dropped = sub === 'OnAccountSuppressionList' || sub === 'Suppressed';
      const hard = str(b.bounceType) === 'Permanent';
      each(list(b.bouncedRecipients), (r) => ({
        status: dropped ? 'dropped' : 'bounced',
        bounce_type: dropped ? null : hard ? 'hard' : 'soft',
        raw_type: `Bounce/${str(b.bounceType) ?? ''}/${sub}`.slice(0, 100),
        reason: reason(r.diagnosticCode),
        at: iso(b.timestamp),
      }));
      break;
    }
    case 'Complaint': {
      const c = obj(m.complaint);
      each(list(c.complainedRecipients), () => ({ status: 'complained', bounce_type: null, raw_type: `Complaint/${str(c.complaintFeedbackType) ?? ''}`.slice(0, 100), reason: null, at: iso(c.timestamp) }));
      break;
    }
    case 'Delivery': {
      const d = obj(m.delivery);
      each(list(d.recipients), () => ({ status: 'delivered', bounce_type: null, raw_type: 'Delivery', reason: null, at: iso(d.timestamp) }));
      break;
    }
    case 'DeliveryDelay': {
      const d = obj(m.deliveryDelay);
      each(list(d.delayedRecipients), (r) => ({ status: 'deferred', bounce_type: null, raw_type: `DeliveryDelay/${str(d.delayType) ?? ''}`.slice(0, 100), reason: reason(r.diagnosticCode), at: iso(d.timestamp) }));
      break;
    }
    default:
      // Send, Reject (a virus: not the recipient's doing), Open, Click, Rendering Failure, Subscription.
      out.ignored++;
  }
  return out;
}

// Postmark bounce types (its API's `Type`): which are hard, which soft; the rest (auto-replies,
// address changes, challenge mails, DMARC reports of inbound mail) say nothing about delivery.
const POSTMARK_HARD = new Set(['HardBounce', 'BadEmailAddress', 'ManuallyDeactivated']);
const POSTMARK_SOFT = new Set(['SoftBounce', 'Transient', 'DnsError', 'Blocked', 'DMARCPolicy', 'SMTPApiError']);

/** Postmark: one JSON object per request, told apart by `RecordType`. */
export function normalisePostmark(body: unknown): Normalised {
  const e = obj(body);
  const type = str(e.RecordType);
  if (!type) throw new PayloadError('a Postmark webhook body is a JSON object with a RecordType');
  const messageId = str(e.MessageID);
  const none: Normalised = { events: [], ignored: 1 };
  const one = (ev: FeedbackEvent): Normalised => ({ events: [ev], ignored: 0 });
  switch (type) {
    case 'Delivery':
      return one({ id: digestId('postmark-delivery', messageId, str(e.Recipient)), message_id: messageId, recipient: str(e.Recipient), status: 'delivered', bounce_type: null, raw_type: 'Delivery', reason: null, at: iso(e.DeliveredAt) });
    case 'Bounce': {
      const t = str(e.Type) ?? '';
      const common = { id: `bounce:${str(e.ID) ?? digestId(messageId, str(e.Email), t)}`, message_id: messageId, recipient: str(e.Email), raw_type: `Bounce/${t}`.slice(0, 100), reason: reason(e.Description), at: iso(e.BouncedAt) };
      if (t === 'SpamComplaint' || t === 'SpamNotification') return one({ ...common, status: 'complained', bounce_type: null });
      if (t === 'Unsubscribe') return one({ ...common, status: 'unsubscribed', bounce_type: null });
      if (POSTMARK_HARD.has(t)) return one({ ...common, status: 'bounced', bounce_type: 'hard' });
      if (POSTMARK_SOFT.has(t)) return one({ ...common, status: 'bounced', bounce_type: 'soft' });
      return none;
    }
    case 'SpamComplaint':
      return one({ id: `complaint:${str(e.ID) ?? digestId(messageId, str(e.Email))}`, message_id: messageId, recipient: str(e.Email), status: 'complained', bounce_type: null, raw_type: 'SpamComplaint', reason: null, at: iso(e.BouncedAt) });
    case 'SubscriptionChange':
      // Postmark's own suppression list; bounces and complaints arrive as their own records, so
      // only a recipient's own unsubscribe is taken from here.
      if (e.SuppressSending === true && e.SuppressionReason === 'ManualSuppression') {
        return one({ id: digestId('postmark-subscription', messageId, str(e.Recipient), str(e.ChangedAt)), message_id: messageId, recipient: str(e.Recipient), status: 'unsubscribed', bounce_type: null, raw_type: 'SubscriptionChange/ManualSuppression', reason: null, at: iso(e.ChangedAt) });
      }
      return none;
    default:
      return none; // Open, Click, Inbound
  }
}

/** Resend (through Svix): one event per request; the Svix message id is the event's id. */
export function normaliseResend(body: unknown, svixId: string): Normalised {
  const e = obj(body);
  const type = str(e.type);
  if (!type) throw new PayloadError('a Resend webhook body is a JSON object with a type');
  const d = obj(e.data);
  const base = { id: svixId, message_id: str(d.email_id), recipient: str(list(d.to)[0]), raw_type: type.slice(0, 100), at: iso(e.created_at) ?? iso(d.created_at) };
  const one = (ev: Omit<FeedbackEvent, keyof typeof base>): Normalised => ({ events: [{ ...base, ...ev }], ignored: 0 });
  switch (type) {
    case 'email.delivered':
      return one({ status: 'delivered', bounce_type: null, reason: null });
    case 'email.delivery_delayed':
      return one({ status: 'deferred', bounce_type: null, reason: null });
    case 'email.bounced': {
      const b = obj(d.bounce);
      return { events: [{ ...base, raw_type: `email.bounced/${str(b.type) ?? ''}`.slice(0, 100), status: 'bounced', bounce_type: str(b.type) === 'Permanent' ? 'hard' : 'soft', reason: reason(b.message) }], ignored: 0 };
    }
    case 'email.complained':
      return one({ status: 'complained', bounce_type: null, reason: null });
    case 'email.suppressed':
      return one({ status: 'dropped', bounce_type: null, reason: reason(obj(d.suppressed).message) });
    default:
      return { events: [], ignored: 1 };
  }
}

export const WEBHOOK_PROVIDERS: readonly WebhookProvider[] = ['sendgrid', 'ses', 'postmark', 'resend'];
