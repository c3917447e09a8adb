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
