// Validates Kubernetes and Knative objects (multi-document YAML on stdin) against their
// OpenAPI schemas with kubernetes-models and @kubernetes-models/knative (ESM-only, hence a
// separate process). Prints [{apiVersion, kind, name, ok, error?}] as JSON.
import { parseAllDocuments } from 'yaml';

const MODELS = {
  'v1/Namespace': () => import('kubernetes-models/v1/Namespace').then((m) => m.Namespace),
  'v1/Secret': () => import('kubernetes-models/v1/Secret').then((m) => m.Secret),
  'v1/ServiceAccount': () => import('kubernetes-models/v1/ServiceAccount').then((m) => m.ServiceAccount),
  'v1/Service': () => import('kubernetes-models/v1/Service').then((m) => m.Service),
  'apps/v1/Deployment': () => import('kubernetes-models/apps/v1/Deployment').then((m) => m.Deployment),
  'batch/v1/CronJob': () => import('kubernetes-models/batch/v1/CronJob').then((m) => m.CronJob),
  'batch/v1/Job': () => import('kubernetes-models/batch/v1/Job').then((m) => m.Job),
  'policy/v1/PodDisruptionBudget': () => import('kubernetes-models/policy/v1/PodDisruptionBudget').then((m) => m.PodDisruptionBudget),
  'networking.k8s.io/v1/Ingress': () => import('kubernetes-models/networking.k8s.io/v1/Ingress').then((m) => m.Ingress),
  'networking.k8s.io/v1/NetworkPolicy': () => import('kubernetes-models/networking.k8s.io/v1/NetworkPolicy').then((m) => m.NetworkPolicy),
  'serving.knative.dev/v1/Service': () => import('@kubernetes-models/knative/serving.knative.dev/v1/Service').then((m) => m.Service),
  'eventing.knative.dev/v1/Trigger': () => import('@kubernetes-models/knative/eventing.knative.dev/v1/Trigger').then((m) => m.Trigger),
  'sources.knative.dev/v1/SinkBinding': () => import('@kubernetes-models/knative/sources.knative.dev/v1/SinkBinding').then((m) => m.SinkBinding),
  'monitoring.coreos.com/v1/PrometheusRule': () => import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule').then((m) => m.PrometheusRule),
  'monitoring.coreos.com/v1/ServiceMonitor': () => import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor').then((m) => m.ServiceMonitor),
  'monitoring.coreos.com/v1/PodMonitor': () => import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor').then((m) => m.PodMonitor),
  'v1/ConfigMap': () => import('kubernetes-models/v1/ConfigMap').then((m) => m.ConfigMap),
  'eventing.knative.dev/v1/Broker': () => import('@kubernetes-models/knative/eventing.knative.dev/v1/Broker').then((m) => m.Broker),
};

let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const doc of parseAllDocuments(input)) {
  if (doc.errors.length) {
    results.push({ ok: false, error: `YAML: ${doc.errors[0].message}` });
    continue;
  }
  const obj = doc.toJS();
  if (obj === null || obj === undefined) continue;
  const key = `${obj.apiVersion}/${obj.kind}`;
  const entry = { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata?.name };
  const load = MODELS[key];
  if (!load) {
    results.push({ ...entry, ok: false, error: `no schema for ${key}` });
    continue;
  }
  const Model = await load();
  try {
    // The generated SinkBinding schema requires `status`, which only its controller writes: an
    // empty one stands in, and everything the chart renders is still checked.
    new Model(key === 'sources.knative.dev/v1/SinkBinding' && obj.status === undefined ? { ...obj, status: {} } : obj).validate();
    results.push({ ...entry, ok: true });
  } catch (err) {
    results.push({ ...entry, ok: false, error: String(err.message ?? err).slice(0, 500) });
  }
}
process.stdout.write(JSON.stringify(results));
