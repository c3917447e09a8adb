import { buildTemplateView, composeEmail } from '../../src/email/compose';
import type { SenderChoice } from '../../src/email/sender';
import { renderWithFallback, type CompiledTemplate } from '../../src/email/templates';
import { parseCloudEvent } from '../../src/intake/cloudEventIntake';
import type { OutgoingEmail } from '../../src/providers/types';
import { binaryEvent } from './events';

/** The email the worker would send for this data, through the real view, template and compose code. */
export function composeForTest(
  data: Record<string, unknown>,
  opts: {
    tenant?: string;
    id?: string;
    sender?: Partial<SenderChoice>;
    template?: CompiledTemplate | null;
    maxOutputChars?: number;
    replyToPattern?: string;
    replyToDomain?: string | null;
    listUnsubscribe?: string | null;
    extraHeaders?: Record<string, string>;
  } = {},
): OutgoingEmail {
  const tenant = opts.tenant ?? 'acme';
  const event = parseCloudEvent(
    { headers: binaryEvent({ tenant, data, id: opts.id ?? 'evt-9' }).headers, body: Buffer.from(JSON.stringify(data)) },
    { eventTypes: ['codetether.task.created'] },
  );
  const { content } = renderWithFallback(opts.template ?? null, buildTemplateView(event, tenant, opts.maxOutputChars));
  return composeEmail({
    event,
    tenantId: tenant,
    recipient: 'a@b.example',
    content,
    sender: { email: 'noreply@acme.example', name: null, tier: 'custom', note: null, ...opts.sender },
    replyToPattern: opts.replyToPattern ?? 'reply+{task_id}@{domain}',
    replyToDomain: opts.replyToDomain ?? null,
    listUnsubscribe: opts.listUnsubscribe ?? null,
    extraHeaders: opts.extraHeaders ?? {},
  });
}

/** A minimal email for provider-level tests, which need something to send and nothing more. */
export function plainEmail(overrides: Partial<OutgoingEmail> = {}): OutgoingEmail {
  return {
    from: { email: 'noreply@example.com', name: null },
    to: 'owner@customer.example',
    replyTo: null,
    subject: 'done',
    text: 'done',
    html: '<p>done</p>',
    headers: { 'X-Tenant-ID': 'acme' },
    reference: '<ref@example.com>',
    tags: { tenantId: 'acme', eventId: 'e1' },
    idempotencyKey: 'k1',
    ...overrides,
  };
}
