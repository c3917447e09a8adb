/**
 * The built-in template (Handlebars) for codetether.task.created and for every event type a
 * tenant has not overridden. It is also the reference for tenants writing their own: it uses
 * only the fields and helpers documented in README.md ("Templates").
 *
 * `subject` and `text` are rendered without HTML escaping (they are not HTML); the subject is
 * then flattened to one header line. `html` escapes every `{{field}}`; `{{{output_html}}}` is
 * the sanitized Markdown rendering of the output and the one triple-stash this template needs.
 */
export const DEFAULT_TEMPLATE = {
  subject: '{{#if prompt_summary}}Task {{status}}: {{prompt_summary}}{{else}}Task {{task_id}} {{status}}{{/if}}',

  text: `Your task {{status}}.

Task: {{task_id}}
{{#if session_id}}
Session: {{session_id}}
{{/if}}
{{#if agent}}
Agent: {{agent}}
{{/if}}
{{#if model}}
Model: {{model}}
{{/if}}
Status: {{status}}

{{#if prompt}}
Prompt:
{{prompt}}
{{#if prompt_truncated}}
[prompt truncated]
{{/if}}

{{/if}}
{{#if output}}
Output:
{{output}}
{{#if output_truncated}}
{{truncation_note}}
{{/if}}
{{else}}
No output was recorded.
{{/if}}
`,

  html: `<!doctype html><html><body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328">
<h2 style="margin:0 0 12px">Your task {{status}}</h2>
<table style="border-collapse:collapse;margin-bottom:16px">
<tr><td style="padding:2px 12px 2px 0;color:#59636e">Task</td><td>{{task_id}}</td></tr>
{{#if session_id}}
<tr><td style="padding:2px 12px 2px 0;color:#59636e">Session</td><td>{{session_id}}</td></tr>
{{/if}}
{{#if agent}}
<tr><td style="padding:2px 12px 2px 0;color:#59636e">Agent</td><td>{{agent}}</td></tr>
{{/if}}
{{#if model}}
<tr><td style="padding:2px 12px 2px 0;color:#59636e">Model</td><td>{{model}}</td></tr>
{{/if}}
<tr><td style="padding:2px 12px 2px 0;color:#59636e">Status</td><td>{{status}}</td></tr>
</table>
{{#if prompt}}
<h3>Prompt</h3>
<pre style="white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;background:#f6f8fa;padding:12px;border-radius:6px">{{prompt}}{{#if prompt_truncated}}
[prompt truncated]{{/if}}</pre>
{{/if}}
{{#if output}}
<h3>Output</h3>
<div>{{{output_html}}}</div>
{{#if output_truncated}}
<p><em>{{truncation_note}}</em></p>
{{/if}}
{{else}}
<p>No output was recorded.</p>
{{/if}}
</body></html>
`,
} as const;
