import type { Context } from '@opentelemetry/api';
import { NodeTracerProvider, type ReadableSpan, type Span, type SpanProcessor } from '@opentelemetry/sdk-trace-node';
import { canaryReport, noteOutput } from './canary';

// Every span any in-process worker ends — name, attributes, events, status — goes past the
// canary check too. A file that wants the spans themselves adds a processor to testSpanProcessors
// (one global provider per process: OpenTelemetry keeps the first one registered).
export const testSpanProcessors: SpanProcessor[] = [];
const canarySpans: SpanProcessor = {
  onStart: (span: Span, ctx: Context) => testSpanProcessors.forEach((p) => p.onStart(span, ctx)),
  onEnd: (span: ReadableSpan) => {
    noteOutput('span', JSON.stringify({ name: span.name, attributes: span.attributes, events: span.events, status: span.status }));
    testSpanProcessors.forEach((p) => p.onEnd(span));
  },
  forceFlush: async () => void (await Promise.all(testSpanProcessors.map((p) => p.forceFlush()))),
  shutdown: async () => void (await Promise.all(testSpanProcessors.map((p) => p.shutdown()))),
};
new NodeTracerProvider({ spanProcessors: [canarySpans] }).register();

// Every HTTP answer any test reads, headers and body, goes past the canary check.
const realFetch = globalThis.fetch;
const reading = new Set<Promise<void>>();
globalThis.fetch = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
  const res = await realFetch(input, init);
  noteOutput(`http ${res.status} headers`, [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n'));
  const read = res
    .clone()
    .text()
    .then((t) => noteOutput(`http ${res.status} body`, t), () => {})
    .finally(() => reading.delete(read));
  reading.add(read);
  return res;
};

afterAll(async () => {
  // Every cloned body read to its end (not a fixed wait, which a busy machine outlasts).
  await Promise.all([...reading]);
  const { hits } = canaryReport();
  if (hits.length > 0) {
    throw new Error(`a secret canary appeared in the output (${hits.length}×):\n${hits.slice(0, 5).map((h) => `  [${h.source}] …${h.excerpt}…`).join('\n')}`);
  }
});
