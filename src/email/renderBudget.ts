/**
 * An upper bound on how many characters one template part can render to for a given view,
 * computed before rendering. Handlebars renders synchronously and cannot be interrupted, so a
 * tenant template of 9,000 × `{{output}}` with a 100 KB output would build a 900 MB string and
 * stall every tenant's events. With the bound, such a render is refused at once (the built-in
 * template is sent instead) and costs nothing.
 *
 * The bound is computed from the parsed template and the view's real values: static text counts
 * its length; a mustache that reads a field at the top of the template counts that field's
 * length; anything else (helpers, other contexts, #each items) counts the view's longest string.
 * #each multiplies what it holds by the view's largest collection. HTML escaping can make a
 * character up to six (`&quot;`). It is an upper bound, never an estimate: a template under it
 * renders under it.
 */

interface AstNode {
  type: string;
  value?: unknown;
  original?: unknown;
  path?: { original?: unknown; parts?: unknown[]; depth?: number; data?: boolean; type?: string };
  params?: AstNode[];
  program?: { body: AstNode[] } | null;
  inverse?: { body: AstNode[] } | null;
  body?: AstNode[];
}

/** The longest string, and the largest array or object, anywhere in a view (iteratively). */
function measure(view: unknown): { longest: number; widest: number } {
  let longest = 0;
  let widest = 0;
  const stack: unknown[] = [view];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') longest = Math.max(longest, v.length);
    else if (typeof v === 'number' || typeof v === 'boolean') longest = Math.max(longest, 24);
    else if (v && typeof v === 'object') {
      const children = Array.isArray(v) ? v : Object.values(v as Record<string, unknown>);
      widest = Math.max(widest, children.length);
      // A mustache of an object renders "[object Object]"; of an array, its items joined by commas.
      longest = Math.max(longest, 15);
      stack.push(...children);
    }
  }
  return { longest, widest };
}

/** The value a plain path (no helper, no @data) reads from `context`; `missing` when it is not one. */
const MISSING = Symbol('missing');
function resolve(path: AstNode['path'], context: unknown): unknown {
  if (!path || path.type !== 'PathExpression' || path.data || !Array.isArray(path.parts)) return MISSING;
  let v = context;
  for (const part of path.parts) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[String(part)];
  }
  return v;
}

/** The rendered length of a plain field of `context`, or undefined when the mustache is not one. */
function fieldLength(node: AstNode, context: unknown): number | undefined {
  if ((node.params ?? []).length > 0) return undefined;
  const v = resolve(node.path, context);
  if (v === MISSING) return undefined;
  if (v === undefined || v === null) return 0;
  return typeof v === 'string' ? v.length : Math.max(String(v).length, measure(v).longest * measure(v).widest);
}

export interface RenderBudget {
  /** The most characters this part can render to for `view`. */
  bound(view: unknown): number;
}

/** A budget for a parsed template part. `escapeFactor`: 6 for HTML (escaping), 1 otherwise. */
export function renderBudget(ast: unknown, escapeFactor: number): RenderBudget {
  const root = ast as AstNode;
  return {
    bound(view) {
      const v = (view && typeof view === 'object' ? view : {}) as Record<string, unknown>;
      const all = measure(v);
      // `item`: the collection an #each at the top level iterates, when it can be resolved.
      type Scope = { top: true } | { top: false; item?: { longest: number } };
      const mustache = (n: AstNode, scope: Scope): number => {
        const depth = n.path?.depth ?? 0;
        if (scope.top && depth === 0) return fieldLength(n, v) ?? all.longest;
        if (!scope.top && scope.item && depth === 1) return fieldLength(n, v) ?? all.longest; // ../field
        if (!scope.top && scope.item && depth === 0 && !n.path?.data && (n.params ?? []).length === 0) return scope.item.longest;
        return all.longest;
      };
      const walk = (nodes: AstNode[], scope: Scope, times: number): number => {
        let total = 0;
        for (const n of nodes) {
          if (n.type === 'ContentStatement') total += String(n.value ?? '').length * times;
          else if (n.type === 'MustacheStatement') total += mustache(n, scope) * escapeFactor * times;
          else if (n.type === 'BlockStatement') {
            const name = n.path?.original;
            let inner: Scope = scope;
            let mult = times;
            if (name === 'each') {
              const coll = scope.top && n.params?.[0] ? resolve(n.params[0].type === 'PathExpression' ? (n.params[0] as AstNode['path']) : undefined, v) : MISSING;
              if (coll !== MISSING && coll && typeof coll === 'object') {
                const m = measure(coll);
                mult = times * m.widest;
                inner = { top: false, item: { longest: m.longest } };
              } else {
                mult = times * all.widest;
                inner = { top: false };
              }
            } else if (name !== 'if' && name !== 'unless') {
              inner = { top: false };
            }
            total += Math.max(walk(n.program?.body ?? [], inner, mult), walk(n.inverse?.body ?? [], inner, mult));
          }
        }
        return total;
      };
      return walk(root.body ?? [], { top: true }, 1);
    },
  };
}
