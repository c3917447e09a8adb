import { createHash } from 'node:crypto';
import { taskOutput, type IntakeEvent } from '../core/event';
import type { OutgoingEmail } from '../providers/types';
import { GLOBAL_TENANT, RESERVED_HEADERS } from '../types';
import { renderMarkdown } from './markdown';
import { domainOf, type SenderChoice } from './sender';
import { headerSafe, type RenderedContent } from './templates';
import { isEmailAddress } from '../core/emailAddress';

export { headerSafe };

/**
 * Output larger than this is cut, with a note (OUTPUT_MAX_CHARS): text and HTML parts together
 * stay far under every provider's message limit (Postmark 10 MB, SES 40 MB, SendGrid 30 MB).
 */
export const MAX_OUTPUT_CHARS = 100 * 1024;
const MAX_PROMPT_CHARS = 10 * 1024;

/** `reply+{task_id}@{domain}` by default: replies route back to the task. */
export function replyToAddress(pattern: string, taskId: string, domain: string | null): string | null {
  if (!domain) return null;
  const candidate = pattern.replace(/\{task_id\}/g, taskId).replace(/\{domain\}/g, domain);
  // A task id with characters an address cannot carry gives no Reply-To rather than a broken one.
  return !/[\s\r\n\0,;<>"]/.test(candidate) && isEmailAddress(candidate) ? candidate : null;
}

export function escapeHtml(v: string): string {
  return v.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function cap(v: string, max: number): { text: string; truncated: boolean } {
  return v.length > max ? { text: v.slice(0, max), truncated: true } : { text: v, truncated: false };
}

/**
 * What a template sees: every field of the event's data by name (unknown ones too), with these
 * set by the worker: `tenant_id` (the resolved tenant), `status` (default "completed"),
 * `prompt` and `output` (capped), `prompt_summary` (the prompt's first line, one header line),
 * `output_html` (the output's Markdown rendered and sanitized), `output_truncated`,
 * `prompt_truncated`, `truncation_note`, and `event` ({id, source, type}).
 */
export interface TemplateView extends Record<string, unknown> {
  tenant_id: string | null;
  task_id: string;
  status: string;
  prompt: string;
  prompt_summary: string;
  prompt_truncated: boolean;
  output: string;
  output_html: string;
  output_truncated: boolean;
  truncation_note: string;
  event: { id: string; source: string; type: string };
}

export function buildTemplateView(event: IntakeEvent, tenantId: string, maxOutputChars = MAX_OUTPUT_CHARS): TemplateView {
  const d = event.data;
  const prompt = cap(d.prompt ?? '', MAX_PROMPT_CHARS);
  const output = cap(taskOutput(d) ?? '', maxOutputChars);
  return {
    ...d,
    tenant_id: tenantId === GLOBAL_TENANT ? null : tenantId,
    task_id: d.task_id,
    status: d.status ? headerSafe(d.status, 40) : 'completed',
    prompt: prompt.text,
    prompt_summary: headerSafe(prompt.text.split('\n', 1)[0] ?? '', 80),
    prompt_truncated: prompt.truncated,
    output: output.text,
    output_html: output.text ? renderMarkdown(output.text) : '',
    output_truncated: output.truncated,
    truncation_note: `[output truncated at ${Math.round(maxOutputChars / 1024)} KB]`,
    event: { id: event.id, source: event.source, type: event.type },
  };
}

/**
 * The key that names one delivery to a provider (Resend's Idempotency-Key; hashed, the
 * X-Entity-Ref-ID and SMTP Message-ID), derived from (tenant, source, id) without ambiguity.
 *
 * The first form, `tenant/source/id`, is kept wherever it is unambiguous, so an event sent
 * before this derivation existed keeps its key on a redelivery: a tenant id never holds `/`, so
 * when the id holds none either, the first and last `/` split the three apart. (Before, source
 * `/svc` with id `a/b` and source `/svc/a` with id `b` shared a key, and Resend refused the
 * second event as a reused key.) An id with a `/`, or a key past Resend's 256 characters,
 * gets `tew2:` and a SHA-256 of the length-delimited triple instead: no `/` in it, so it never
 * equals a first-form key.
 */
export function deliveryKey(tenantId: string, source: string, id: string): string {
  const plain = `${tenantId}/${source}/${id}`;
  if (!id.includes('/') && plain.length <= 256) return plain;
  return `tew2:${createHash('sha256').update(JSON.stringify([tenantId, source, id])).digest('hex')}`;
}

export function eventReference(idempotencyKey: string, fromEmail: string): string {
  return `<${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32)}@${domainOf(fromEmail)}>`;
}

export interface ComposeInput {
  event: IntakeEvent;
  tenantId: string;
  recipient: string;
  content: RenderedContent;
  sender: SenderChoice;
  replyToPattern: string;
  replyToDomain: string | null;
  listUnsubscribe: string | null;
  extraHeaders: Readonly<Record<string, string>>;
}

/** The email as every provider receives it, for one sender choice. */
export function composeEmail(c: ComposeInput): OutgoingEmail {
  const idempotencyKey = deliveryKey(c.tenantId, c.event.source, c.event.id);
  const reference = eventReference(idempotencyKey, c.sender.email);
  const headers: Record<string, string> = {};
  // Tenant headers first, so ours cannot be overridden even if validation were bypassed.
  for (const [k, v] of Object.entries(c.extraHeaders)) {
    if (!RESERVED_HEADERS.includes(k.toLowerCase())) headers[k] = headerSafe(v, 200);
  }
  headers['X-Tenant-ID'] = c.tenantId;
  headers['X-Event-ID'] = headerSafe(c.event.id, 200);
  headers['X-Entity-Ref-ID'] = reference;
  if (c.listUnsubscribe) {
    headers['List-Unsubscribe'] = `<${c.listUnsubscribe}>`;
    // RFC 8058 one-click unsubscribe: only meaningful for an https target.
    if (/^https:/i.test(c.listUnsubscribe)) headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }
  return {
    from: { email: c.sender.email, name: c.sender.name ? headerSafe(c.sender.name, 100) : null },
    to: c.recipient,
    replyTo: replyToAddress(c.replyToPattern, c.event.data.task_id, c.replyToDomain),
    subject: c.content.subject,
    text: c.content.text,
    html: c.content.html,
    headers,
    reference,
    tags: { tenantId: c.tenantId, eventId: c.event.id },
    idempotencyKey,
  };
}
