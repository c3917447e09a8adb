import { compilePartUnchecked, TemplateCache, builtinTemplate, compileTemplate, renderTemplate, renderWithFallback } from '../../src/email/templates';
import { composeForTest } from '../helpers/compose';
import { taskData } from '../helpers/events';
import { checkTemplate } from '../../src/email/templateCheck';

const data = (over: Record<string, unknown> = {}) => taskData({ task_id: 'task-42', prompt: 'Summarise the report', metadata: { output: '## Done\nAll **good**.' }, ...over });

describe('built-in template', () => {
  it('renders subject, text and HTML from the event data', () => {
    const e = composeForTest(data());
    expect(e.subject).toBe('Task completed: Summarise the report');
    expect(e.text).toContain('Task: task-42');
    expect(e.text).toContain('All **good**.');
    expect(e.html).toContain('<h2>Done</h2>');
    expect(e.html).toContain('<strong>good</strong>');
  });
});

describe('tenant templates', () => {
  it('override only the parts they set, with the data fields, tenant_id and output_html', () => {
    const t = compileTemplate({ subject: '[{{tenant_id}}] {{task_id}} is {{status}}', html: '<p>Hi from {{tenant_id}}</p>{{{output_html}}}' });
    const e = composeForTest(data(), { tenant: 'acme', template: t });
    expect(e.subject).toBe('[acme] task-42 is completed');
    expect(e.html).toBe('<p>Hi from acme</p><h2>Done</h2>\n<p>All <strong>good</strong>.</p>\n');
    // The text part was not set: the built-in one.
    expect(e.text).toContain('Task: task-42');
    expect(t.tenantParts).toEqual(['subject', 'html']);
  });

  it('escape every {{field}} in HTML and never in subject or text', () => {
    const t = compileTemplate({ subject: '{{prompt}}', html: '<p>{{prompt}}</p>', text: '{{prompt}}' });
    const e = composeForTest(data({ prompt: 'Tom & Jerry <script>alert(1)</script>' }), { template: t });
    expect(e.html).toBe('<p>Tom &amp; Jerry &lt;script&gt;alert(1)&lt;/script&gt;</p>');
    expect(e.subject).toBe('Tom & Jerry <script>alert(1)</script>');
    expect(e.text).toBe('Tom & Jerry <script>alert(1)</script>');
  });

  it('flatten a subject with CR/LF from the data to one header line', () => {
    const t = compileTemplate({ subject: 'Re: {{prompt}}' });
    const e = composeForTest(data({ prompt: 'line one\r\nBcc: victim@example.com' }), { template: t });
    expect(e.subject).toBe('Re: line one Bcc: victim@example.com');
  });

  it('offer eq, default and date', () => {
    const t = compileTemplate({ text: '{{#if (eq status "failed")}}FAILED{{else}}ok{{/if}} {{default agent "no agent"}} {{date finished_at}}' });
    const e = composeForTest(data({ status: 'failed', agent: undefined, finished_at: '2026-11-23T10:15:00Z' }), { template: t });
    expect(e.text).toBe('FAILED no agent 2026-11-23 10:15 UTC');
  });

  it('cannot reach prototypes or constructors', () => {
    const t = compileTemplate({ text: '[{{constructor}}][{{__proto__}}][{{task_id.constructor}}][{{lookup this "constructor"}}]' });
    expect(composeForTest(data(), { template: t }).text).toBe('[][][][]');
  });
});

