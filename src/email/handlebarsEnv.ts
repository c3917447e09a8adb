import type HandlebarsModule from 'handlebars';
import type { TemplatePart } from '../types';

/**
 * The one Handlebars environment tenant templates are compiled in (templates.ts) and checked
 * against (templateCheck.ts): only known helpers (`if`, `unless`, `each`, `with`, `lookup`, and
 * ours: `eq`, `default`, `date`), no `log`, no partials or decorators.
 */

/** How deep #each may nest in a tenant template (nested loops over event data would let one tenant burn the worker's CPU). */
export const MAX_EACH_DEPTH = 1;

// The Handlebars environment is built on first use, so a worker's start-up does not pay for it.
let env: typeof HandlebarsModule | undefined;
export function handlebars(): typeof HandlebarsModule {
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
export const compileOptions = (part: TemplatePart) => ({
  knownHelpers: KNOWN_HELPERS,
  knownHelpersOnly: true,
  // Subject and text are not HTML: escaping would put `&amp;` into them.
  noEscape: part !== 'html',
  preventIndent: true,
});
