import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse } from 'yaml';
import { ERRORS } from '../../src/errors';
import { WorkerMetrics } from '../../src/telemetry/metrics';
import { ROOT, chartRenderer, deepMerge, parseDocs, schemaCheck, validateObjects, type K8sObject } from './render';

/**
 * The chart's dashboard and alerts name only metrics the worker exports: every PromQL expression
 * is parsed with Prometheus's own grammar (@prometheus-io/lezer-promql), its metric names are
 * taken from the parse tree, and each must be one the worker's registry serves.
 */
const MINIMAL = { secrets: { existingSecret: 'tew-secrets' } };
const MONITORING = { ...MINIMAL, admin: { enabled: true, jwksUrl: 'https://auth.example/jwks' }, monitoring: { dashboard: { enabled: true }, prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' } }, serviceMonitor: { enabled: true } } };

/** Every series name /metrics can carry: histograms as _bucket, _sum and _count. */
async function exportedNames(): Promise<Set<string>> {
  const m = new WorkerMetrics({ eventTypes: ['codetether.task.created'], tenantLabels: [] }, () => 0);
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(metric.name + s);
  }
  return names;
}

/** The metric names an expression selects; throws on anything the PromQL grammar does not accept. */
function metricNames(expr: string): string[] {
  const tree = parser.parse(expr);
  const names: string[] = [];
  const errors: number[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'VectorSelector') {
        const id = node.node.getChild('Identifier');
        if (id) names.push(expr.slice(id.from, id.to));
      }
    },
  });
  if (errors.length > 0) throw new Error(`not valid PromQL at ${errors[0]}: ${expr}`);
  return names;
}

describe('monitoring: dashboard, alerts and scrape config', () => {
  const renderer = chartRenderer();
  let objects: K8sObject[];
  let yaml: string;
  beforeAll(() => {
    expect(schemaCheck()(deepMerge(parse(readFileSync(path.join(ROOT, 'chart', 'values.yaml'), 'utf8')), MONITORING))).toEqual([]);
  });
  afterAll(() => renderer.dispose());

  it('renders with the real helm and every object validates (ConfigMap, PrometheusRule, PodMonitor, ServiceMonitor)', () => {
    const r = renderer.render(MONITORING);
    if (!r.ok) throw new Error(r.error);
    yaml = r.yaml;
    objects = parseDocs(yaml);
    expect(validateObjects(yaml).filter((x) => !x.ok)).toEqual([]);
    const kinds = objects.map((o) => o.kind);
    for (const k of ['ConfigMap', 'PrometheusRule', 'PodMonitor', 'ServiceMonitor']) expect(kinds).toContain(k);
    const cm = objects.find((o) => o.kind === 'ConfigMap')!;
    expect(cm.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    expect(objects.find((o) => o.kind === 'PrometheusRule')!.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
    // Off by default.
    const plain = renderer.render(MINIMAL);
    expect(plain.ok && parseDocs(plain.yaml).map((o) => o.kind)).not.toContain('PrometheusRule');
  });

  it('every panel and alert expression is valid PromQL naming only metrics the worker exports', async () => {
    const exported = await exportedNames();
    const dashboard = JSON.parse(objects.find((o) => o.kind === 'ConfigMap')!.data!['tenant-email-worker.json']!) as { panels: Array<{ title: string; description: string; targets: Array<{ expr: string }> }> };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(12);
    const rules = objects.find((o) => o.kind === 'PrometheusRule')!.spec.groups.flatMap((g: { rules: unknown[] }) => g.rules) as Array<{ alert: string; expr: string; annotations: Record<string, string> }>;
    const exprs = [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...rules.map((r) => r.expr)];
    const unknown: string[] = [];
    for (const e of exprs) {
      const names = metricNames(e);
      expect(names.length).toBeGreaterThan(0);
      for (const n of names) if (!exported.has(n)) unknown.push(`${n} (in ${e})`);
    }
    expect(unknown).toEqual([]);
    // Every panel says what it answers, and the README lists each with that answer.
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const p of dashboard.panels) {
      expect(p.description.length).toBeGreaterThan(20);
      expect(readme).toContain(`| ${p.title} | ${p.description} |`);
    }
  });

  it("each alert has a runbook_url whose anchor is a section of docs/RUNBOOK.md, and the 5xx alert's codes are exactly the registry's", () => {
    const runbook = readFileSync(path.join(ROOT, 'docs', 'RUNBOOK.md'), 'utf8');
    const anchors = new Set([...runbook.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')));
    const rules = objects.find((o) => o.kind === 'PrometheusRule')!.spec.groups.flatMap((g: { rules: unknown[] }) => g.rules) as Array<{ alert: string; expr: string; annotations: Record<string, string> }>;
    expect(rules.length).toBeGreaterThanOrEqual(6);
    for (const r of rules) {
      const url = r.annotations.runbook_url!;
      expect(url).toMatch(/docs\/RUNBOOK\.md#/);
      expect([r.alert, anchors.has(url.split('#')[1]!)]).toEqual([r.alert, true]);
    }
    const serverErrors = rules.find((r) => r.alert === 'TenantEmailServerErrors')!.expr;
    const codes = /error_code=~"([^"]+)"/.exec(serverErrors)![1]!.split('|').sort();
    expect(codes).toEqual(Object.entries(ERRORS).filter(([, s]) => s.status >= 500).map(([c]) => c).sort());
  });
});
