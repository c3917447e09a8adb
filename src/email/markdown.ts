import type MarkdownIt from 'markdown-it';

/**
 * Agent output is usually Markdown. It is rendered with markdown-it with raw HTML **off** (any
 * tag in the output is shown as text, so no script, style, iframe or event handler can get
 * through) and a link policy stricter than markdown-it's default: links only to http(s) and
 * mailto, images only from https (no data: or file: URLs, no cleartext tracking pixels).
 */
let renderer: InstanceType<typeof MarkdownIt> | undefined;

function markdownIt(): InstanceType<typeof MarkdownIt> {
  if (renderer) return renderer;
  // Required on first use: start-up does not pay for markdown-it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const MarkdownItCtor = require('markdown-it') as typeof MarkdownIt;
  const md = new MarkdownItCtor({ html: false, linkify: true, typographer: false, breaks: false });
  md.validateLink = (url: string) => /^(https?:|mailto:)/i.test(url.trim());
  const defaultImage = md.renderer.rules.image;
  md.renderer.rules.image = (tokens, idx, options, env, self) => {
    const src = tokens[idx]?.attrGet('src') ?? '';
    if (!/^https:\/\//i.test(String(src))) return md.utils.escapeHtml(tokens[idx]?.content ?? '');
    return defaultImage ? defaultImage(tokens, idx, options, env, self) : self.renderToken(tokens, idx, options);
  };
  renderer = md;
  return md;
}

export function renderMarkdown(source: string): string {
  return markdownIt().render(source);
}
