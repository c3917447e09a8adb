import type HandlebarsModule from 'handlebars';
import { LRUCache } from 'lru-cache';
import { DEFAULT_TEMPLATE } from './defaultTemplate';
import { renderBudget } from './renderBudget';
import { TEMPLATE_PARTS, type TemplatePart, type TemplateSource, type TemplateUse, TEMPLATE_MAX_CHARS } from '../types';

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
const MAX_EACH_DEPTH = 1;

// The Handlebars environment is built on first use, so a worker's start-up does not pay for it.
let env: typeof HandlebarsModule | undefined;
function handlebars(): typeof HandlebarsModule {
  if (env) return env;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const hb = (require('handlebars') as typeof HandlebarsModule).create();
  hb.unregisterHelper('log');
  hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  hb.registerHelper('default', (value: unknown, fallback: unknown) => (value === undefined || value === null || value === '' ? fallback : value));
  hb.registerHelper('date', (value: unknown) => {
    // Strict on purpose: a value that is not a date is a render failure (the built-in is sent).
    const d = typeof value === 'string' || typeof value === 'number' ? new Date(value) : null;
    if (!d || Number.isNaN(d.getTime())) throw new Error('date: the value is not a date');
    return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  });
  env = hb;
  return hb;
}

const KNOWN_HELPERS = { eq: true, default: true, date: true, log: false };
const compileOptions = (part: TemplatePart) => ({
  knownHelpers: KNOWN_HELPERS,
  knownHelpersOnly: true,
  // Subject and text are not HTML: escaping would put `&amp;` into them.
  noEscape: part !== 'html',
  preventIndent: true,
});

export interface TemplateIssue {
  path: TemplatePart;
  message: string;
  line?: number;
  column?: number;
}

interface Loc {
  start: { line: number; column: number };
}
interface Node {
  type: string;
  loc?: Loc;
  path?: { original?: unknown; parts?: unknown[]; data?: boolean; depth?: number; type?: string };
  escaped?: boolean;
  params?: Node[];
  hash?: { pairs?: Array<{ value: Node }> } | null;
  program?: { body: Node[]; blockParams?: string[] | null } | null;
  inverse?: { body: Node[]; blockParams?: string[] | null } | null;
}

/** Built-in helpers Handlebars keeps for its own use: calling them directly does things no template needs. */
const INTERNAL_HELPERS = new Set(['helperMissing', 'blockHelperMissing']);

/** Every helper or path name a node calls or reads, params and sub-expressions included. */
function namesIn(node: Node): string[] {
  const out: string[] = [];
  const visit = (n: Node | undefined) => {
    if (!n) return;
    if (typeof n.path?.original === 'string') out.push(n.path.original);
    if (n.type === 'PathExpression' && typeof (n as unknown as { original?: unknown }).original === 'string') out.push((n as unknown as { original: string }).original);
    for (const p of n.params ?? []) visit(p);
    for (const pair of n.hash?.pairs ?? []) visit(pair.value);
  };
  visit(node);
  return out;
}

/** `{{{output_html}}}` as it must be written: the view's own field, read at the top of the template. */
const isRootOutputHtml = (node: Node) =>
  node.path?.original === 'output_html' && node.path.parts?.length === 1 && !node.path.data && node.path.depth === 0 && (node.params ?? []).length === 0;

/**
 * Walk the parsed template for what the environment does not offer. `scoped`: inside a block
 * that changes the context or names block params (anything but #if/#unless), where
 * `output_html` may be another value than ours.
 */
function checkTree(body: Node[], part: TemplatePart, issues: TemplateIssue[], eachDepth = 0, scoped = false): void {
  for (const node of body) {
    const at = node.loc ? { line: node.loc.start.line, column: node.loc.start.column + 1 } : {};
    const internal = namesIn(node).find((n) => INTERNAL_HELPERS.has(n));
    if (internal && (node.type === 'MustacheStatement' || node.type === 'BlockStatement' || node.type === 'SubExpression')) {
      issues.push({ path: part, message: `${internal} is internal to Handlebars and not available in tenant templates`, ...at });
      continue;
    }
    if (node.type === 'PartialStatement' || node.type === 'PartialBlockStatement') {
      issues.push({ path: part, message: 'partials ({{> name}}) are not available in tenant templates', ...at });
      continue;
    }
    if (node.type === 'DecoratorBlock' || node.type === 'Decorator') {
      issues.push({ path: part, message: 'decorators ({{* name}}) are not available in tenant templates', ...at });
      continue;
    }
    if (part === 'html' && node.type === 'MustacheStatement' && node.escaped === false && (scoped || !isRootOutputHtml(node))) {
      // Event data is not trusted HTML: only the sanitized rendering of the output may go in raw.
      // (Rendering escapes every other value anyway: see compilePart.)
      issues.push({ path: part, message: 'only {{{output_html}}} may be inserted unescaped (at the top level: not inside #each, #with or block params); use {{field}} for everything else', ...at });
      continue;
    }
    if (node.type === 'BlockStatement') {
      const isEach = node.path?.original === 'each';
      if (isEach && eachDepth + 1 > MAX_EACH_DEPTH) {
        issues.push({ path: part, message: `#each may be nested at most ${MAX_EACH_DEPTH} level deep`, ...at });
        continue;
      }
      const depth = eachDepth + (isEach ? 1 : 0);
      const keepsContext = node.path?.original === 'if' || node.path?.original === 'unless';
      const inner = scoped || !keepsContext || Boolean(node.program?.blockParams?.length || node.inverse?.blockParams?.length);
      if (node.program) checkTree(node.program.body, part, issues, depth, inner);
      if (node.inverse) checkTree(node.inverse.body, part, issues, depth, inner);
    }
  }
}

