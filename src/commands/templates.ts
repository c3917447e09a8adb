import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { EVENT_TYPE_PATTERN, templateBody } from '../settings/schemas';
import { deleteTemplate, getTemplate, listTemplates, putTemplate } from '../db/templates';
import { renderPreview } from '../email/preview';
import { toIssues } from '../settings/input';
import { parseJsonInput, print, readAll, tenantOption, withSql, type CliContext } from './shared';
import type { TemplateSource } from '../types';
import { checkTemplate } from '../email/templateCheck';
import { UsageError, type FieldIssue } from '../errors';

const where = (i: FieldIssue) => `${i.path}${i.line ? ` line ${i.line}${i.column !== undefined ? `:${i.column}` : ''}` : ''}`;
const issuesText = (title: string, issues: FieldIssue[]) => `${title}:\n${issues.map((i) => `  ${where(i)}: ${i.message}`).join('\n')}`;

/** A template body {subject?, html?, text?} as the admin API takes it; compiling is checked later. */
function parseTemplate(raw: string, what: string): TemplateSource {
  const body = templateBody.safeParse(parseJsonInput(raw, what));
  if (!body.success) throw new UsageError(issuesText('invalid template', toIssues(body.error.issues)));
  return body.data;
}

/** templates put|get|list|delete|preview: a tenant's email templates, through RLS as DATABASE_URL's role. */
export function registerTemplates(program: Command, { io, config }: CliContext): void {
  const templates = program.command('templates').description("manage a tenant's email templates (Handlebars; see README: \"Templates\")");
  const typeOption = (v: string) => {
    if (!EVENT_TYPE_PATTERN.test(v)) throw new UsageError('--type must be 1-128 characters of [A-Za-z0-9._-]');
    return v;
  };
  const knownType = (t: string) => {
    const types = config().eventTypes;
    if (!types.includes(t)) throw new UsageError(`--type ${t} is not an event type this worker handles (EVENT_TYPES: ${types.join(', ')})`);
    return t;
  };

  templates
    .command('put')
    .description('create or replace a template from a JSON body {subject?, html?, text?} on stdin (or --file)')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--type <event-type>', 'event type', typeOption, 'codetether.task.created')
    .option('--file <path>', 'read the JSON body from this file instead of stdin')
    .action(async (opts: { tenant: string; type: string; file?: string }) => {
      knownType(opts.type);
      const raw = opts.file ? readFileSync(opts.file, 'utf8') : await readAll(io.stdin);
      const body = parseTemplate(raw, 'the template body');
      const issues = checkTemplate(body);
      if (issues.length > 0) throw new UsageError(issuesText('the template does not compile', issues));
      const { created, template } = await withSql(config(), 'worker', (sql) => putTemplate(sql, opts.tenant, opts.type, body));
      print(io.stderr, `${created ? 'created' : 'updated'} template ${opts.type} for tenant ${opts.tenant} (version ${template.version})`);
      print(io.stdout, JSON.stringify(template, null, 2));
    });

  templates
    .command('get')
    .description('print a template')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--type <event-type>', 'event type', typeOption, 'codetether.task.created')
    .action(async (opts: { tenant: string; type: string }) => {
      const t = await withSql(config(), 'worker', (sql) => getTemplate(sql, opts.tenant, opts.type));
      if (!t) throw new UsageError(`tenant ${opts.tenant} has no template for ${opts.type} (the built-in one is used)`);
      print(io.stdout, JSON.stringify(t, null, 2));
    });

  templates
    .command('list')
    .description("list a tenant's templates")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .action(async (opts: { tenant: string }) => {
      const list = await withSql(config(), 'worker', (sql) => listTemplates(sql, opts.tenant));
      print(io.stdout, JSON.stringify(list, null, 2));
    });

  templates
    .command('delete')
    .description('delete a template (the built-in one is used again)')
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--type <event-type>', 'event type', typeOption, 'codetether.task.created')
    .action(async (opts: { tenant: string; type: string }) => {
      const deleted = await withSql(config(), 'worker', (sql) => deleteTemplate(sql, opts.tenant, opts.type));
      if (!deleted) throw new UsageError(`tenant ${opts.tenant} has no template for ${opts.type}`);
      print(io.stdout, `deleted template ${opts.type} for tenant ${opts.tenant}`);
    });

  templates
    .command('preview')
    .description("render the tenant's template (or --template) with sample or --data event data; writes the HTML to --out")
    .requiredOption('--tenant <id>', 'tenant id', tenantOption)
    .option('--type <event-type>', 'event type', typeOption, 'codetether.task.created')
    .option('--template <path>', 'a template JSON {subject?, html?, text?} to try instead of the saved one')
    .option('--data <path>', 'event data JSON (task_id, prompt, output, …) instead of the sample')
    .option('--out <path>', 'write the HTML part here (subject and text go to stdout)')
    .action(async (opts: { tenant: string; type: string; template?: string; data?: string; out?: string }) => {
      knownType(opts.type);
      const template = opts.template ? parseTemplate(readFileSync(opts.template, 'utf8'), '--template') : undefined;
      const data = opts.data ? parseJsonInput(readFileSync(opts.data, 'utf8'), '--data') : undefined;
      const cfg = config();
      const result = await withSql(cfg, 'worker', (sql) => renderPreview({ tenantId: opts.tenant, eventType: opts.type, template, data, outputMaxChars: cfg.outputMaxChars, loadSaved: () => getTemplate(sql, opts.tenant, opts.type) }));
      if (!result.ok) throw new UsageError(issuesText('cannot preview', result.issues));
      const { subject, html, text } = result.content;
      if (opts.out) {
        writeFileSync(opts.out, html);
        print(io.stderr, `wrote the HTML part to ${opts.out}`);
      }
      print(io.stdout, `template: ${result.template}${result.version !== null ? ` (version ${result.version})` : ''}\nsubject: ${subject}\n\n${text}${opts.out ? '' : `\n\n----- html -----\n${html}`}`);
    });
}
