import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { CHART, KUBE_VERSIONS, ROOT, chartRenderer, deepMerge, dockerfileLine, parseDocs, schemaCheck, tool, validateObjects, type K8sObject } from './render';
import { loadConfig } from '../../src/config';

const defaults = parse(readFileSync(path.join(ROOT, 'chart', 'values.yaml'), 'utf8'));
const MINIMAL = { secrets: { existingSecret: 'tew-secrets' } };
const NON_DEFAULT = {
  fullnameOverride: 'mail',
  image: { repository: 'registry.example/tew', digest: `sha256:${'a'.repeat(64)}` },
  secrets: { values: { databaseUrl: 'postgres://email_worker:pw@db/app', migrationDatabaseUrl: 'postgres://email_owner:pw@db/app', encryptionKey: 'CANARY-KEY-0123456789abcdef0123456789abcdef', adminJwtSecret: 'CANARY-JWT-0123456789abcdef0123456789' } },
  config: {
    claimLeaseSeconds: 300, emailTenantFromPattern: 'noreply@{tenant}.mail.example.com', extraEnv: { LOG_LEVEL_EXTRA: 'x' },
    replyEvents: true, publicBaseUrl: 'https://email-admin.example.com', metricsTenantLabels: ['acme', 'globex'], smtpAllowedHosts: ['relay.mail.svc.cluster.local', '10.20.0.0/16'], otlpEndpoint: 'http://otel-collector.observability:4318',
  },
  worker: { networkPolicy: { enabled: true, allowNamespaces: ['knative-eventing', 'knative-serving', 'monitoring'] }, visibility: 'external', containerConcurrency: 10, maxInFlightEvents: 10, timeoutSeconds: 120, autoscaling: { minScale: 1, maxScale: 5 } },
  eventing: { broker: 'platform', eventTypes: ['codetether.task.created', 'codetether.task.failed'], requireTenant: true, delivery: { retry: 9, timeoutSeconds: 45 }, deadLetterSink: { uri: 'http://dls.ops.svc.cluster.local', store: false } },
  admin: { enabled: true, replicas: 3, issuer: 'https://auth.example', sinkBinding: { enabled: true }, ingress: { enabled: true, className: 'nginx', host: 'email-admin.example.com', tlsSecretName: 'email-admin-tls' } },
};

