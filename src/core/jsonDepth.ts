/**
 * How deep JSON may nest in an event or an admin request. Real payloads stay within a handful of
 * levels; a body of 100,000 nested arrays parses (JSON.parse is not recursive) but then breaks
 * every recursive walk after it — JSON.stringify, schema validation, template helpers — with a
 * stack overflow, which would be a 500. Bounded here, it is a 400 like any other malformed input.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether a parsed JSON value nests deeper than `max` levels. Iterative: safe on any depth. */
export function nestedDeeperThan(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}
