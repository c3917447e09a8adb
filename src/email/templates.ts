import { LRUCache } from 'lru-cache';
import { DEFAULT_TEMPLATE } from './defaultTemplate';
import { renderBudget } from './renderBudget';
import { TEMPLATE_PARTS, type TemplatePart, type TemplateSource, type TemplateUse } from '../types';
import { WorkerError, isWorkerError } from '../errors';
import { compileOptions, handlebars } from './handlebarsEnv';
import { checkTemplate, type TemplateIssue } from './templateCheck';

/**
 * Tenant templates (Handlebars). A tenant may override the subject, HTML and text parts of an
 * event type, each on its own; a part it leaves out comes from the built-in template.
 *
 * Tenant templates are untrusted input to a shared process, so they are compiled in their own
 * Handlebars environment with only known helpers (`if`, `unless`, `each`, `with`, `lookup`, and
 * ours: `eq`, `default`, `date`), no `log`, no partials or decorators, no unescaped insertion in
 * HTML but `{{{output_html}}}` (sanitized by us), `#each` at most one level
 * deep (nested loops over event data would let one tenant's template burn the worker's CPU),
 * and Handlebars' prototype-access protection left on. Everything is checked when a template is
 * saved, so a broken one is rejected with its line and reason rather than found at send time.
 */

/** A rendered part larger than this is a render failure: every provider accepts 2 × 4 MB. */
export const RENDERED_MAX_CHARS = 4 * 1024 * 1024;
type Render = (view: unknown) => string;
export interface CompiledTemplate {
  readonly subject: Render;
  readonly html: Render;
  readonly text: Render;
  /** The parts that are the tenant's own (the rest are the built-in's). */
  readonly tenantParts: readonly TemplatePart[];
}

/** A template that compiled but failed on this event's data: `template_render_failed`, with why (render_failed, subject_empty, too_large) for the log. */
function renderFailed(why: 'render_failed' | 'subject_empty' | 'too_large', message: string): WorkerError {
  return new WorkerError('template_render_failed', message, { detail: { code: why } });
}
const isRenderFailure = (err: unknown): err is WorkerError => isWorkerError(err) && err.code === 'template_render_failed';

/** Turn every `{{{x}}}` and `{{& x}}` of a parsed template into an escaped `{{x}}`. */
function escapeAll(node: unknown): void {
  if (!node || typeof node !== 'object') return;
  const n = node as { type?: string; escaped?: boolean; loc?: unknown } & Record<string, unknown>;
  if (n.type === 'MustacheStatement') n.escaped = true;
  for (const v of Object.values(n)) {
    if (Array.isArray(v)) v.forEach(escapeAll);
    else if (v && typeof v === 'object' && v !== n.loc) escapeAll(v);
  }
}

/**
 * Compile one part. In HTML, what reaches the email unescaped is decided by the values, not by
 * the template's names: every mustache is compiled escaped, and the one value that is HTML —
 * our sanitized `output_html` — is handed over as a SafeString, which escaping leaves as it is.
 * Event data is parsed JSON and can never be a SafeString, so no context change, block param or
 * helper can put it into the HTML raw.
 */
function compilePart(part: TemplatePart, source: string): Render {
  const hb = handlebars();
  const ast = hb.parse(source);
  // Refuse, before rendering, a render that could exceed the size limit (renderBudget.ts).
  const budget = renderBudget(ast, part === 'html' ? 6 : 1);
  const html = part === 'html';
  if (html) escapeAll(ast);
  const fn = hb.compile(ast, compileOptions(part));
  return (view) => {
    const bound = budget.bound(view);
    if (bound > RENDERED_MAX_CHARS) {
      throw renderFailed('too_large', `${part}: could render to ${bound} characters with this event's data, more than ${RENDERED_MAX_CHARS}; not rendered`);
    }
    const v = view as Record<string, unknown>;
    const data = html && typeof v.output_html === 'string' ? { ...v, output_html: new hb.SafeString(v.output_html) } : view;
    return fn(data, { allowProtoMethodsByDefault: false, allowProtoPropertiesByDefault: false });
  };
}

/** For tests: a part compiled without the save-time checks, as a template stored before them would be. */
export const compilePartUnchecked = compilePart;

