import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import type { Logger } from '../logger';
import { firstHeader, type HeaderMap } from '../core/httpHeader';

/**
 * Traces go through @opentelemetry/api only. Without an SDK every call below is a no-op that
 * costs a few object allocations; the SDK (and the OTLP exporter) is loaded only when the
 * standard OTEL_* variables ask for it, so a worker that does not trace does not pay the
 * ~40 ms it takes to import.
 *
 * Attributes name the tenant, event, provider, outcome and error code. They never carry a
 * recipient address, a subject, a body or a credential: the span helpers take attributes from
 * the call sites in processEvent/app, which only pass those fields.
 */

const TRACER_NAME = 'tenant-email-worker';

export function tracer() {
  return trace.getTracer(TRACER_NAME);
}

/**
 * Whether the environment asks for traces. OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none win;
 * otherwise an OTLP endpoint (general or traces) or OTEL_TRACES_EXPORTER=otlp turns it on.
 */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (exporters.includes('none')) return false;
  return exporters.includes('otlp') || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

export interface TracingHandle {
  /** Flush what is buffered and stop exporting. */
  shutdown(): Promise<void>;
}

/**
 * Load the SDK and register an OTLP/HTTP (JSON) exporter when the environment asks for one. The
 * exporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT/HEADERS/TIMEOUT itself; the sampler reads
 * OTEL_TRACES_SAMPLER[_ARG]; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource.
 */
export async function startTracing(env: NodeJS.ProcessEnv, logger: Logger, version: string): Promise<TracingHandle | null> {
  if (!tracingRequested(env)) return null;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol && protocol !== 'http/json') {
    logger.warn({ protocol }, 'traces are exported as OTLP over HTTP with JSON (http/json); the configured protocol is ignored');
  }
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes, detectResources, envDetector }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ]);
  const resource = resourceFromAttributes({ 'service.name': 'tenant-email-worker', 'service.version': version }).merge(
    detectResources({ detectors: [envDetector] }),
  );
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())] });
  provider.register(); // global tracer provider, AsyncLocalStorage context manager, W3C propagator
  logger.info({ endpoint_set: Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) }, 'tracing on (OTLP/HTTP)');
  return {
    async shutdown() {
      await provider.shutdown().catch((err: unknown) => logger.warn({ err: String(err) }, 'trace exporter did not flush'));
    },
  };
}

/**
 * The parent context of an event's span: the HTTP traceparent/tracestate headers (the broker's
 * own tracing) or else the event's `traceparent` extension (distributed tracing extension,
 * e.g. from a structured-mode body).
 */
export function parentContext(headers: HeaderMap, eventTraceparent: string | null): Context {
  const carrier: Record<string, string> = {};
  const tp = firstHeader(headers, 'traceparent') ?? eventTraceparent ?? undefined;
  if (tp) carrier.traceparent = tp;
  const ts = firstHeader(headers, 'tracestate');
  if (tp && ts) carrier.tracestate = ts;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** Start the span for one event; the caller ends it. */
export function startEventSpan(name: string, parent: Context, attributes: Attributes): Span {
  return tracer().startSpan(name, { kind: SpanKind.CONSUMER, attributes }, parent);
}

/** Run fn inside a child span of the active context; errors mark the span and are rethrown. */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  errorType: (err: unknown) => string = () => 'error',
): Promise<T> {
  return tracer().startActiveSpan(name, { kind: SpanKind.INTERNAL, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      const code = errorType(err);
      span.setAttribute('error.type', code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      throw err;
    } finally {
      span.end();
    }
  });
}

export function withSpan<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  return context.with(trace.setSpan(context.active(), span), fn);
}

export { SpanStatusCode, type Span };

/** Attributes for the event's span (the one withSpan made current), from inside its work; nothing when tracing is off. */
export function annotateEventSpan(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}
