import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { applyFakeResponse, type FakeResponse } from '../../dev/mailbox';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  query: Record<string, unknown>;
  /** `:name` segments of the matched route. */
  params: Record<string, string>;
}

type Route = (r: RecordedRequest) => { status: number; headers?: Record<string, string>; body: unknown };

/** "GET /domains/:id" → a matcher; a trailing slash on the request is ignored. */
function compileRoutes(routes: Record<string, Route>) {
  const compiled = Object.entries(routes).map(([key, fn]) => {
    const [method, pattern] = key.split(' ') as [string, string];
    const names: string[] = [];
    const re = new RegExp(`^${pattern.replace(/:([a-z]+)/gi, (_m, n: string) => (names.push(n), '([^/]+)'))}$`);
    return { method, re, names, fn };
  });
  return (method: string, path: string): { fn: Route; params: Record<string, string> } | undefined => {
    const p = path.length > 1 ? path.replace(/\/$/, '') : path;
    for (const r of compiled) {
      const m = r.method === method ? r.re.exec(p) : null;
      if (m) return { fn: r.fn, params: Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1] as string)])) };
    }
    return undefined;
  };
}

export interface FakeApi {
  url: string;
  requests: RecordedRequest[];
  /** Requests that the fake accepted with its normal answer. */
  accepted: RecordedRequest[];
  respond: ((r: RecordedRequest) => FakeResponse | undefined) | undefined;
  close(): Promise<void>;
}

/**
 * A recording fake of a provider's JSON API on 127.0.0.1, for the real SDKs to talk to. `routes`
 * gives the normal answer per "METHOD /path"; `respond` may override any request.
 */
export async function startFakeApi(routes: Record<string, Route>): Promise<FakeApi> {
  const match = compileRoutes(routes);
  const app = express();
  const api: FakeApi = { url: '', requests: [], accepted: [], respond: undefined, close: async () => {} };
  app.use(express.json({ type: () => true, limit: '30mb' }));
  app.use((req, res) => {
    const found = match(req.method, req.path);
    const rec: RecordedRequest = { method: req.method, path: req.path, headers: req.headers, body: req.body, query: req.query as Record<string, unknown>, params: found?.params ?? {} };
    api.requests.push(rec);
    const route = found?.fn;
    applyFakeResponse(req, res, () => {
      if (!route) {
        res.status(404).json({ message: `fake has no route ${req.method} ${req.path}` });
        return;
      }
      api.accepted.push(rec);
      const out = route(rec);
      res.status(out.status).set(out.headers ?? {}).json(out.body);
    }, api.respond?.(rec));
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  api.close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  return api;
}

/** The normal answers of each provider's API, as far as the SDKs read them. */
export const PROVIDER_ROUTES = {
  ses: {
    'POST /v2/email/outbound-emails': () => ({ status: 200, body: { MessageId: `ses-${randomUUID()}` } }),
    'GET /v2/email/account': () => ({ status: 200, body: { SendingEnabled: true, ProductionAccessEnabled: true } }),
  },
  postmark: {
    'POST /email': (r: RecordedRequest) => ({ status: 200, body: { To: (r.body as { To: string }).To, SubmittedAt: new Date().toISOString(), MessageID: `pm-${randomUUID()}`, ErrorCode: 0, Message: 'OK' } }),
    'GET /server': () => ({ status: 200, body: { ID: 1, Name: 'fake' } }),
  },
  resend: {
    'POST /emails': () => ({ status: 200, body: { id: `rs-${randomUUID()}` } }),
    'GET /domains': () => ({ status: 200, body: { object: 'list', data: [] } }),
  },
} as const;