/** Compile a template; parts it does not set come from the built-in one. Throws on a bad template. */
export function compileTemplate(src: TemplateSource): CompiledTemplate {
  const issues = checkTemplate(src);
  if (issues.length > 0) {
    const i = issues[0] as TemplateIssue;
    throw new Error(`template ${i.path} does not compile${i.line ? ` (line ${i.line})` : ''}: ${i.message}`);
  }
  const parts = {} as Record<TemplatePart, Render>;
  const tenantParts: TemplatePart[] = [];
  for (const part of TEMPLATE_PARTS) {
    const own = src[part];
    if (own !== undefined && own !== null) tenantParts.push(part);
    parts[part] = own !== undefined && own !== null ? compilePart(part, own) : builtinTemplate()[part];
  }
  return { ...parts, tenantParts };
}

let builtin: CompiledTemplate | undefined;
/** The built-in template, compiled on first use (compiling it at import loaded Handlebars at start-up). */
export function builtinTemplate(): CompiledTemplate {
  builtin ??= {
    subject: compilePart('subject', DEFAULT_TEMPLATE.subject),
    html: compilePart('html', DEFAULT_TEMPLATE.html),
    text: compilePart('text', DEFAULT_TEMPLATE.text),
    tenantParts: [],
  };
  return builtin;
}

export interface RenderedContent {
  subject: string;
  html: string;
  text: string;
}

/** One header line: no control characters (so no CR/LF injection), whitespace collapsed, bounded. */
export function headerSafe(v: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  const flat = v.replace(/[\p{Cc}\u2028\u2029]+/gu, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Render all three parts. Throws `template_render_failed`; never returns an empty subject. */
export function renderTemplate(t: CompiledTemplate, view: unknown): RenderedContent {
  const out = {} as RenderedContent;
  for (const part of TEMPLATE_PARTS) {
    let s: string;
    try {
      s = t[part](view);
    } catch (err) {
      if (isRenderFailure(err)) throw err;
      throw renderFailed('render_failed', `${part}: ${err instanceof Error ? err.message.split('\n', 1)[0] : 'render failed'}`);
    }
    if (s.length > RENDERED_MAX_CHARS) throw renderFailed('too_large', `${part}: rendered to more than ${RENDERED_MAX_CHARS} characters`);
    out[part] = s;
  }
  out.subject = headerSafe(out.subject, 200);
  if (out.subject === '') throw renderFailed('subject_empty', 'subject: rendered to an empty line');
  return out;
}

/**
 * Render with the tenant's template when there is one, else the built-in; when the tenant's
 * template fails (or, 'broken', a stored one no longer compiles), the built-in one is rendered
 * instead and `fallbackReason` says why.
 */
export function renderWithFallback(t: CompiledTemplate | 'broken' | null, view: unknown): { content: RenderedContent; use: TemplateUse; fallbackReason?: string } {
  if (!t) return { content: renderTemplate(builtinTemplate(), view), use: 'builtin' };
  if (t === 'broken') return { content: renderTemplate(builtinTemplate(), view), use: 'builtin_fallback', fallbackReason: 'the stored template no longer compiles' };
  try {
    return { content: renderTemplate(t, view), use: 'tenant' };
  } catch (err) {
    const reason = isRenderFailure(err) ? err.message : 'render failed';
    return { content: renderTemplate(builtinTemplate(), view), use: 'builtin_fallback', fallbackReason: reason };
  }
}

/** Compiled tenant templates, by (tenant, event type, version): versions are never reused. */
export class TemplateCache {
  private readonly cache: LRUCache<string, CompiledTemplate | 'broken'>;
  constructor(max = 1000) {
    this.cache = new LRUCache({ max });
  }
  private key(tenantId: string, eventType: string, version: number): string {
    return `${tenantId}\0${eventType}\0${version}`;
  }
  get(tenantId: string, eventType: string, version: number): CompiledTemplate | 'broken' | undefined {
    return this.cache.get(this.key(tenantId, eventType, version));
  }
  set(tenantId: string, eventType: string, version: number, t: CompiledTemplate | 'broken'): void {
    this.cache.set(this.key(tenantId, eventType, version), t);
  }
  get size(): number {
    return this.cache.size;
  }
}