describe('checking a template before it is saved', () => {
  it('reports an unclosed block with the line and column where it opens', () => {
    expect(checkTemplate({ html: '<p>\n  {{#if output}}\n{{#each items}}{{this}}{{/each}}\n{{output}}\n' })).toEqual([
      { path: 'html', line: 2, column: 3, message: '{{#if}} is not closed (expected {{/if}})' },
    ]);
  });

  it('reports a syntax error with its line', () => {
    const [i] = checkTemplate({ text: 'ok\nok\n{{#each}}{{/if}}' });
    expect(i).toMatchObject({ path: 'text', line: 3 });
  });

  it('reports a mismatched block with its line', () => {
    const [i] = checkTemplate({ subject: 'x', text: 'a\n{{#if a}}b{{/each}}' });
    expect(i).toMatchObject({ path: 'text', line: 2 });
    expect(i!.message).toMatch(/doesn't match|each/);
  });

  it.each([
    ['an unknown helper', { text: 'a {{shout prompt}}' }, /unknown helper "shout"/],
    ['log', { text: '{{log "x"}}' }, /unknown helper "log"/],
    ['a partial', { html: 'x\n  {{> header}}' }, /partials/],
    ['a decorator', { html: '{{#*inline "x"}}y{{/inline}}' }, /decorators/],
    ['nested #each', { text: '{{#each a}}{{#each b}}x{{/each}}{{/each}}' }, /nested at most 1/],
    ['raw prompt in HTML', { html: '<p>{{{prompt}}}</p>' }, /only \{\{\{output_html\}\}\} may be inserted unescaped/],
    ['raw via {{& }} in HTML', { html: '<p>{{&prompt}}</p>' }, /unescaped/],
    ['a huge subject', { subject: 'x'.repeat(1001) }, /at most 1000 characters/],
  ])('refuses %s', (_n, src, message) => {
    const issues = checkTemplate(src);
    expect(issues).toHaveLength(1);
    expect(issues[0]!.message).toMatch(message);
    expect(() => compileTemplate(src)).toThrow(/does not compile/);
  });

  // Templates that named output_html but put event data into the HTML raw (all were saved before).
  const SHADOWS: Array<[string, string]> = [
    ['a block param named output_html (#with)', '{{#with prompt as |output_html|}}{{{output_html}}}{{/with}}'],
    ['a block param named output_html (#each)', '{{#each metadata as |output_html|}}{{{output_html}}}{{/each}}'],
    ['output_html read in another context (#with)', '{{#with metadata}}{{{output_html}}}{{/with}}'],
    ['output_html read in another context (#each)', '{{#each metadata}}{{{output_html}}}{{/each}}'],
    ['output_html with {{& }} in #with', '{{#with metadata}}{{& output_html}}{{/with}}'],
  ];
  it.each(SHADOWS)('refuses %s at save', (_n, html) => {
    expect(checkTemplate({ html }).map((i) => i.message)).toEqual([expect.stringMatching(/only \{\{\{output_html\}\}\} may be inserted unescaped \(at the top level/)]);
  });

  it.each([
    ['helperMissing', '{{helperMissing "x"}}'],
    ['blockHelperMissing', '{{#blockHelperMissing}}x{{/blockHelperMissing}}'],
    ['helperMissing in a sub-expression', '{{eq (helperMissing "x") 1}}'],
  ])('refuses %s at save', (_n, text) => {
    expect(checkTemplate({ text }).map((i) => i.message)).toEqual([expect.stringMatching(/is internal to Handlebars/)]);
  });

  it.each(SHADOWS)('renders %s escaped even when it was stored before the check (what the compiled HTML does)', (_n, html) => {
    const render = compilePartUnchecked('html', html);
    const out = render({ prompt: '<script>alert(1)</script>', metadata: { output_html: '<a href="https://phish.example">x</a>', item: { output_html: '<b>y</b>' } }, output_html: '<p>ours</p>' });
    expect(out).not.toMatch(/<script|<a |<b>/);
    expect(out).toMatch(/&lt;script&gt;|&lt;a href|&lt;b&gt;/);
  });

  it('leaves our sanitized output_html as HTML, at the top level and inside #if', () => {
    const render = compilePartUnchecked('html', '<div>{{{output_html}}}</div>{{#if output_html}}{{output_html}}{{/if}}');
    expect(render({ output_html: '<p>ours</p>' })).toBe('<div><p>ours</p></div><p>ours</p>');
  });

  it('reports the line and column of a partial', () => {
    expect(checkTemplate({ html: 'x\n  {{> header}}' })[0]).toMatchObject({ line: 2, column: 3 });
  });

  it('accepts the built-in template as a tenant template, and raw output_html', () => {
    expect(checkTemplate({ html: '<div>{{{output_html}}}</div>', text: '{{#each items}}{{this}}{{/each}}', subject: '{{task_id}}' })).toEqual([]);
  });
});

describe('what a render may cost', () => {
  const view = { output: 'o'.repeat(100_000), output_html: '<p>x</p>', prompt: 'p', task_id: 't', metadata: { items: Array.from({ length: 5000 }, (_, i) => `item ${i}`) } };

  it.each([
    ['text', { text: '{{output}}'.repeat(9000) }],
    ['html', { html: '{{output}}'.repeat(9000) }],
    ['subject', { subject: '{{output}}'.repeat(99) }],
    ['an #each over a large collection', { text: `{{#each metadata.items}}${'{{../output}}'.repeat(10)}{{/each}}` }],
  ])('refuses, without rendering, a %s part that could render past the limit; the built-in is sent', (_n, src) => {
    const t = compileTemplate(src as never);
    const r = renderWithFallback(t, view);
    expect(r.use).toBe('builtin_fallback');
    expect(r.fallbackReason).toMatch(/could render to \d+ characters with this event's data, more than 4194304; not rendered/);
  });

  it('renders a template that reads the large field a few times', () => {
    const t = compileTemplate({ text: '{{output}}\n{{output}}\n{{#each metadata.items}}{{this}},{{/each}}', html: '<div>{{{output_html}}}</div><pre>{{output}}</pre>' });
    const r = renderWithFallback(t, view);
    expect(r.use).toBe('tenant');
    expect(r.content.text.length).toBeGreaterThan(200_000);
  });
});

describe('render failures fall back to the built-in template', () => {
  it.each([
    ['a subject that renders empty', { subject: '{{missing}}' }, /subject: rendered to an empty line/],
    ['a helper that fails on the data', { text: '{{date prompt}}' }, /text: date: the value is not a date/],
  ])('%s', (_n, src, reason) => {
    const t = compileTemplate(src);
    const r = renderWithFallback(t, { task_id: 'task-1', status: 'completed', prompt: 'p', prompt_summary: 'p', output: '', output_html: '' });
    expect(r.use).toBe('builtin_fallback');
    expect(r.fallbackReason).toMatch(reason);
    expect(r.content.subject).toBe('Task completed: p');
  });

  it('sends the built-in template when a stored template no longer compiles', () => {
    const r = renderWithFallback('broken', { task_id: 'task-1', status: 'completed', prompt_summary: 'p' });
    expect(r).toMatchObject({ use: 'builtin_fallback', fallbackReason: 'the stored template no longer compiles', content: { subject: 'Task completed: p' } });
  });

  it('renders the tenant template when it works, the built-in when there is none', () => {
    const view = { task_id: 'task-1', status: 'completed', prompt_summary: 'p' };
    expect(renderWithFallback(compileTemplate({ subject: 'S {{task_id}}' }), view)).toMatchObject({ use: 'tenant', content: { subject: 'S task-1' } });
    expect(renderWithFallback(null, view)).toMatchObject({ use: 'builtin', content: { subject: 'Task completed: p' } });
    expect(renderTemplate(builtinTemplate(), view).subject).toBe('Task completed: p');
  });
});

describe('TemplateCache', () => {
  it('keys by tenant, event type and version, and evicts beyond its size', () => {
    const cache = new TemplateCache(2);
    const a = compileTemplate({ subject: 'a' });
    cache.set('t1', 'x', 1, a);
    expect(cache.get('t1', 'x', 1)).toBe(a);
    expect(cache.get('t1', 'x', 2)).toBeUndefined();
    expect(cache.get('t2', 'x', 1)).toBeUndefined();
    cache.set('t1', 'x', 2, 'broken');
    cache.set('t1', 'x', 3, a);
    expect(cache.size).toBe(2);
    expect(cache.get('t1', 'x', 1)).toBeUndefined();
  });
});
