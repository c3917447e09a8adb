import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cli } from './helpers/cli';
import { createTestDatabase, type TestDatabase } from './helpers/db';

describe('tenant-email templates', () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  let dir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    env = { DATABASE_URL: db.workerUrl };
    dir = mkdtempSync(path.join(tmpdir(), 'tew-templates-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await db.drop();
  });

  it('refuses a template that does not compile, with the part and line, and stores nothing', async () => {
    const r = await cli(['templates', 'put', '--tenant', 'acme'], env, JSON.stringify({ text: 'a\n{{#each items}}\nb' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('text line 2:1: {{#each}} is not closed');
    expect(await db.admin()`SELECT 1 FROM tenant_email_templates`).toHaveLength(0);
    const notJson = await cli(['templates', 'put', '--tenant', 'acme'], env, '{subject:');
    expect([notJson.code, notJson.stderr.trim()]).toEqual([1, 'error: the template body is not valid JSON']);
  });

  it('puts, gets, lists, previews to a file and deletes', async () => {
    const put = await cli(['templates', 'put', '--tenant', 'acme'], env, JSON.stringify({ subject: 'Done: {{task_id}}', html: '<section>{{{output_html}}}</section>' }));
    expect(put.code).toBe(0);
    expect(put.stderr).toMatch(/created template codetether\.task\.created for tenant acme \(version \d+\)/);
    expect(JSON.parse((await cli(['templates', 'get', '--tenant', 'acme'], env)).stdout)).toMatchObject({ subject: 'Done: {{task_id}}', text: null });
    expect(JSON.parse((await cli(['templates', 'list', '--tenant', 'acme'], env)).stdout)).toEqual([{ event_type: 'codetether.task.created', version: expect.any(Number), updated_at: expect.any(String) }]);
    // Another tenant sees nothing (RLS through the worker role).
    expect((await cli(['templates', 'get', '--tenant', 'globex'], env)).code).toBe(1);

    const data = path.join(dir, 'data.json');
    const out = path.join(dir, 'preview.html');
    writeFileSync(data, JSON.stringify({ task_id: 'task-cli', output: '**bold** <img src=x onerror=alert(1)>' }));
    const preview = await cli(['templates', 'preview', '--tenant', 'acme', '--data', data, '--out', out], env);
    expect(preview.code).toBe(0);
    expect(preview.stdout).toMatch(/^template: tenant \(version \d+\)\nsubject: Done: task-cli\n/);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('<section><p><strong>bold</strong> &lt;img src=x onerror=alert(1)&gt;</p>');
    expect(html).not.toMatch(/<img/);

    expect((await cli(['templates', 'delete', '--tenant', 'acme'], env)).code).toBe(0);
    const builtin = await cli(['templates', 'preview', '--tenant', 'acme'], env);
    expect(builtin.stdout).toMatch(/^template: builtin\nsubject: Task completed: Summarise the open support tickets/);
  });

  it('previews a proposed template from a file and refuses an unknown event type', async () => {
    const t = path.join(dir, 'proposed.json');
    writeFileSync(t, JSON.stringify({ subject: 'Proposed {{task_id}}' }));
    const r = await cli(['templates', 'preview', '--tenant', 'acme', '--template', t], env);
    expect(r.stdout).toMatch(/^template: body\nsubject: Proposed task-preview-0001/);
    const bad = await cli(['templates', 'put', '--tenant', 'acme', '--type', 'other.type'], env, '{"subject":"x"}');
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining('is not an event type this worker handles')]);
  });
});
