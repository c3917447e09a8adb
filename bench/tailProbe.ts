/**
 * `npm run bench -- --tail-profile`: a preload (`node -r`) the bench puts into the worker to see
 * where an open loop's slowest events spend their time. It is diagnosis, not production code:
 * it patches `net.Socket#write` and runs a 1 ms timer, which cost the worker some CPU.
 *
 * It writes one line per record to the file TEW_TAIL_PROBE names, `<kind> <start> <ms>`, start in
 * epoch milliseconds (comparable with the bench's Date.now()):
 * - `event`: a POST, from the request's arrival to its answer being written (the worker's view),
 *   with a fourth field: the bench run it belongs to (its `ce-id` without the `-<n>`);
 * - `db`: a database round trip, from a write on a connection to DATABASE_URL's port to the next
 *   data read on it;
 * - `provider`: an outgoing HTTP request, from its start to its response's end;
 * - `gc`: a garbage-collection pause;
 * - `stall`: the event loop ran a 1 ms timer more than 4 ms late (GC, other events' work, or no
 *   CPU for the process), with a fourth field: the process's CPU time meanwhile, in ms.
 * Nothing is written when TEW_TAIL_PROBE is unset.
 */
import { subscribe } from 'node:diagnostics_channel';
import { openSync, writeSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { STALL_MS, type TailKind } from './tail';

function install(file: string, dbPort: number): void {
  const fd = openSync(file, 'w');
  const now = () => performance.timeOrigin + performance.now();
  let pending: string[] = [];
  const record = (kind: TailKind, start: number, ms: number, extra?: string) => pending.push(`${kind} ${start.toFixed(3)} ${ms.toFixed(3)}${extra === undefined ? '' : ` ${extra}`}`);
  const flush = () => {
    if (pending.length === 0) return;
    writeSync(fd, pending.join('\n') + '\n');
    pending = [];
  };
  setInterval(flush, 250).unref();
  process.on('exit', flush);

  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) record('gc', performance.timeOrigin + e.startTime, e.duration);
  }).observe({ entryTypes: ['gc'] });

  const arrived = new WeakMap<object, number>();
  subscribe('http.server.request.start', (msg) => {
    const { request } = msg as { request: IncomingMessage };
    if (request.method === 'POST') arrived.set(request, now());
  });
  subscribe('http.server.response.finish', (msg) => {
    const { request } = msg as { request: IncomingMessage };
    const start = arrived.get(request);
    // The bench's event ids are `<run>-<n>`: the run is what the report selects events by.
    const id = String(request.headers['ce-id'] ?? '');
    if (start !== undefined) record('event', start, now() - start, id.includes('-') ? id.slice(0, id.lastIndexOf('-')) : '-');
  });
  const sent = new WeakMap<object, number>();
  subscribe('http.client.request.start', (msg) => sent.set((msg as { request: object }).request, now()));
  subscribe('http.client.response.finish', (msg) => {
    const { request } = msg as { request: object };
    const start = sent.get(request);
    if (start !== undefined) record('provider', start, now() - start);
  });

  // A round trip on a database connection: its first write while nothing is outstanding, to the
  // next data read.
  const outstanding = new WeakMap<Socket, number>();
  const watched = new WeakSet<Socket>();
  const write = Socket.prototype.write;
  Socket.prototype.write = function (this: Socket, ...args: unknown[]) {
    if (this.remotePort === dbPort) {
      if (!watched.has(this)) {
        watched.add(this);
        this.on('data', () => {
          const start = outstanding.get(this);
          if (start === undefined) return;
          outstanding.delete(this);
          record('db', start, now() - start);
        });
      }
      if (!outstanding.has(this)) outstanding.set(this, now());
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof Socket.prototype.write;

  // A stall's CPU time tells the two causes apart: about as much CPU as wall time, the process was
  // running (GC, or other events' work); much less, it was waiting for a CPU.
  let last = now();
  let lastCpu = process.cpuUsage();
  setInterval(() => {
    const t = now();
    const cpu = process.cpuUsage();
    const late = t - last - 1;
    if (late > STALL_MS) record('stall', last, late, ((cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000).toFixed(3));
    last = t;
    lastCpu = cpu;
  }, 1).unref();
}

const file = process.env.TEW_TAIL_PROBE;
if (file && process.env.DATABASE_URL) install(file, Number(new URL(process.env.DATABASE_URL).port || 5432));
