import { createHash } from 'node:crypto';
import type { EventOutcome } from './processEvent';
import type { IntakeEvent } from '../core/event';

export const REPLY_SENT = 'codetether.email.sent';
export const REPLY_SKIPPED = 'codetether.email.skipped';

export interface ReplyMessage {
  headers: Record<string, string>;
  body: string;
}

/**
 * The reply CloudEvent a 202 carries when REPLY_EVENTS=true: the broker publishes it, so the
 * platform can react to "email sent" or "email skipped" through its own Triggers.
 *
 * - Only sent and skipped get a reply. A duplicate answers with an empty 202: the first delivery
 *   already replied, and a second reply would be a second "sent" for one email.
 * - The id is derived from the original event, so if a reply is ever published twice a consumer
 *   can drop the copy by (source, id).
 * - The data names the tenant, task, provider and message id, never the recipient address.
 */
export function buildReply(event: IntakeEvent, outcome: EventOutcome, source: string): ReplyMessage | null {
  if (outcome.kind === 'duplicate') return null;
  const type = outcome.kind === 'sent' ? REPLY_SENT : REPLY_SKIPPED;
  const id = createHash('sha256').update(`${type}\0${event.tenantId ?? ''}\0${event.source}\0${event.id}`).digest('hex').slice(0, 32);
  const common = {
    tenant_id: event.tenantId,
    task_id: event.data.task_id,
    event_id: event.id,
    event_source: event.source,
    event_type: event.type,
  };
  const data =
    outcome.kind === 'sent'
      ? {
          ...common,
          provider: outcome.provider,
          message_id: outcome.messageId,
          fallback_used: outcome.fallbackUsed,
          template_source: outcome.template,
          sender_tier: outcome.senderTier,
        }
      : { ...common, reason: outcome.reason, ...(outcome.suppression ? { suppression_reason: outcome.suppression } : {}) };
  // Loaded on the first reply, so workers without REPLY_EVENTS never load it for this.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { CloudEvent, HTTP } = require('cloudevents') as typeof import('cloudevents');
  const ce = new CloudEvent({
    specversion: '1.0',
    id,
    source,
    type,
    subject: event.data.task_id,
    datacontenttype: 'application/json',
    time: new Date().toISOString(),
    data,
    ...(event.tenantId !== null ? { tenant: event.tenantId } : {}),
  });
  const message = HTTP.binary(ce);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers)) if (typeof v === 'string') headers[k] = v;
  return { headers, body: typeof message.body === 'string' ? message.body : JSON.stringify(data) };
}
