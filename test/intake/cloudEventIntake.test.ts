import { parseCloudEvent } from '../../src/intake/cloudEventIntake';
import { WorkerError } from '../../src/errors';
import { binaryEvent, structuredEvent, taskData } from '../helpers/events';

const TYPES = { eventTypes: ['codetether.task.created'] };
const parse = (ev: { headers: Record<string, string>; body: string }) => parseCloudEvent({ headers: ev.headers, body: Buffer.from(ev.body) }, TYPES);
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof WorkerError ? e.code : `not a WorkerError: ${String(e)}`;
  }
  return 'no error';
};

describe('parseCloudEvent', () => {
  it('reads a binary-mode event, its tenant extension and traceparent', () => {
    const ev = binaryEvent({ tenant: 'acme', id: 'e1', headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
    ev.headers['ce-traceparent'] = ev.headers.traceparent!;
    const e = parse(ev);
    expect(e).toMatchObject({ id: 'e1', source: '/codetether/a2a', type: 'codetether.task.created', tenantId: 'acme', mode: 'binary', recipient: 'owner@customer.example' });
    expect(e.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('leaves Error.stackTraceLimit as it found it, after a good event and after a rejected one', () => {
    const before = Error.stackTraceLimit;
    parse(binaryEvent({ tenant: 'acme', id: 'e1' }));
    expect(Error.stackTraceLimit).toBe(before);
    const bad = binaryEvent({ tenant: 'acme', id: 'e2' });
    bad.headers['ce-specversion'] = '0.1';
    expect(codeOf(() => parse(bad))).toBe('invalid_event');
    expect(Error.stackTraceLimit).toBe(before);
    expect(new Error('x').stack!.split('\n').length).toBeGreaterThan(1);
  });

  it('accepts header names in any case', () => {
    const ev = binaryEvent({ tenant: 'acme' });
    const upper = Object.fromEntries(Object.entries(ev.headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect(parse({ headers: upper, body: ev.body }).tenantId).toBe('acme');
  });

  it('reads the tenant attribute of a structured-mode event and keeps unknown data fields', () => {
    const e = parse(structuredEvent({ tenant: 'acme', data: taskData({ extra_field: { a: 1 } }) }));
    expect(e.tenantId).toBe('acme');
    expect(e.mode).toBe('structured');
    expect((e.data as Record<string, unknown>).extra_field).toEqual({ a: 1 });
  });

  it('treats an event with no tenant anywhere as global, and an empty notify_email as none', () => {
    const e = parse(binaryEvent({ data: taskData({ notify_email: '  ' }) }));
    expect([e.tenantId, e.recipient]).toEqual([null, null]);
  });

  it('trims the recipient and accepts the same tenant in both places', () => {
    const e = parse(binaryEvent({ tenant: 'acme', data: taskData({ tenant_id: 'acme', notify_email: ' a@b.example ' }) }));
    expect([e.tenantId, e.recipient]).toEqual(['acme', 'a@b.example']);
  });

  it.each([
    ['a non-UTF-8 charset', { ...binaryEvent(), headers: { ...binaryEvent().headers, 'content-type': 'application/json; charset=latin1' } }, 'unsupported_media_type'],
    ['a malformed content type', { ...binaryEvent(), headers: { ...binaryEvent().headers, 'content-type': ';;;' } }, 'unsupported_media_type'],
    ['no CloudEvent headers at all', { headers: { 'content-type': 'application/json' }, body: '{}' }, 'invalid_event'],
    ['specversion 0.3', { ...binaryEvent(), headers: { ...binaryEvent().headers, 'ce-specversion': '0.3' } }, 'invalid_event'],
    ['data that is an array', { ...binaryEvent(), body: '[1,2]' }, 'invalid_data'],
    ['a structured body that is an array', { headers: { 'content-type': 'application/cloudevents+json' }, body: '[]' }, 'invalid_event'],
    ['structured data_base64', (() => { const s = structuredEvent(); const b = JSON.parse(s.body); delete b.data; b.data_base64 = 'e30='; return { ...s, body: JSON.stringify(b) }; })(), 'unsupported_media_type'],
    ['task_id as a number', binaryEvent({ data: taskData({ task_id: 42 }) }), 'invalid_data'],
    ['metadata as a string', binaryEvent({ data: taskData({ metadata: 'x' }) }), 'invalid_data'],
    ['a tenant id of 129 characters', binaryEvent({ tenant: 'a'.repeat(129) }), 'invalid_tenant_id'],
    ['a tenant id with a slash in data', binaryEvent({ data: taskData({ tenant_id: 'a/b' }) }), 'invalid_tenant_id'],
    ['a display-name recipient', binaryEvent({ data: taskData({ notify_email: 'Bob <bob@b.example>' }) }), 'invalid_data'],
  ])('rejects %s', (_n, ev, code) => {
    expect(codeOf(() => parse(ev))).toBe(code);
  });

  it('does not copy header or body values into its error messages', () => {
    const ev = binaryEvent({ tenant: 'CANARY<script>'.padEnd(140, 'x') });
    try {
      parse(ev);
      throw new Error('expected a rejection');
    } catch (e) {
      expect((e as Error).message).not.toContain('CANARY');
    }
  });
});
