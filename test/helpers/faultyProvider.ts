import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'ok' | 'error500' | 'rate429' | 'reset' | 'hang' | 'slow';

export interface FaultMix {
  error500: number;
  rate429: number;
  reset: number;
  hang: number;
  /** Answers 202 only after `slowMs`; a client that gave up by then has not had its email accepted. */
  slow: number;
}

export interface FaultyProvider {
  url: string;
  /** Emails accepted (a 2xx fully written to a client still listening), by X-Event-ID. */
  accepted: Map<string, number>;
  /** Requests by the fault they got. */
  faults: Record<Fault, number>;
  /** The faults each event met, in order (for a failing run's message). */
  history: Map<string, Fault[]>;
  seed: number;
  close(): Promise<void>;
}

/** A deterministic PRNG, so a failing run can be replayed with its printed seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A SendGrid-compatible endpoint (POST /v3/mail/send, which @sendgrid/mail talks to) that fails a
 * share of requests in the ways real providers do: 5xx, 429 with Retry-After, a reset
 * connection, a request that hangs forever, and one that answers after the client's timeout.
 */
export async function startFaultyProvider(mix: FaultMix, opts: { slowMs: number; seed?: number }): Promise<FaultyProvider> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = mulberry32(seed);
  const accepted = new Map<string, number>();
  const faults: Record<Fault, number> = { ok: 0, error500: 0, rate429: 0, reset: 0, hang: 0, slow: 0 };
  const hanging = new Set<ServerResponse>();
  const history = new Map<string, Fault[]>();

  const pick = (): Fault => {
    let r = random();
    for (const f of ['error500', 'rate429', 'reset', 'hang', 'slow'] as const) {
      if (r < mix[f]) return f;
      r -= mix[f];
    }
    return 'ok';
  };

  const accept = (res: ServerResponse, eventId: string) => {
    if (res.destroyed || res.socket?.destroyed) return;
    res.once('finish', () => accepted.set(eventId, (accepted.get(eventId) ?? 0) + 1));
    res.writeHead(202, { 'x-message-id': `msg-${eventId}` }).end();
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v3/mail/send') {
        res.writeHead(404).end();
        return;
      }
      let eventId = '';
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { headers?: Record<string, string> };
        eventId = body.headers?.['X-Event-ID'] ?? '';
      } catch {
        res.writeHead(400).end();
        return;
      }
      const fault = pick();
      faults[fault]++;
      history.set(eventId, [...(history.get(eventId) ?? []), fault]);
      switch (fault) {
        case 'ok':
          return accept(res, eventId);
        case 'error500':
          return void res.writeHead(500, { 'content-type': 'application/json' }).end('{"errors":[{"message":"internal"}]}');
        case 'rate429':
          return void res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"errors":[{"message":"slow down"}]}');
        case 'reset':
          return void req.socket.destroy();
        case 'hang':
          hanging.add(res);
          res.once('close', () => hanging.delete(res));
          return;
        case 'slow': {
          const t = setTimeout(() => accept(res, eventId), opts.slowMs);
          res.once('close', () => clearTimeout(t));
          return;
        }
      }
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted,
    faults,
    history,
    seed,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.socket?.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
