import { z } from 'zod';
import type { IntakeEvent } from '../intake/cloudEventIntake';
import { taskOutput } from '../intake/eventData';
import type { OutgoingEmail } from '../providers/types';
import { renderMarkdown } from './markdown';

/**
 * Output larger than this is cut, with a note (OUTPUT_MAX_CHARS): text and HTML parts together
 * stay far under every provider's message limit (Postmark 10 MB, SES 40 MB, SendGrid 30 MB).
 */
export const MAX_OUTPUT_CHARS = 100 * 1024;
const MAX_PROMPT_CHARS = 10 * 1024;

export interface Sender {
  fromEmail: string;
  fromName: string | null;
  replyToDomain: string | null;
}

const address = z.email();

/** `reply+{task_id}@{domain}` by default: replies route back to the task. */
export function replyToAddress(pattern: string, taskId: string, domain: string | null): string | null {
  if (!domain) return null;
  const candidate = pattern.replace(/\{task_id\}/g, taskId).replace(/\{domain\}/g, domain);
  // A task id with characters an address cannot carry gives no Reply-To rather than a broken one.
  return !/[\s\r\n\0,;<>"]/.test(candidate) && address.safeParse(candidate).success ? candidate : null;
}

/** One header line's worth of text: no CR/LF or other control characters, bounded length. */
export function headerSafe(v: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  const flat = v.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function escapeHtml(v: string): string {
  return v.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function cap(v: string, max: number): { text: string; truncated: boolean } {
  return v.length > max ? { text: v.slice(0, max), truncated: true } : { text: v, truncated: false };
}

export function composeTaskEmail(args: {
  event: IntakeEvent;
  tenantId: string;
  recipient: string;
  sender: Sender;
  replyToPattern: string;
  maxOutputChars?: number;
}): OutgoingEmail {
  const { event, sender } = args;
  const d = event.data;
  const maxOutput = args.maxOutputChars ?? MAX_OUTPUT_CHARS;
  const prompt = cap(d.prompt ?? '', MAX_PROMPT_CHARS);
  const output = cap(taskOutput(d) ?? '', maxOutput);
  const status = d.status ? headerSafe(d.status, 40) : 'completed';
  const firstLine = headerSafe(prompt.text.split('\n', 1)[0] ?? '', 80);
  const subject = headerSafe(firstLine ? `Task ${status}: ${firstLine}` : `Task ${d.task_id} ${status}`, 150);

  const facts: Array<[string, string]> = [['Task', d.task_id]];
  if (d.session_id) facts.push(['Session', d.session_id]);
  if (d.agent) facts.push(['Agent', d.agent]);
  if (d.model) facts.push(['Model', d.model]);
  facts.push(['Status', status]);
  const truncNote = `[output truncated at ${Math.round(maxOutput / 1024)} KB]`;

  const text = [
    `Your task ${status}.`,
    '',
    ...facts.map(([k, v]) => `${k}: ${v}`),
    '',
    ...(prompt.text ? ['Prompt:', prompt.text + (prompt.truncated ? '\n[prompt truncated]' : ''), ''] : []),
    ...(output.text ? ['Output:', output.text + (output.truncated ? `\n${truncNote}` : ''), ''] : ['No output was recorded.', '']),
  ].join('\n');

  const pre = 'style="white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;background:#f6f8fa;padding:12px;border-radius:6px"';
  const html = [
    '<!doctype html><html><body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328">',
    `<h2 style="margin:0 0 12px">Your task ${escapeHtml(status)}</h2>`,
    '<table style="border-collapse:collapse;margin-bottom:16px">',
    ...facts.map(([k, v]) => `<tr><td style="padding:2px 12px 2px 0;color:#59636e">${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`),
    '</table>',
    ...(prompt.text ? ['<h3>Prompt</h3>', `<pre ${pre}>${escapeHtml(prompt.text)}${prompt.truncated ? '\n[prompt truncated]' : ''}</pre>`] : []),
    ...(output.text
      ? ['<h3>Output</h3>', `<div>${renderMarkdown(output.text)}</div>`, ...(output.truncated ? [`<p><em>${escapeHtml(truncNote)}</em></p>`] : [])]
      : ['<p>No output was recorded.</p>']),
    '</body></html>',
  ].join('\n');

  return {
    from: { email: sender.fromEmail, name: sender.fromName ? headerSafe(sender.fromName, 100) : null },
    to: args.recipient,
    replyTo: replyToAddress(args.replyToPattern, d.task_id, sender.replyToDomain),
    subject,
    text,
    html,
    headers: { 'X-Tenant-ID': args.tenantId, 'X-Event-ID': headerSafe(event.id, 200) },
    tags: { tenantId: args.tenantId, eventId: event.id },
    idempotencyKey: `${args.tenantId}/${event.source}/${event.id}`,
  };
}
