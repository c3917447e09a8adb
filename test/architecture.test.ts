import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * The folders of src/ and which may import which: every import points down this list, never up
 * or sideways, no file reaches itself through its imports, and nothing in src/ imports the
 * tooling beside it (dev/, bench/). docs/DESIGN.md ("Layout") says what each folder is for.
 */
const SRC = path.join(__dirname, '..', 'src');

type Layer = 'core' | 'net' | 'telemetry' | 'config' | 'settings' | 'intake' | 'providers' | 'db' | 'email' | 'feedback' | 'worker' | 'admin' | 'commands' | 'entry';

function layerOf(rel: string): Layer {
  const [top, ...rest] = rel.split('/');
  if (rest.length === 0) {
    if (['errors.ts', 'types.ts', 'logger.ts', 'version.ts'].includes(top!)) return 'core';
    if (['app.ts', 'server.ts', 'cli.ts'].includes(top!)) return 'entry';
    throw new Error(`src/${rel}: a file at the top of src/ must be an entry point or belong to a folder of its concern`);
  }
  const known: Layer[] = ['core', 'net', 'telemetry', 'config', 'settings', 'intake', 'providers', 'db', 'email', 'feedback', 'worker', 'admin', 'commands'];
  if (known.includes(top as Layer)) return top as Layer;
  throw new Error(`src/${rel}: folder ${top} has no place in test/architecture.test.ts`);
}

const BELOW_WORKER: Layer[] = ['core', 'net', 'telemetry', 'config', 'settings', 'intake', 'providers', 'db', 'email', 'feedback'];
/** What each layer may import besides itself. */
const MAY_IMPORT: Record<Layer, Layer[]> = {
  core: [],
  net: ['core'],
  telemetry: ['core'],
  config: ['core', 'net'],
  // What the admin API and the CLI both validate (settings bodies, templates, domains).
  settings: ['core', 'net'],
  intake: ['core'],
  providers: ['core', 'net'],
  // The database layer knows nothing of rendering, sending or HTTP.
  db: ['core', 'config', 'settings'],
  // Rendering works on the event (core/event.ts), never on intake's parsing; it never queries.
  email: ['core', 'providers', 'settings'],
  // Delivery feedback: verifying and normalising provider webhooks, unsubscribe tokens. No queries.
  feedback: ['core', 'config'],
  worker: [...BELOW_WORKER],
  // The admin API and the CLI are siblings: neither imports the other.
  admin: [...BELOW_WORKER, 'worker'],
  commands: [...BELOW_WORKER, 'worker'],
  entry: [...BELOW_WORKER, 'worker', 'admin', 'commands', 'entry'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import (import, export … from, require, import()) of each file under src/. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets: string[] = [];
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const base = path.resolve(path.dirname(file), fileName);
      // src/ never imports the tooling beside it (dev/, bench/), nor anything else outside it.
      if (!base.startsWith(SRC + path.sep)) throw new Error(`${path.relative(SRC, file)} imports ${fileName}, outside src/`);
      const target = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => existsSync(c) && statSync(c).isFile());
      if (target) targets.push(path.relative(SRC, target).split(path.sep).join('/'));
      else throw new Error(`${path.relative(SRC, file)}: cannot resolve ${fileName}`);
    }
    graph.set(path.relative(SRC, file).split(path.sep).join('/'), targets);
  }
  return graph;
}

function wrongImports(graph: Map<string, string[]>): string[] {
  const wrong: string[] = [];
  for (const [from, tos] of graph) {
    for (const to of tos) {
      const a = layerOf(from);
      const b = layerOf(to);
      if (a !== b && !MAY_IMPORT[a].includes(b)) wrong.push(`${from} (${a}) imports ${to} (${b})`);
    }
  }
  return wrong;
}

function importCircles(graph: Map<string, string[]>): string[] {
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (f: string, trail: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      circles.push([...trail.slice(trail.indexOf(f)), f].join(' → '));
      return;
    }
    state.set(f, 'open');
    for (const t of graph.get(f) ?? []) visit(t, [...trail, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  return circles;
}

describe('the layers of src/', () => {
  const graph = importGraph();

  it('every import points to a layer the importing layer may use', () => {
    expect(wrongImports(graph)).toEqual([]);
  });

  it('no import circle', () => {
    expect(importCircles(graph)).toEqual([]);
  });

  it('the checks catch what they are for: an upward import, a sibling import, a circle, a loose file', () => {
    const bad = new Map([
      ['db/deliveries.ts', ['email/sender.ts', 'db/connect.ts']],
      ['commands/templates.ts', ['admin/router.ts']],
      ['db/connect.ts', ['db/deadline.ts']],
      ['db/deadline.ts', ['db/connect.ts']],
    ]);
    expect(wrongImports(bad)).toEqual(['db/deliveries.ts (db) imports email/sender.ts (email)', 'commands/templates.ts (commands) imports admin/router.ts (admin)']);
    expect(importCircles(bad)).toEqual(['db/connect.ts → db/deadline.ts → db/connect.ts']);
    expect(() => layerOf('loose.ts')).toThrow(/entry point or belong to a folder/);
    // The graph is read for real: the worker's processor imports the claim store.
    expect(graph.get('worker/processEvent.ts')).toContain('db/deliveries.ts');
  });
});
