import type { FieldIssue } from '../errors';
import { eventDataSchema, type IntakeEvent } from '../core/event';
import { buildTemplateView } from './compose';
import { builtinTemplate, compileTemplate, renderTemplate, type RenderedContent } from './templates';
import type { TemplateSource } from '../types';
import { checkTemplate } from './templateCheck';

/** What a preview renders when it is given no data: a finished task with Markdown output. */
export const SAMPLE_EVENT_DATA = {
  task_id: 'task-preview-0001',
  status: 'completed',
  prompt: 'Summarise the open support tickets and draft replies for the urgent ones',
  output: [
    '## Summary',
    '',
    '- **12** open tickets, **3** urgent',
    '- Oldest: 4 days ([queue](https://example.com/tickets))',
    '',
    '```',
    'drafts/urgent-1.md  drafts/urgent-2.md  drafts/urgent-3.md',
    '```',
  ].join('\n'),
};

export interface PreviewRequest {
  tenantId: string;
  eventType: string;
  /** A template to try; without it, the tenant's saved one (or the built-in). */
  template?: TemplateSource;
  /** Event data as the broker would deliver it; without it, SAMPLE_EVENT_DATA. */
  data?: unknown;
  outputMaxChars: number;
  /** The tenant's saved template for the event type (the caller reads it under RLS); used when `template` is not given. */
  loadSaved: () => Promise<(TemplateSource & { version: number }) | null>;
}

export type PreviewResult =
  | { ok: true; template: 'body' | 'tenant' | 'builtin'; version: number | null; content: RenderedContent }
  | { ok: false; issues: FieldIssue[] };

/**
 * Render a template exactly as the worker would for an event, without sending. The admin API's
 * preview and `tenant-email templates preview` share it. Throws `template_render_failed` when a
 * template compiles but fails on the data (where the worker would fall back to the built-in).
 */
export async function renderPreview(req: PreviewRequest): Promise<PreviewResult> {
  const data = eventDataSchema.safeParse(req.data ?? SAMPLE_EVENT_DATA);
  if (!data.success) {
    return { ok: false, issues: data.error.issues.map((i) => ({ path: `data.${i.path.map(String).join('.')}`.replace(/\.$/, ''), message: i.message })) };
  }
  let source: 'body' | 'tenant' | 'builtin' = 'builtin';
  let version: number | null = null;
  let compiled = builtinTemplate();
  if (req.template) {
    const issues = checkTemplate(req.template);
    if (issues.length > 0) return { ok: false, issues };
    compiled = compileTemplate(req.template);
    source = 'body';
  } else {
    const saved = await req.loadSaved();
    if (saved) {
      compiled = compileTemplate(saved);
      version = saved.version;
      source = 'tenant';
    }
  }
  const event: IntakeEvent = {
    id: 'preview', source: '/tenant-email/preview', type: req.eventType, tenantId: req.tenantId, traceparent: null, mode: 'binary', recipient: null, data: data.data,
  };
  // A template that fails on this data throws template_render_failed (the worker would send the built-in).
  return { ok: true, template: source, version, content: renderTemplate(compiled, buildTemplateView(event, req.tenantId, req.outputMaxChars)) };
}