/** The innermost block still open at the end of a template, by scanning its block tags. */
function unclosedBlock(source: string): { name: string; line: number; column: number } | null {
  const stack: Array<{ name: string; index: number }> = [];
  // {{!-- comments --}} and {{! comments }} may contain anything; skip them.
  const tags = /\{\{!--[\s\S]*?--\}\}|\{\{![\s\S]*?\}\}|\{\{~?\s*([#/])\s*\*?\s*([^\s}~]+)/g;
  for (let m = tags.exec(source); m; m = tags.exec(source)) {
    if (!m[1]) continue;
    if (m[1] === '#') stack.push({ name: m[2] as string, index: m.index });
    else if (stack.at(-1)?.name === m[2]) stack.pop();
  }
  const top = stack.at(-1);
  if (!top) return null;
  const before = source.slice(0, top.index);
  const line = before.split('\n').length;
  return { name: top.name, line, column: top.index - before.lastIndexOf('\n') };
}

/** Line, column and the reason from a Handlebars parse or compile error. */
function describeCompileError(err: unknown, part: TemplatePart, source: string): TemplateIssue {
  const e = err as { message?: unknown; lineNumber?: unknown; column?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  const parse = /^Parse error on line (\d+):[\s\S]*\n(Expecting [^\n]*|[^\n]*)$/.exec(message);
  if (parse) {
    const expecting = parse[2] as string;
    if (/got 'EOF'$/.test(expecting)) {
      // The parser stops at the end; the block that is still open is what the author needs.
      const open = unclosedBlock(source);
      return open
        ? { path: part, line: open.line, column: open.column, message: `{{#${open.name}}} is not closed (expected {{/${open.name}}})` }
        : { path: part, line: Number(parse[1]), message: 'unexpected end of the template: a block ({{#…}}) is not closed' };
    }
    return { path: part, line: Number(parse[1]), message: `syntax error: ${expecting.slice(0, 200)}` };
  }
  const unknownHelper = /unknown helper (\S+)/.exec(message);
  if (unknownHelper) {
    return {
      path: part,
      message: `unknown helper "${unknownHelper[1]}" (available: if, unless, each, with, lookup, eq, default, date)`,
      ...(typeof e.lineNumber === 'number' ? { line: e.lineNumber } : {}),
      ...(typeof e.column === 'number' ? { column: e.column + 1 } : {}),
    };
  }
  const line = typeof e.lineNumber === 'number' ? e.lineNumber : undefined;
  const column = typeof e.column === 'number' ? e.column + 1 : undefined;
  return {
    path: part,
    message: message.replace(/ - \d+:\d+$/, '').split('\n', 1)[0] as string,
    ...(line !== undefined ? { line } : {}),
    ...(column !== undefined ? { column } : {}),
  };
}

/** Every problem of a template, by part; empty when it can be saved. */
export function checkTemplate(src: TemplateSource): TemplateIssue[] {
  const issues: TemplateIssue[] = [];
  for (const part of TEMPLATE_PARTS) {
    const s = src[part];
    if (s === undefined || s === null) continue;
    if (s.length > TEMPLATE_MAX_CHARS[part]) {
      issues.push({ path: part, message: `must be at most ${TEMPLATE_MAX_CHARS[part]} characters` });
      continue;
    }
    const before = issues.length;
    try {
      checkTree((handlebars().parse(s) as unknown as { body: Node[] }).body, part, issues);
    } catch (err) {
      issues.push(describeCompileError(err, part, s));
      continue;
    }
    if (issues.length > before) continue;
    try {
      // Precompiling runs the compiler fully, which is where unknown helpers are refused.
      handlebars().precompile(s, compileOptions(part));
    } catch (err) {
      issues.push(describeCompileError(err, part, s));
    }
  }
  return issues;
}

type Render = (view: unknown) => string;
export interface CompiledTemplate {
  readonly subject: Render;
  readonly html: Render;
  readonly text: Render;
  /** The parts that are the tenant's own (the rest are the built-in's). */
  readonly tenantParts: readonly TemplatePart[];
}

export class TemplateRenderError extends Error {
  constructor(readonly reason: 'render_failed' | 'subject_empty' | 'too_large', message: string) {
    super(message);
    this.name = 'TemplateRenderError';
  }
}

/** Turn every `{{{x}}}` and `{{& x}}` of a parsed template into an escaped `{{x}}`. */
function escapeAll(node: unknown): void {
  if (!node || typeof node !== 'object') return;
  const n = node as Node & Record<string, unknown>;
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
      throw new TemplateRenderError('too_large', `${part}: could render to ${bound} characters with this event's data, more than ${RENDERED_MAX_CHARS}; not rendered`);
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

/** Render all three parts. Throws TemplateRenderError; never returns an empty subject. */
export function renderTemplate(t: CompiledTemplate, view: unknown): RenderedContent {
  const out = {} as RenderedContent;
  for (const part of TEMPLATE_PARTS) {
    let s: string;
    try {
      s = t[part](view);
    } catch (err) {
      if (err instanceof TemplateRenderError) throw err;
      throw new TemplateRenderError('render_failed', `${part}: ${err instanceof Error ? err.message.split('\n', 1)[0] : 'render failed'}`);
    }
    if (s.length > RENDERED_MAX_CHARS) throw new TemplateRenderError('too_large', `${part}: rendered to more than ${RENDERED_MAX_CHARS} characters`);
    out[part] = s;
  }
  out.subject = headerSafe(out.subject, 200);
  if (out.subject === '') throw new TemplateRenderError('subject_empty', 'subject: rendered to an empty line');
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
    const reason = err instanceof TemplateRenderError ? err.message : 'render failed';
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
