import { renderMarkdown } from '../../src/email/markdown';
import { composeForTest } from '../helpers/compose';
import { taskData } from '../helpers/events';

describe('renderMarkdown (task output)', () => {
  it('renders ordinary Markdown', () => {
    const html = renderMarkdown('## Result\n\n- **done**\n- see [the PR](https://git.example/pr/1)\n\n```ts\nconst a = 1 < 2;\n```');
    expect(html).toContain('<h2>Result</h2>');
    expect(html).toContain('<strong>done</strong>');
    expect(html).toContain('<a href="https://git.example/pr/1">the PR</a>');
    expect(html).toContain('const a = 1 &lt; 2;');
  });

  it.each([
    ['<script>alert(1)</script>', /<script/i],
    ['<img src=x onerror=alert(1)>', /<img/i],
    ['<a href="https://x" onclick="alert(1)">x</a>', /<a [^>]*onclick/i],
    ['<iframe src="https://evil.example"></iframe>', /<iframe/i],
    ['<style>body{display:none}</style>', /<style/i],
    ['[click](javascript:alert(1))', /href=/i],
    ['[click](JaVaScRiPt:alert(1))', /href=/i],
    ['[click](  javascript:alert(1))', /href=/i],
    ['[click](data:text/html;base64,PHNjcmlwdD4=)', /href=/i],
    ['[click](vbscript:msgbox(1))', /href=/i],
    ['![pixel](http://tracker.example/p.gif)', /<img/i],
    ['![x](data:image/png;base64,iVBORw0KGgo=)', /<img/i],
    ['<div onmouseover="alert(1)">x</div>', /<div/i],
  ])('leaves %s inert', (input, forbidden) => {
    const html = renderMarkdown(input);
    expect(html).not.toMatch(forbidden);
    // No event handler inside a real tag (escaped text such as "&lt;img onerror=" is inert).
    expect(html).not.toMatch(/<[a-z][^>]*\son\w+\s*=/i);
  });

  it('keeps https images and mailto links', () => {
    expect(renderMarkdown('![chart](https://cdn.example/c.png)')).toContain('<img src="https://cdn.example/c.png" alt="chart">');
    expect(renderMarkdown('[mail](mailto:a@b.example)')).toContain('href="mailto:a@b.example"');
  });
});

describe('the built-in template with Markdown output', () => {

  it('renders the output as HTML and keeps the Markdown source as the text part', () => {
    const m = composeForTest(taskData({ output: '# Done\n<script>x</script>' }));
    expect(m.html).toContain('<h1>Done</h1>');
    expect(m.html).not.toContain('<script>x');
    expect(m.text).toContain('# Done\n<script>x</script>');
  });

  it('cuts the output at the configured size with a note in both parts', () => {
    const m = composeForTest(taskData({ output: 'z'.repeat(5000) }), { maxOutputChars: 2048 });
    expect(m.text).toContain('[output truncated at 2 KB]');
    expect(m.html).toContain('[output truncated at 2 KB]');
    expect(m.text.match(/z/g)!.length).toBe(2048);
  });
});
