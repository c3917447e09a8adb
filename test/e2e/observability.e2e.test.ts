import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { HTTP } from 'cloudevents';
import { keyId, loadConfig } from '../../src/config';
import { putSettings } from '../../src/db/settings';
import { startMailbox, type FakeResponse, type Mailbox } from '../../dev/mailbox';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, structuredEvent, taskData } from '../helpers/events';
import { testSpanProcessors } from '../helpers/canarySetup';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { current: { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY } };
const API_KEY = 'SG.CANARY-APIKEY-observability-0001';
const FALLBACK_KEY = 'SG.CANARY-APIKEY-observability-fallback';
const RECIPIENT = 'canary-recipient-7d1e@customer.example';

// A real SDK with an in-memory exporter: the worker's spans go through @opentelemetry/api to the
// suite's global provider (helpers/canarySetup.ts), which hands them to this exporter too.
const exporter = new InMemorySpanExporter();
testSpanProcessors.push(new SimpleSpanProcessor(exporter));

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

/** Parse the Prometheus text format into { 'name{labels}': value }. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe('observability: traces, /metrics and reply events', () => {
  let db: TestDatabase;
  let primary: Mailbox;
  let secondary: Mailbox;
  let primaryAnswer: FakeResponse | undefined;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  const logs = captureLogs();
  const bodies: string[] = [];

  const send = async (event: { headers: Record<string, string>; body: string }) => {
    const r = await post(worker.url, event);
    bodies.push(r.text, JSON.stringify(Object.fromEntries(r.headers)));
    return r;
  };
  const metrics = async (url = worker.url) => {
    const res = await fetch(new URL('/metrics', url));
    const text = await res.text();
    bodies.push(text);
    return { res, text, values: parseMetrics(text) };
  };
  const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);

  beforeAll(async () => {
    db = await createTestDatabase();
    primary = await startMailbox({ respond: () => primaryAnswer });
    secondary = await startMailbox();
    const base = { provider: 'sendgrid', from_email: 'a@obs.example', enabled: true } as const;
    await putSettings(db.worker(1), KEY, 'obs', { ...base, api_key: API_KEY, provider_settings: { base_url: primary.url }, daily_limit: 1000 });
    await putSettings(db.worker(1), KEY, 'tiny', { ...base, api_key: API_KEY, provider_settings: { base_url: primary.url }, daily_limit: 1 });
    await putSettings(db.worker(1), KEY, 'fb', {
      ...base, api_key: API_KEY, provider_settings: { base_url: primary.url }, daily_limit: 100,
      fallback: { provider: 'sendgrid', api_key: FALLBACK_KEY, provider_settings: { base_url: secondary.url } },
    });
    worker = await startTestWorker(db, logs.logger, { REPLY_EVENTS: 'true' });
  });
  afterAll(async () => {
    await worker.shutdown();
    await Promise.all([primary.close(), secondary.close()]);
    await db.drop();
    await exporter.shutdown();
  });
  beforeEach(() => {
    primaryAnswer = undefined;
  });

  describe('traces', () => {
    it("continues the broker's traceparent with a span per event and children for claim, send and record", async () => {
      exporter.reset();
      const res = await send(
        binaryEvent({ tenant: 'obs', id: 'trace-1', data: taskData({ notify_email: RECIPIENT }), headers: { traceparent: `00-${TRACE_ID}-${PARENT_SPAN}-01` } }),
      );
      expect(res.status).toBe(202);
      const spans = spansOf(TRACE_ID);
      const root = spans.find((s) => s.name === 'process codetether.task.created')!;
      expect(root).toBeDefined();
      expect(root.parentSpanContext?.spanId).toBe(PARENT_SPAN);
      expect(root.attributes).toMatchObject({
        'tenant.id': 'obs',
        'cloudevents.event_id': 'trace-1',
        'cloudevents.event_type': 'codetether.task.created',
        'email.outcome': 'sent',
        'email.provider': 'sendgrid',
        'http.response.status_code': 202,
      });
      const children = spans.filter((s) => s.parentSpanContext?.spanId === root.spanContext().spanId).map((s) => s.name);
      expect(children).toEqual(['email_claim_event', 'send sendgrid', 'email_record_outcome']);
      const claim = spans.find((s) => s.name === 'email_claim_event')!;
      expect(claim.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'email.claim_outcome': 'claimed' });
    });

    it("takes the parent from a structured event's traceparent extension when the request has no header", async () => {
      exporter.reset();
      const traceId = 'aaaabbbbccccddddeeeeffff00001111';
      const res = await send(structuredEvent({ tenant: 'obs', id: 'trace-2', headers: { traceparent: `00-${traceId}-${PARENT_SPAN}-01` } }));
      expect(res.status).toBe(202);
      expect(spansOf(traceId).map((s) => s.name)).toContain('process codetether.task.created');
    });

    it('marks a rejected event with its error code, and a failed provider call on the send span', async () => {
      exporter.reset();
      primaryAnswer = { status: 500 };
      const traceId = '0123456789abcdef0123456789abcdef';
      const res = await send(binaryEvent({ tenant: 'obs', id: 'trace-3', headers: { traceparent: `00-${traceId}-${PARENT_SPAN}-01` } }));
      expect(res.status).toBe(503);
      const spans = spansOf(traceId);
      const root = spans.find((s) => s.name.startsWith('process'))!;
      expect(root.attributes).toMatchObject({ 'email.outcome': 'rejected', 'error.type': 'provider_unavailable', 'http.response.status_code': 503 });
      expect(root.status.code).toBe(2); // ERROR
      expect(spans.find((s) => s.name === 'send sendgrid')!.attributes['error.type']).toBe('provider_unavailable');
    });

    it('gives an event that fails to parse a span too, with the error code', async () => {
      exporter.reset();
      const traceId = 'fedcba9876543210fedcba9876543210';
      const bad = binaryEvent({ tenant: 'obs', headers: { traceparent: `00-${traceId}-${PARENT_SPAN}-01` } });
      const res = await send({ ...bad, body: '{not json' });
      expect(res.status).toBe(400);
      const [root] = spansOf(traceId);
      expect(root!.name).toBe('process event');
      expect(root!.attributes['error.type']).toBe('invalid_json');
    });

    it('never puts a recipient, a key or the encryption key into a span', async () => {
      const all: ReadableSpan[] = exporter.getFinishedSpans();
      expect(all.length).toBeGreaterThan(0);
      const text = JSON.stringify(all.map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events })));
      for (const canary of [RECIPIENT, API_KEY, FALLBACK_KEY, CANARY_DB_KEY, 'owner@customer.example']) expect(text).not.toContain(canary);
    });
  });

  describe('/metrics', () => {
    it('counts events by result, type, provider and error code, with latency histograms and no tenant label', async () => {
      const before = (await metrics()).values;
      const sentKey = 'tew_events_total{result="sent",event_type="codetether.task.created",provider="sendgrid",error_code=""}';
      const id = `m-${Date.now()}`;
      expect((await send(binaryEvent({ tenant: 'obs', id }))).status).toBe(202);
      expect((await send(binaryEvent({ tenant: 'obs', id }))).status).toBe(202); // duplicate
      expect((await send(binaryEvent({ tenant: 'obs', type: 'attacker.chosen.type.12345' }))).status).toBe(400);
      const { res, text, values } = await metrics();
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      expect(values.get(sentKey)! - (before.get(sentKey) ?? 0)).toBe(1);
      expect(values.get('tew_events_total{result="duplicate",event_type="codetether.task.created",provider="",error_code=""}')).toBeGreaterThanOrEqual(1);
      // An event type outside EVENT_TYPES is "other": a sender cannot mint new series.
      expect(values.get('tew_events_total{result="rejected",event_type="other",provider="",error_code="unsupported_event_type"}')).toBe(1);
      expect(text).not.toContain('attacker.chosen');
      expect(values.get('tew_provider_send_duration_seconds_count{provider="sendgrid",result="ok"}')).toBeGreaterThanOrEqual(1);
      expect(values.get('tew_db_claim_duration_seconds_count')).toBeGreaterThanOrEqual(3);
      expect(values.get('tew_db_record_duration_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(values.get('tew_events_in_flight')).toBe(0);
      expect(values.has('tew_process_resident_memory_bytes')).toBe(true);
      expect(text).not.toMatch(/tenant="/);
    });

    it('counts quota rejections, provider errors by code and fallbacks', async () => {
      expect((await send(binaryEvent({ tenant: 'tiny' }))).status).toBe(202);
      expect((await send(binaryEvent({ tenant: 'tiny' }))).status).toBe(422);
      primaryAnswer = { status: 401 };
      expect((await send(binaryEvent({ tenant: 'fb' }))).status).toBe(202);
      const { values } = await metrics();
      expect(values.get('tew_quota_rejections_total{event_type="codetether.task.created"}')).toBe(1);
      expect(values.get('tew_events_total{result="rejected",event_type="codetether.task.created",provider="",error_code="quota_exceeded"}')).toBe(1);
      expect(values.get('tew_provider_errors_total{provider="sendgrid",error_code="provider_auth_failed"}')).toBe(1);
      expect(values.get('tew_fallbacks_total{provider="sendgrid",fallback_provider="sendgrid",result="ok"}')).toBe(1);
    });

    it('counts and logs an event refused before its body was read (413 body_too_large, 415 encoding)', async () => {
      const big = binaryEvent({ tenant: 'obs', id: 'too-big-1', data: taskData({ prompt: 'x'.repeat(worker.config.bodyLimitBytes + 1) }) });
      expect((await send(big)).status).toBe(413);
      const gz = binaryEvent({ tenant: 'obs', id: 'gzip-1', headers: { 'content-encoding': 'br-unknown' } });
      expect((await send(gz)).status).toBe(415);
      const { values } = await metrics();
      expect(values.get('tew_events_total{result="rejected",event_type="other",provider="",error_code="body_too_large"}')).toBe(1);
      expect(values.get('tew_events_total{result="rejected",event_type="other",provider="",error_code="unsupported_media_type"}')).toBe(1);
      const lines = logs.text().split('\n').filter((l) => l.includes('"event_id":"too-big-1"') || l.includes('"event_id":"gzip-1"')).map((l) => JSON.parse(l));
      expect(lines).toEqual([
        expect.objectContaining({ msg: 'event rejected', event_id: 'too-big-1', status: 413, error_code: 'body_too_large', ms: expect.any(Number) }),
        expect.objectContaining({ msg: 'event rejected', event_id: 'gzip-1', status: 415, error_code: 'unsupported_media_type' }),
      ]);
    });

    it('adds a tenant label only for tenants on METRICS_TENANT_LABELS; everyone else shares tenant=""', async () => {
      const other = await startTestWorker(db, captureLogs().logger, { METRICS_TENANT_LABELS: 'obs' });
      try {
        expect((await post(other.url, binaryEvent({ tenant: 'obs' }))).status).toBe(202);
        expect((await post(other.url, binaryEvent({ tenant: 'fb' }))).status).toBe(202);
        const { values } = await metrics(other.url);
        expect(values.get('tew_events_total{result="sent",event_type="codetether.task.created",provider="sendgrid",error_code="",tenant="obs"}')).toBe(1);
        expect(values.get('tew_events_total{result="sent",event_type="codetether.task.created",provider="sendgrid",error_code="",tenant=""}')).toBe(1);
      } finally {
        await other.shutdown();
      }
    });

    it('is absent with METRICS_ENABLED=false', async () => {
      const other = await startTestWorker(db, captureLogs().logger, { METRICS_ENABLED: 'false' });
      try {
        expect((await fetch(new URL('/metrics', other.url))).status).toBe(404);
      } finally {
        await other.shutdown();
      }
    });
  });

  describe('reply events (REPLY_EVENTS=true)', () => {
    it('answers a sent event with a binary-mode codetether.email.sent CloudEvent that names no recipient', async () => {
      const res = await send(binaryEvent({ tenant: 'obs', id: 'reply-1', data: taskData({ task_id: 'task-reply-1', notify_email: RECIPIENT }) }));
      expect(res.status).toBe(202);
      const ce = HTTP.toEvent({ headers: Object.fromEntries(res.headers), body: res.text }) as unknown as { type: string; id: string; source: string; subject: string; tenant: string; data: Record<string, unknown>; validate(): boolean };
      expect(ce.validate()).toBe(true);
      expect(ce).toMatchObject({ type: 'codetether.email.sent', source: '/tenant-email-worker', subject: 'task-reply-1', tenant: 'obs' });
      expect(ce.data).toMatchObject({
        tenant_id: 'obs', task_id: 'task-reply-1', event_id: 'reply-1', provider: 'sendgrid', fallback_used: false, template_source: 'builtin', sender_tier: 'custom',
      });
      expect(ce.data.message_id).toBe(primary.emails.at(-1)!.id);
      expect(res.text).not.toContain(RECIPIENT);
    });

    it('answers a skipped event with codetether.email.skipped and the reason', async () => {
      const data = taskData({ task_id: 'task-reply-2' });
      delete data.notify_email;
      const res = await send(binaryEvent({ tenant: 'obs', id: 'reply-2', data }));
      expect(res.status).toBe(202);
      expect(res.headers.get('ce-type')).toBe('codetether.email.skipped');
      expect(JSON.parse(res.text)).toMatchObject({ task_id: 'task-reply-2', reason: 'no_recipient' });
    });

    it('answers a duplicate with an empty 202 (the first delivery already replied) and a failure with its status only', async () => {
      const dup = await send(binaryEvent({ tenant: 'obs', id: 'reply-1' }));
      expect(dup.status).toBe(202);
      expect(dup.text).toBe('');
      expect(dup.headers.get('ce-type')).toBeNull();
      primaryAnswer = { status: 503 };
      const failed = await send(binaryEvent({ tenant: 'obs', id: 'reply-3' }));
      expect(failed.status).toBe(503);
      expect(failed.headers.get('ce-type')).toBeNull();
    });

    it('is off by default: the 202 is empty', async () => {
      const other = await startTestWorker(db, captureLogs().logger);
      try {
        const res = await post(other.url, binaryEvent({ tenant: 'obs' }));
        expect(res.status).toBe(202);
        expect(res.text).toBe('');
      } finally {
        await other.shutdown();
      }
    });

    it('refuses to start when it would answer its own replies', () => {
      expect(() => loadConfig({ REPLY_EVENTS: 'true', EVENT_TYPES: 'codetether.task.created,codetether.email.sent' })).toThrow(
        /REPLY_EVENTS=true while EVENT_TYPES includes codetether\.email\.sent/,
      );
    });
  });

  it('leaks no secret or recipient in any answer, metric or log line', () => {
    const everything = bodies.join('\n') + logs.text();
    for (const canary of [API_KEY, FALLBACK_KEY, CANARY_DB_KEY, RECIPIENT]) expect(everything).not.toContain(canary);
  });
});
