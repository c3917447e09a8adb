import { TEMPLATE_MAX_CHARS, TEMPLATE_PARTS, type TemplatePart, type TemplateSource } from '../types';
import { MAX_EACH_DEPTH, compileOptions, handlebars } from './handlebarsEnv';

/**
 * What a tenant template may contain, checked when it is saved (admin API, CLI) and again before
 * it is compiled: a broken or unsafe one is refused with its part, line and reason rather than
 * found at send time. Unescaped insertion in HTML is allowed for `{{{output_html}}}` only, and
 * `#each` at most one level deep.
 */

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
