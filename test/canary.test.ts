import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import { canaryReport, takeHits } from './helpers/canary';
import { captureLogs } from './helpers/logCapture';

// The suite-wide canary check must be able to fail: each channel it watches is fed a canary
// here, and each must be caught. (The hits are taken back at the end, so this file passes.)
describe('the secret canary check', () => {
  afterAll(() => {
    takeHits();
  });

  it('catches a canary in a log line, an HTTP answer (header or body) and a span', async () => {
    takeHits();
    captureLogs().logger.info({ detail: 'x-CANARY-in-a-log-x' }, 'oops');

    const server = createServer((_req, res) => res.writeHead(200, { 'x-leak': 'CANARY-in-a-header' }).end('CANARY-in-a-body'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await res.text();
    server.close();

    trace.getTracer('canary-test').startSpan('leaky', { attributes: { 'some.attr': 'CANARY-in-a-span' } }).end();
    // The HTTP and span channels report asynchronously: wait until all four are in (polling).
    while (new Set(canaryReport().hits.map((h) => h.source)).size < 4) await new Promise((r) => setTimeout(r, 10));

    const sources = takeHits().map((h) => h.source).sort();
    expect(sources).toEqual(['http 200 body', 'http 200 headers', 'log', 'span']);
  });
});
