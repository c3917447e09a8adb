import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.join(__dirname, '..', '..');
export const CHART = path.join(ROOT, 'chart');

/**
 * The first Dockerfile instruction that starts with `prefix` (`ENTRYPOINT `, `USER `, …), in the
 * stage named `stage` when one is given (from its FROM line on), else anywhere.
 */
export function dockerfileLine(prefix: string, stage?: string): string {
  const lines = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').split('\n');
  const from = stage === undefined ? 0 : lines.findIndex((l) => l.startsWith('FROM ') && l.endsWith(` AS ${stage}`));
  if (from < 0) throw new Error(`the Dockerfile has no stage ${stage}`);
  const line = lines.slice(from).find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`the Dockerfile has no ${prefix.trim()}${stage ? ` in stage ${stage}` : ''}`);
  return line;
}

/** The argv of an exec-form Dockerfile instruction (`ENTRYPOINT [...]`, `RUN [...]`). */
export const dockerfileExec = (instruction: 'ENTRYPOINT' | 'RUN', stage?: string): string[] =>
  JSON.parse(dockerfileLine(`${instruction} [`, stage).slice(instruction.length + 1)) as string[];

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  [k: string]: any;
}

/** The real helm and kubectl, and the image's Node.js major (scripts/test-tools.js; the suite's global setup names them). */
export function tool(name: 'helm' | 'kubectl' | 'node22'): string {
  const bin = process.env[`TEW_${name.toUpperCase()}`];
  if (!bin) throw new Error(`no ${name}: run the suite with \`npm test\` (its global setup runs scripts/test-tools.js)`);
  return bin;
}

/** The oldest and newest Kubernetes the chart is rendered for (Chart.yaml's kubeVersion floor). */
export const KUBE_VERSIONS = ['1.28.0', '1.35.0'] as const;

export type Rendered = { ok: true; yaml: string } | { ok: false; error: string };

/** `helm template` of the chart with the given values (written to a file, as a user's -f); with `notes`, what NOTES.txt prints. */
export function chartRenderer(): { render(values: object, opts?: { notes?: boolean; kubeVersion?: string; release?: string }): Rendered; dispose(): void } {
  // Made on the first render: a run that skips every test of the file never runs afterAll either.
  let dir: string | undefined;
  const helm = tool('helm');
  let n = 0;
  return {
    render(values, opts = {}) {
      dir ??= mkdtempSync(path.join(tmpdir(), 'tew-chart-'));
      const f = path.join(dir, `values-${n++}.json`);
      writeFileSync(f, JSON.stringify(values));
      // NOTES.txt is not a manifest: `helm template` never prints it, a client-side install does.
      const args = [opts.notes ? 'install' : 'template', opts.release ?? 'release-name', CHART, '-f', f, ...(opts.notes ? ['--dry-run=client'] : [])];
      if (opts.kubeVersion) args.push('--kube-version', opts.kubeVersion);
      const r = spawnSync(helm, args, { encoding: 'utf8' });
      if (r.status !== 0) return { ok: false, error: String(r.stderr) };
      const out = String(r.stdout);
      if (!opts.notes) return { ok: true, yaml: out };
      const at = out.indexOf('\nNOTES:\n');
      return at < 0 ? { ok: false, error: 'helm printed no NOTES' } : { ok: true, yaml: out.slice(at + 8) };
    },
    dispose() {
      if (dir) rmSync(dir, { recursive: true, force: true });
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
