import fc from 'fast-check';
import { MAX_OUTPUT_CHARS, deliveryKey, eventReference, headerSafe, replyToAddress } from '../../src/email/compose';
import { composeForTest } from '../helpers/compose';
import { taskData } from '../helpers/events';

const sender = { name: 'Acme\r\nBcc: evil@x.example' };

describe('composeEmail with the built-in template', () => {
  it('keeps header values on one line', () => {
    const m = composeForTest(taskData({ prompt: 'first\r\nBcc: evil@x.example', status: 'done\nX-Evil: 1' }), { sender, replyToDomain: 'r.acme.example' });
    for (const v of [m.subject, m.from.name ?? '', ...Object.values(m.headers)]) expect(v).not.toMatch(/[\r\n]/);
    expect(m.subject).toBe('Task done X-Evil: 1: first');
    expect(m.from.name).toBe('Acme Bcc: evil@x.example');
  });

  it('escapes HTML in every field and keeps the text part verbatim', () => {
    const m = composeForTest(taskData({ agent: '<img src=x onerror=alert(1)>', output: '<script>alert(1)</script>' }), { sender, replyToDomain: 'r.acme.example' });
    expect(m.html).not.toMatch(/<script|<img/i);
    expect(m.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(m.text).toContain('<script>alert(1)</script>');
  });

  it('cuts huge output with a note', () => {
    const m = composeForTest(taskData({ output: 'y'.repeat(MAX_OUTPUT_CHARS + 5000) }), { sender, replyToDomain: 'r.acme.example' });
    expect(m.text).toContain('[output truncated at 100 KB]');
    expect(m.text.length).toBeLessThan(MAX_OUTPUT_CHARS + 2000);
  });

  it('builds the Reply-To from the pattern, and none when the task id cannot be part of an address', () => {
    expect(replyToAddress('reply+{task_id}@{domain}', 'task-1', 'r.example')).toBe('reply+task-1@r.example');
    expect(replyToAddress('tasks@{domain}', 'anything', 'r.example')).toBe('tasks@r.example');
    expect(replyToAddress('reply+{task_id}@{domain}', 'a b,c', 'r.example')).toBeNull();
    expect(replyToAddress('reply+{task_id}@{domain}', 'x', null)).toBeNull();
  });

  it('tags the message with the tenant and event and uses the ledger key as idempotency key', () => {
    const m = composeForTest(taskData(), { sender, replyToDomain: 'r.acme.example' });
    expect(m.tags).toEqual({ tenantId: 'acme', eventId: 'evt-9' });
    expect(m.idempotencyKey).toBe('acme//codetether/a2a/evt-9');
  });

  it('derives the delivery key from (tenant, source, id) without ambiguity, keeping the first form where it was unambiguous', () => {
    // Unchanged for every event whose id has no '/': a redelivery across the upgrade keeps its key.
    expect(deliveryKey('acme', '/codetether/a2a', 'evt-9')).toBe('acme//codetether/a2a/evt-9');
    expect(eventReference(deliveryKey('acme', '/codetether/a2a', 'evt-9'), 'a@x.example')).toBe(eventReference('acme//codetether/a2a/evt-9', 'a@x.example'));
    // The two events that used to share a key.
    const a = deliveryKey('acme', '/svc', 'a/b');
    const b = deliveryKey('acme', '/svc/a', 'b');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^tew2:[0-9a-f]{64}$/);
    expect(eventReference(a, 'x@y.example')).not.toBe(eventReference(b, 'x@y.example'));
    // Long keys are hashed, not cut (Resend's limit is 256 characters).
    const long1 = deliveryKey('acme', `/${'s'.repeat(300)}`, 'one');
    const long2 = deliveryKey('acme', `/${'s'.repeat(300)}`, 'two');
    expect([long1.length, long2.length]).toEqual([69, 69]);
    expect(long1).not.toBe(long2);
  });

  it('has no two triples with one key (property, over sources and ids full of "/")', () => {
    const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
    process.stdout.write(`delivery keys: fast-check seed ${seed} (replay with FUZZ_SEED=${seed})\n`);
    const part = fc.string({ unit: fc.constantFrom('a', 'b', '/', ':'), maxLength: 6 });
    fc.assert(
      fc.property(fc.tuple(fc.constantFrom('t', 't2'), part, part), fc.tuple(fc.constantFrom('t', 't2'), part, part), (x, y) => {
        fc.pre(x.join('\0') !== y.join('\0'));
        expect(deliveryKey(...x)).not.toBe(deliveryKey(...y));
      }),
      { seed, numRuns: 2000 },
    );
  });

  it('flattens control characters in headerSafe', () => {
    expect(headerSafe('a\u0000b\u001fc\td')).toBe('a b c d');
  });
});