describe('Helm chart', () => {
  const renderer = chartRenderer();
  const checkSchema = schemaCheck();
  const render = (over: object) => {
    expect(checkSchema(deepMerge(defaults, over))).toEqual([]);
    const r = renderer.render(over);
    if (!r.ok) throw new Error(r.error);
    return { yaml: r.yaml, objects: parseDocs(r.yaml) };
  };
  const find = (objs: K8sObject[], kind: string, pred: (o: K8sObject) => boolean = () => true) => objs.filter((o) => o.kind === kind && pred(o));
  const ksvcWorker = (objs: K8sObject[]) => find(objs, 'Service', (o) => o.apiVersion === 'serving.knative.dev/v1' && o.spec.template.metadata.labels['app.kubernetes.io/component'] === 'worker')[0]!;
  const isoSeconds = (d: string) => Number(/^PT(\d+)S$/.exec(d)![1]);

  afterAll(() => renderer.dispose());

  it.each([
    ['defaults (with an existing Secret)', MINIMAL],
    ['non-default values', NON_DEFAULT],
  ])('helm lint --strict passes with %s', (_n, values) => {
    const f = path.join(mkdtempSync(path.join(tmpdir(), 'tew-lint-')), 'values.json');
    writeFileSync(f, JSON.stringify(values));
    try {
      const r = spawnSync(tool('helm'), ['lint', '--strict', CHART, '-f', f], { encoding: 'utf8' });
      expect({ status: r.status, out: r.stdout + r.stderr }).toMatchObject({ status: 0 });
      expect(r.stdout + r.stderr).not.toMatch(/\[(WARNING|ERROR)\]/);
    } finally {
      rmSync(path.dirname(f), { recursive: true, force: true });
    }
  });

  it.each(KUBE_VERSIONS.flatMap((v) => [[v, 'defaults', MINIMAL], [v, 'non-default values', NON_DEFAULT]] as const))(
    'Kubernetes %s, %s: renders and every object validates',
    (kubeVersion, _n, values) => {
      const r = renderer.render(values, { kubeVersion });
      if (!r.ok) throw new Error(r.error);
      expect(validateObjects(r.yaml).filter((x) => !x.ok)).toEqual([]);
    },
  );

  it('refuses a Kubernetes older than Chart.yaml\'s kubeVersion', () => {
    const r = renderer.render(MINIMAL, { kubeVersion: '1.27.9' });
    expect(r.ok).toBe(false);
    expect((r as { error: string }).error).toMatch(/kubeVersion|incompatible/i);
  });

  it.each([
    ['defaults (with an existing Secret)', MINIMAL],
    ['non-default values', NON_DEFAULT],
  ])('%s: every object validates against the Kubernetes and Knative schemas', (_n, values) => {
    const { yaml, objects } = render(values);
    const results = validateObjects(yaml);
    expect(results.length).toBe(objects.length);
    expect(results.filter((r) => !r.ok)).toEqual([]);
  });

  it.each([
    ['defaults', MINIMAL],
    ['non-default values', NON_DEFAULT],
  ])('%s: Triggers have a full delivery block with a DLS and a timeout below timeoutSeconds', (_n, values) => {
    const { objects } = render(values);
    const ksvc = ksvcWorker(objects);
    const triggers = find(objects, 'Trigger');
    const merged = deepMerge(defaults, values);
    expect(triggers.map((t) => t.spec.filter.attributes.type)).toEqual(merged.eventing.eventTypes);
    for (const t of triggers) {
      expect(t.spec.broker).toBe(merged.eventing.broker);
      expect(t.spec.subscriber.ref).toEqual({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: ksvc.metadata.name });
      expect(Object.keys(t.spec.delivery).sort()).toEqual(['backoffDelay', 'backoffPolicy', 'deadLetterSink', 'retry', 'timeout']);
      expect(t.spec.delivery.deadLetterSink.uri ?? t.spec.delivery.deadLetterSink.ref).toBeTruthy();
      expect(isoSeconds(t.spec.delivery.timeout)).toBeLessThan(ksvc.spec.template.spec.timeoutSeconds);
    }
  });

  it('defaults: a cluster-local worker with the admin API off, secure pods, the key from a Secret, and the migration hook', () => {
    const { objects } = render(MINIMAL);
    const ksvc = ksvcWorker(objects);
    expect(ksvc.metadata.labels!['networking.knative.dev/visibility']).toBe('cluster-local');
    const spec = ksvc.spec.template.spec;
    expect(spec.containerConcurrency).toBe(32);
    expect(spec.timeoutSeconds).toBe(60);
    const c = spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    expect(env.ADMIN_API_ENABLED.value).toBe('false');
    expect(env.DB_ENCRYPTION_KEY).toEqual({ name: 'DB_ENCRYPTION_KEY', valueFrom: { secretKeyRef: { name: 'tew-secrets', key: 'DB_ENCRYPTION_KEY' } } });
    expect(env.DATABASE_URL.valueFrom.secretKeyRef.name).toBe('tew-secrets');
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    // The uid the image's compile cache was made for (node files it under the uid; another starts without it).
    expect(`USER ${c.securityContext.runAsUser}:${c.securityContext.runAsGroup}`).toBe(dockerfileLine('USER ', 'compile-cache'));
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(ksvc.spec.template.metadata.annotations).toMatchObject({ 'autoscaling.knative.dev/min-scale': '0', 'autoscaling.knative.dev/max-scale': '20', 'autoscaling.knative.dev/target': '24' });
    // No ConfigMap carries anything; no Secret is created when an existing one is named.
    expect(find(objects, 'ConfigMap')).toEqual([]);
    expect(find(objects, 'Secret')).toEqual([]);
    const job = find(objects, 'Job')[0]!;
    expect(job.metadata.annotations!['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    // Kept after it ran (its logs readable) until the next hook run or its TTL.
    expect(job.metadata.annotations!['helm.sh/hook-delete-policy']).toBe('before-hook-creation');
    expect(job.spec.ttlSecondsAfterFinished).toBe(86400);
    expect(job.spec.template.spec.containers[0].args).toEqual(['migrate']);
    expect(job.spec.template.spec.containers[0].env[0]).toEqual({ name: 'MIGRATION_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'tew-secrets', key: 'MIGRATION_DATABASE_URL' } } });
    expect(find(objects, 'Deployment')).toEqual([]);
    // The default dead letter sink is the worker's own store: its Knative Service, at /dead-letters,
    // and the worker (the admin API off) serves it; no event_display any more.
    const dlsSink = find(objects, 'Trigger')[0]!.spec.delivery.deadLetterSink;
    expect(dlsSink).toEqual({ ref: { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: ksvcWorker(objects).metadata.name }, uri: '/dead-letters' });
    expect(ksvcWorker(objects).spec.template.spec.containers[0].env.find((e: any) => e.name === 'ADMIN_API_ENABLED').value).toBe('false');
    expect(JSON.stringify(objects)).not.toMatch(/event_display|event-display/);
    // The store's CronJobs: a purge, and a replay of quota_exceeded dead letters after midnight UTC
    // to the broker's ingress, both through the maintenance connection.
    const cron = Object.fromEntries(find(objects, 'CronJob').map((j) => [j.metadata.name, j.spec]));
    expect(Object.keys(cron).sort()).toEqual(['release-name-tenant-email-worker-dl-purge', 'release-name-tenant-email-worker-dl-replay-quota']);
    const replay = cron['release-name-tenant-email-worker-dl-replay-quota']!;
    expect([replay.schedule, replay.timeZone, replay.concurrencyPolicy]).toEqual(['5 0 * * *', 'Etc/UTC', 'Forbid']);
    const rc = replay.jobTemplate.spec.template.spec.containers[0];
    expect(rc.args).toEqual(['dead-letters', 'replay', '--code', 'quota_exceeded', '--not-replayed', '--limit', '100000', '--rate', '10']);
    expect(Object.fromEntries(rc.env.map((e: any) => [e.name, e.value ?? e.valueFrom.secretKeyRef.key]))).toMatchObject({ MAINTENANCE_DATABASE_URL: 'MAINTENANCE_DATABASE_URL', BROKER_URL: 'http://broker-ingress.knative-eventing.svc.cluster.local/default/default' });
    expect(cron['release-name-tenant-email-worker-dl-purge']!.jobTemplate.spec.template.spec.containers[0].args).toEqual(['dead-letters', 'purge', '--older-than-days', '30']);
  });

  it('non-default values: a created Secret (a hook, kept), the admin Deployment, Service, PDB and Ingress, tenant filter', () => {
    const { objects, yaml } = render(NON_DEFAULT);
    const secret = find(objects, 'Secret')[0]!;
    expect(secret.metadata.annotations).toMatchObject({ 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/resource-policy': 'keep' });
    expect(Buffer.from(secret.data!.DB_ENCRYPTION_KEY!, 'base64').toString()).toBe(NON_DEFAULT.secrets.values.encryptionKey);
    // The key is only in the Secret: nowhere else in the rendered manifests.
    expect(yaml.split(NON_DEFAULT.secrets.values.encryptionKey).length).toBe(1);
    const ksvc = ksvcWorker(objects);
    expect(ksvc.metadata.name).toBe('mail');
    expect(ksvc.metadata.labels!['networking.knative.dev/visibility']).toBeUndefined();
    expect(ksvc.spec.template.spec.containers[0].image).toBe(`registry.example/tew@sha256:${'a'.repeat(64)}`);
    const deployment = find(objects, 'Deployment')[0]!;
    expect(deployment.spec.replicas).toBe(3);
    const adminEnv = Object.fromEntries(deployment.spec.template.spec.containers[0].env.map((e: any) => [e.name, e]));
    expect(adminEnv.ADMIN_API_ENABLED.value).toBe('true');
    const policy = find(objects, 'NetworkPolicy')[0]!;
    expect(policy.spec.podSelector.matchLabels).toEqual({ ...ksvc.spec.template.metadata.labels, 'app.kubernetes.io/component': 'worker' });
    expect(policy.spec.ingress[0].from.map((f: any) => f.namespaceSelector.matchLabels['kubernetes.io/metadata.name'])).toEqual(['knative-eventing', 'knative-serving', 'monitoring']);
    // Behind the chart's Ingress, the failed-auth limit counts real clients.
    expect([adminEnv.TRUST_PROXY.value, adminEnv.ADMIN_AUTH_FAILURE_LIMIT.value]).toEqual(['1', '20']);
    expect(adminEnv.ADMIN_JWT_SECRET.valueFrom.secretKeyRef).toMatchObject({ name: 'mail-secrets', key: 'ADMIN_JWT_SECRET' });
    expect(deployment.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(find(objects, 'PodDisruptionBudget')[0]!.spec.minAvailable).toBe(1);
    // The admin API, the provider webhooks and the unsubscribe links; never the event endpoint.
    expect(find(objects, 'Ingress')[0]!.spec.rules[0].http.paths.map((p: any) => p.path)).toEqual(['/api/v1/admin', '/api/v1/webhooks', '/api/v1/unsubscribe']);
    expect(adminEnv.PUBLIC_BASE_URL.value).toBe('https://email-admin.example.com');
    expect(adminEnv.DB_POOLER).toBeUndefined();
    const pooled = renderer.render({ ...MINIMAL, database: { pooler: 'pgbouncer' } });
    expect(pooled.ok && ksvcWorker(parseDocs(pooled.yaml)).spec.template.spec.containers[0].env.find((e: any) => e.name === 'DB_POOLER')?.value).toBe('pgbouncer');
    // Delivery-feedback events: K_SINK injected into the admin Deployment, pointing at the Broker.
    expect(find(objects, 'SinkBinding')[0]!.spec).toMatchObject({ subject: { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name }, sink: { ref: { kind: 'Broker', name: 'platform' } } });
    const triggers = find(objects, 'Trigger');
    expect(triggers).toHaveLength(2);
    expect(triggers[1]!.spec.filters).toEqual([{ exact: { type: 'codetether.task.failed' } }, { cesql: 'EXISTS tenant' }]);
    expect(triggers[0]!.spec.delivery).toMatchObject({ retry: 9, timeout: 'PT45S', deadLetterSink: { uri: 'http://dls.ops.svc.cluster.local' } });
    const env = Object.fromEntries(ksvc.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    expect(env.EVENT_TYPES).toBe('codetether.task.created,codetether.task.failed');
    expect(env.EMAIL_TENANT_FROM_PATTERN).toBe('noreply@{tenant}.mail.example.com');
    expect(env).toMatchObject({ ALLOW_PRIVATE_SMTP_HOSTS: 'false', SMTP_ALLOWED_HOSTS: 'relay.mail.svc.cluster.local,10.20.0.0/16', REPLY_EVENTS: 'true', METRICS_TENANT_LABELS: 'acme,globex', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.observability:4318' });
  });

  it.each([
    ['no Secret at all', {}, /secrets.values.databaseUrl is required/],
    ['a short encryption key', { secrets: { values: { databaseUrl: 'postgres://a@b/c', migrationDatabaseUrl: 'postgres://a@b/c', encryptionKey: 'short' } } }, /at least 32 characters/],
    ['a Trigger timeout not below timeoutSeconds', { ...MINIMAL, eventing: { delivery: { timeoutSeconds: 60 } } }, /must be below worker.timeoutSeconds/],
    ['a provider timeout that does not fit twice', { ...MINIMAL, config: { providerTimeoutMs: 20000 } }, /× 2 .* must fit/],
    ['a lease too short for one provider call', { ...MINIMAL, config: { claimLeaseSeconds: 12 } }, /claimLeaseSeconds \(12\) is too short for config\.providerTimeoutMs \(10000\).*at least 13/],
    ['more concurrency than in-flight events', { ...MINIMAL, worker: { containerConcurrency: 100, eventsPerConnection: 25 } }, /containerConcurrency \(100\) must be at most worker\.maxInFlightEvents \(64\)/],
    ['more concurrency than the pod\'s pool serves', { ...MINIMAL, worker: { containerConcurrency: 40 } }, /worker\.containerConcurrency \(40\) is more than the pod's pool serves: config\.dbPoolMax \(4\) × worker\.eventsPerConnection \(8\) = 32/],
    ['reply events with a reply type among the Triggers', { ...MINIMAL, config: { replyEvents: true }, eventing: { eventTypes: ['codetether.task.created', 'codetether.email.sent'] } }, /would receive its own replies/],
    ['no dead letter sink', { ...MINIMAL, eventing: { deadLetterSink: { store: false } } }, /without a dead letter sink/],
    ['dead-letter CronJobs without a maintenance URL', { secrets: { values: { databaseUrl: 'postgres://a@b/c', migrationDatabaseUrl: 'postgres://a@b/c', encryptionKey: 'k'.repeat(40) } } }, /need secrets\.values\.maintenanceDatabaseUrl/],
    ['retries that end before a crashed attempt’s claim lease (4 from PT1S: 15 s < 30 s)', { ...MINIMAL, eventing: { delivery: { retry: 4 } } }, /the broker's retries span 15 s \(retry 4, exponential from PT1S\), which must outlast config\.claimLeaseSeconds \(30\)/],
    ['linear retries that end with the lease (10+20 s = 30 s)', { ...MINIMAL, eventing: { delivery: { retry: 2, backoffPolicy: 'linear', backoffDelay: 'PT10S' } } }, /retries span 30 s \(retry 2, linear from PT10S\)/],
    ['a lease longer than the retries (300 s against 255 s)', { ...MINIMAL, config: { claimLeaseSeconds: 300 } }, /retries span 255 s .*config\.claimLeaseSeconds \(300\)/],
    ['more connections at full scale than the database allows', { ...MINIMAL, config: { dbPoolMax: 10 } }, /connection budget: worker\.autoscaling\.maxScale \(20\) × config\.dbPoolMax \(10\) \+ 1 \(migration Job\) \+ 4 \(dead-letter CronJobs\) = 205 connections, more than database\.maxConnections \(100\) − database\.reservedConnections \(3\) = 97/],
    ['the admin API without a token check', { secrets: { values: { databaseUrl: 'postgres://a@b/c', migrationDatabaseUrl: 'postgres://a@b/c', maintenanceDatabaseUrl: 'postgres://m@b/c', encryptionKey: 'k'.repeat(40) } }, admin: { enabled: true } }, /admin.enabled needs/],
  ])('fails on %s, saying why', (_n, values, message) => {
    const r = renderer.render(values);
    expect(r.ok).toBe(false);
    expect((r as { error: string }).error).toMatch(message);
  });

  it.each([
    ['an unknown key', { worker: { concurrency: 3 } }, /must NOT have additional properties/],
    ['a wrong type', { worker: { timeoutSeconds: '60' } }, /must be integer/],
    ['a bad event type', { eventing: { eventTypes: ['bad type'] } }, /must match pattern/],
    ['a bad backoff delay', { eventing: { delivery: { backoffDelay: '1s' } } }, /must match pattern/],
  ])('values.schema.json refuses %s', (_n, values, message) => {
    expect(checkSchema(deepMerge(defaults, values)).join('\n')).toMatch(message);
  });

  it('admin.databaseRole: the admin Deployment connects as its own role and the migration grants it (ADMIN_DB_ROLE); unset, both connect as the worker role', () => {
    const admin = { ...MINIMAL, admin: { enabled: true, jwksUrl: 'https://auth.example/jwks' } };
    const urlKey = (objs: K8sObject[], o: K8sObject | undefined) => o!.spec.template.spec.containers[0].env.find((e: any) => e.name === 'DATABASE_URL').valueFrom.secretKeyRef.key;
    const adminRole = (objs: K8sObject[]) => find(objs, 'Job')[0]!.spec.template.spec.containers[0].env.find((e: any) => e.name === 'ADMIN_DB_ROLE')?.value;
    const own = render({ ...admin, admin: { ...admin.admin, databaseRole: 'email_admin' } }).objects;
    expect(urlKey(own, find(own, 'Deployment')[0])).toBe('ADMIN_DATABASE_URL');
    expect(urlKey(own, ksvcWorker(own))).toBe('DATABASE_URL');
    expect(adminRole(own)).toBe('email_admin');
    const shared = render(admin).objects;
    expect(urlKey(shared, find(shared, 'Deployment')[0])).toBe('DATABASE_URL');
    expect(adminRole(shared)).toBeUndefined();
    const created = renderer.render({ secrets: { values: { databaseUrl: 'postgres://a@b/c', migrationDatabaseUrl: 'postgres://a@b/c', maintenanceDatabaseUrl: 'postgres://m@b/c', encryptionKey: 'k'.repeat(40) } }, admin: { enabled: true, jwksUrl: 'https://auth.example/jwks', databaseRole: 'email_admin' } });
    expect(created.ok ? '' : created.error).toMatch(/secrets\.values\.adminDatabaseUrl is required with admin\.databaseRole/);
  });

  it('comments every value in values.yaml', () => {
    const lines = readFileSync(path.join(ROOT, 'chart', 'values.yaml'), 'utf8').split('\n');
    // Quantities inside a commented `resources:` block (cpu, memory) speak for themselves.
    const uncommented = lines.filter((l, i) => /^\s*[A-Za-z]+:/.test(l) && !/^\s*#/.test(lines[i - 1] ?? '') && !/^\s*[A-Za-z]+:\s*$/.test(l) && !/^\s+(cpu|memory):/.test(l));
    expect(uncommented).toEqual([]);
  });

  it('chart/README.md has the values table generated from values.yaml (npm run docs:chart), and helm show readme prints it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tew-readme-'));
    try {
      const readme = path.join(dir, 'README.md');
      copyFileSync(path.join(CHART, 'README.md'), readme);
      const gen = spawnSync(process.execPath, [require.resolve('@bitnami/readme-generator-for-helm/bin/index.js'), '--values', path.join(CHART, 'values.yaml'), '--readme', readme], { encoding: 'utf8' });
      expect({ status: gen.status, out: gen.stdout + gen.stderr }).toMatchObject({ status: 0 });
      const committed = readFileSync(path.join(CHART, 'README.md'), 'utf8');
      if (readFileSync(readme, 'utf8') !== committed) throw new Error('chart/README.md is stale: run `npm run docs:chart` and commit it');
      const shown = spawnSync(tool('helm'), ['show', 'readme', CHART], { encoding: 'utf8' });
      expect(shown.stdout.trim()).toBe(committed.trim());
      expect(committed).toMatch(/\| `config\.senderDomainPolicy` +\|/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints next steps in NOTES.txt', () => {
    const r = renderer.render(MINIMAL, { notes: true });
    expect(r.ok).toBe(true);
    expect((r as { yaml: string }).yaml).toContain('kubectl -n default get ksvc release-name-tenant-email-worker');
    expect((r as { yaml: string }).yaml).toContain('kubectl -n default logs job/release-name-tenant-email-worker-migrate');
  });

  it("states the connection budget, counts the admin API's pools, and skips the check at database.maxConnections=0", () => {
    const notes = (v: object) => {
      const r = renderer.render(v, { notes: true });
      if (!r.ok) throw new Error(r.error);
      return /Database connections at full scale: .*/.exec(r.yaml)![0];
    };
    expect(notes(MINIMAL)).toBe('Database connections at full scale: 85 of database.maxConnections 100 (3 reserved).'); // 20 × 4 + 1 + 2 CronJobs × 2
    expect(notes(NON_DEFAULT)).toBe('Database connections at full scale: 33 of database.maxConnections 100 (3 reserved).'); // 5 × 4 + 3 × 4 + 1
    const big = { ...MINIMAL, config: { dbPoolMax: 10 }, database: { maxConnections: 0 } };
    expect(notes(big)).toBe('Database connections at full scale: 205 (database.maxConnections=0: not checked).');
    expect(renderer.render({ ...MINIMAL, config: { dbPoolMax: 10 }, database: { maxConnections: 500 } }).ok).toBe(true);
  });

  it('sizes containerConcurrency to the pool, passes DB_POOL_WAIT_MS, and says so in NOTES; with a pooler, NOTES say what the budget then counts', () => {
    const rendered = (v: object) => {
      const r = renderer.render(v, { notes: true });
      if (!r.ok) throw new Error(r.error);
      return { ksvc: ksvcWorker(render(v).objects), notes: r.yaml };
    };
    const sized = rendered({ ...MINIMAL, config: { dbPoolMax: 3, dbPoolWaitMs: 750 }, worker: { eventsPerConnection: 5 } });
    expect(sized.ksvc.spec.template.spec.containerConcurrency).toBe(15);
    const env = Object.fromEntries(sized.ksvc.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    expect([env.DB_POOL_MAX, env.DB_POOL_WAIT_MS]).toEqual(['3', '750']);
    expect(sized.notes).toContain('Each worker pod admits 15 events at once on 3 connections; an event waits 750 ms at most for one');
    expect(sized.notes).not.toContain('PgBouncer');
    expect(rendered({ ...MINIMAL, worker: { containerConcurrency: 20 } }).ksvc.spec.template.spec.containerConcurrency).toBe(20);
    // Sized to a large pool, it stays within MAX_IN_FLIGHT_EVENTS.
    expect(rendered({ ...MINIMAL, config: { dbPoolMax: 10 }, database: { maxConnections: 0 } }).ksvc.spec.template.spec.containerConcurrency).toBe(64);
    expect(rendered({ ...MINIMAL, database: { pooler: 'pgbouncer' } }).notes).toContain("database.maxConnections is then the pooler's max_client_conn");
  });

  it("NOTES fills in k8s/REPLAY.md's variables with the names this release's objects really have", () => {
    const notes = renderer.render(MINIMAL, { notes: true, release: 'tew' });
    if (!notes.ok) throw new Error(notes.error);
    const vars = Object.fromEntries([...notes.yaml.matchAll(/^ +([A-Z_]+)=(.+)$/gm)].map((m) => [m[1], m[2]]));
    const { objects } = render(MINIMAL);
    const renderedAs = renderer.render(MINIMAL, { release: 'tew' });
    if (!renderedAs.ok) throw new Error(renderedAs.error);
    const objs = parseDocs(renderedAs.yaml);
    const ksvc = ksvcWorker(objs);
    expect(objects.length).toBe(objs.length);
    expect(vars).toEqual({
      NS: 'default',
      WORKER: ksvc.metadata.name,
      IMAGE: ksvc.spec.template.spec.containers[0].image,
      SECRET: 'tew-secrets',
      BROKER: "$(kubectl -n default get broker default -o jsonpath='{.status.address.url}')",
    });
    expect(vars.WORKER).toBe('tew-tenant-email-worker');
    expect(notes.yaml).toContain(`logs -l serving.knative.dev/service=${vars.WORKER} -c ${ksvc.spec.template.spec.containers[0].name}`);
    // The store's own commands are printed; with a sink of the platform's own they are not.
    expect(notes.yaml).toContain('"dead-letters","list","--tenant","acme"');
    const own = renderer.render({ ...MINIMAL, eventing: { deadLetterSink: { uri: 'http://dls.ops.svc.cluster.local' } } }, { notes: true });
    expect(own.ok && own.yaml).not.toMatch(/dead-letters","list/);
  });
});

describe('k8s/ (kustomize)', () => {
  it('renders with kubectl kustomize and every object validates; same contract as the chart', () => {
    const r = spawnSync(tool('kubectl'), ['kustomize', path.join(ROOT, 'k8s')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const objects = parseDocs(r.stdout);
    expect(validateObjects(r.stdout).filter((x) => !x.ok)).toEqual([]);
    expect(objects.map((o) => o.kind).sort()).toEqual(['Broker', 'Job', 'Namespace', 'Secret', 'Service', 'Trigger']);
    const ksvc = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'tenant-email-worker')!;
    const trigger = objects.find((o) => o.kind === 'Trigger')!;
    expect(Number(/^PT(\d+)S$/.exec(trigger.spec.delivery.timeout)![1])).toBeLessThan(ksvc.spec.template.spec.timeoutSeconds);
    expect(trigger.spec.delivery.deadLetterSink).toEqual({ ref: { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: 'tenant-email-worker' }, uri: '/dead-letters' });
    // The retries outlast the worker's default claim lease (30 s): 1+2+…+2^(retry-1) seconds.
    expect([trigger.spec.delivery.backoffPolicy, trigger.spec.delivery.backoffDelay]).toEqual(['exponential', 'PT1S']);
    expect(2 ** trigger.spec.delivery.retry - 1).toBeGreaterThan(loadConfig({}).claimLeaseSeconds);
    expect(ksvc.spec.template.spec.containers[0].env.find((e: any) => e.name === 'CLAIM_LEASE_SECONDS')).toBeUndefined();
    const c = ksvc.spec.template.spec.containers[0];
    expect(c.image).toBe('ghcr.io/codetether/tenant-email-worker:0.1.0');
    // k8s/REPLAY.md's variables name these very objects.
    const replay = readFileSync(path.join(ROOT, 'k8s', 'REPLAY.md'), 'utf8');
    const vars = Object.fromEntries([...replay.matchAll(/^([A-Z_]+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
    expect(vars).toMatchObject({ NS: ksvc.metadata.namespace, WORKER: ksvc.metadata.name, IMAGE: c.image });
    expect(vars.DEAD_LETTERS).toBeUndefined();
    expect(replay).not.toMatch(/kubectl -n tenant-email|service=tenant-email-worker/);
    expect(c.env.find((e: any) => e.name === 'DB_ENCRYPTION_KEY').valueFrom.secretKeyRef.name).toBe('tenant-email-worker-secrets');
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
    for (const f of ['task-created.json', 'no-recipient.json']) {
      expect(JSON.parse(readFileSync(path.join(ROOT, 'k8s', 'events', f), 'utf8'))).toMatchObject({ specversion: '1.0', type: 'codetether.task.created' });
    }
  });
});
