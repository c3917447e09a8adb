import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.join(__dirname, '..', '..');
const CHART = path.join(ROOT, 'chart');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  [k: string]: any;
}

const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/**
 * How the chart is rendered here: `helm template` when helm is on PATH, otherwise
 * tools/helm-render (Go text/template + Sprig, Helm's own functions), built from Debian's Go
 * packages (.ci/run installs them).
 */
export function chartRenderer(): { name: string; render(values: object, opts?: { notes?: boolean }): { ok: true; yaml: string } | { ok: false; error: string } } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tew-chart-'));
  let run: (valuesFile: string, notes: boolean) => ReturnType<typeof spawnSync>;
  let name: string;
  if (onPath('helm')) {
    name = 'helm template';
    run = (f, notes) => spawnSync('helm', ['template', 'release-name', CHART, '-f', f, ...(notes ? ['--show-only', 'templates/NOTES.txt'] : [])], { encoding: 'utf8' });
  } else {
    if (!onPath('go')) throw new Error('neither helm nor go is on PATH: run `bash .ci/run` (it installs golang-go and Sprig from Debian) or install helm');
    const bin = path.join(dir, 'helm-render');
    execFileSync('go', ['build', '-o', bin, './tools/helm-render'], {
      cwd: ROOT,
      env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: path.join(tmpdir(), 'tew-gocache'), GOFLAGS: '' },
      stdio: 'pipe',
    });
    name = 'tools/helm-render (Go text/template + Sprig)';
    run = (f, notes) => spawnSync(bin, ['--chart', CHART, '--values', f, ...(notes ? ['--notes'] : [])], { encoding: 'utf8' });
  }
  let n = 0;
  return {
    name,
    render(values, opts = {}) {
      const f = path.join(dir, `values-${n++}.json`);
      writeFileSync(f, JSON.stringify(values));
      const r = run(f, Boolean(opts.notes));
      return r.status === 0 ? { ok: true, yaml: String(r.stdout) } : { ok: false, error: String(r.stderr) };
    },
  };
}

/** values.schema.json, as Helm applies it to the merged values (JSON Schema draft 7). */
export function schemaCheck(): (values: object) => string[] {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
  const validate = ajv.compile(schema);
  return (values) => (validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`));
}

export function parseDocs(yaml: string): K8sObject[] {
  return parseAllDocuments(yaml).map((d) => d.toJS()).filter((o) => o !== null && o !== undefined);
}

/** Every object validated against its Kubernetes or Knative schema (test/deploy/validate.mjs). */
export function validateObjects(yaml: string): Array<{ kind: string; name: string; ok: boolean; error?: string }> {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'validate.mjs')], { input: yaml, encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) throw new Error(`validate.mjs failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function deepMerge<T extends object>(base: T, over: object): T {
  const out: any = structuredClone(base);
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' ? deepMerge(out[k], v) : v;
  }
  return out;
}
