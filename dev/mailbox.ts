import { listen } from '../src/net/listen';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request } from 'express';
import { escapeHtml } from '../src/email/compose';

/**
 * A local stand-in for SendGrid's v3 API that keeps what it receives: the dev mailbox of
 * `npm start` (with a page to read the emails in a browser) and the fake provider of the tests.
 * The real @sendgrid/mail SDK talks to it over HTTP on 127.0.0.1.
 */

export interface CapturedEmail {
  id: string;
  receivedAt: string;
  /** The Authorization header the SDK sent. Kept for tests; never shown on the web page. */
  authorization: string | undefined;
  body: SendgridMailBody;
}

export interface SendgridMailBody {
  from: { email: string; name?: string };
  reply_to?: { email: string; name?: string };
  personalizations: Array<{ to: Array<{ email: string; name?: string }> }>;
  subject: string;
  content: Array<{ type: string; value: string }>;
  headers?: Record<string, string>;
  custom_args?: Record<string, string>;
  categories?: string[];
}

/** What a test wants the fake to do with one request: answer it (status/headers/body), hang, drop it, or wait first. */
export type FakeResponse =
  | { status: number; headers?: Record<string, string>; body?: unknown }
  | { hang: true }
  | { reset: true }
  | { delayMs: number; then?: FakeResponse }
  /** Wait until `until` settles (a test's gate), then answer as `then` says. */
  | { until: Promise<unknown>; then?: FakeResponse };

/** Carry out a FakeResponse; `ok` is the fake's normal answer. Shared by every fake provider. */
export function applyFakeResponse(req: Request, res: express.Response, ok: () => void, decision: FakeResponse | undefined): void {
  if (!decision) return ok();
  if ('delayMs' in decision) {
    setTimeout(() => applyFakeResponse(req, res, ok, decision.then), decision.delayMs);
    return;
  }
  if ('until' in decision) {
    void decision.until.finally(() => applyFakeResponse(req, res, ok, decision.then));
    return;
  }
  if ('hang' in decision) return; // never answer: the client's timeout must fire
  if ('reset' in decision) {
    req.socket.destroy();
    return;
  }
  res.status(decision.status).set(decision.headers ?? {});
  if (decision.body === undefined) res.end();
  else res.json(decision.body);
}

export interface MailboxOptions {
  port?: number;
  host?: string;
  /** Decide the answer for a request; undefined means "accept it" (202). */
  respond?: (req: { path: string; authorization: string | undefined; body: unknown }) => FakeResponse | undefined;
}

export interface Mailbox {
  url: string;
  emails: CapturedEmail[];
  /** Requests of every kind, accepted or not. */
  requests: number;
  close(): Promise<void>;
}

export async function startMailbox(opts: MailboxOptions = {}): Promise<Mailbox> {
  const emails: CapturedEmail[] = [];
  const app = express();
  app.disable('x-powered-by');
  const box: Mailbox = { url: '', emails, requests: 0, close: async () => {} };

  const answer = (req: Request, res: express.Response, ok: () => void) => {
    box.requests++;
    applyFakeResponse(req, res, ok, opts.respond?.({ path: req.path, authorization: req.header('authorization'), body: req.body }));
  };

  app.post('/v3/mail/send', express.json({ limit: '30mb' }), (req, res) =>
    answer(req, res, () => {
      const id = randomUUID();
      emails.push({ id, receivedAt: new Date().toISOString(), authorization: req.header('authorization'), body: req.body as SendgridMailBody });
      res.status(202).set('X-Message-Id', id).end();
    }),
  );
  app.get('/v3/scopes', (req, res) => answer(req, res, () => res.json({ scopes: ['mail.send'] })));

  app.get('/api/messages', (_req, res) => {
    res.json(emails.map(({ authorization: _a, ...rest }) => rest));
  });
  app.get('/', (_req, res) => {
    res.type('html').send(listPage(emails));
  });
  app.get('/messages/:id', (req, res) => {
    const m = emails.find((e) => e.id === req.params.id);
    if (!m) {
      res.status(404).type('text').send('no such message');
      return;
    }
    res.type('html').send(messagePage(m));
  });

  const server: Server = await listen((done) => app.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', done), opts.port ?? 0, 'the dev mailbox', 'DEV_MAILBOX_PORT');
  box.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  box.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return box;
}

const part = (m: CapturedEmail, type: string) => m.body.content?.find((c) => c.type === type)?.value ?? '';
const addr = (a: { email: string; name?: string } | undefined) => (a ? (a.name ? `${a.name} <${a.email}>` : a.email) : '');

function listPage(emails: CapturedEmail[]): string {
  const rows = [...emails]
    .reverse()
    .map(
      (m) =>
        `<tr><td>${escapeHtml(m.receivedAt)}</td><td>${escapeHtml(m.body.custom_args?.tenant_id ?? '')}</td>` +
        `<td>${escapeHtml(m.body.personalizations?.[0]?.to?.map((t) => t.email).join(', ') ?? '')}</td>` +
        `<td><a href="/messages/${m.id}">${escapeHtml(m.body.subject ?? '(no subject)')}</a></td></tr>`,
    )
    .join('\n');
  return page(
    'Dev mailbox',
    `<p>${emails.length} email(s) captured. This page does not refresh itself.</p>
<table><tr><th>received</th><th>tenant</th><th>to</th><th>subject</th></tr>${rows}</table>`,
  );
}

function messagePage(m: CapturedEmail): string {
  const headers = Object.entries(m.body.headers ?? {})
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`)
    .join('');
  return page(
    m.body.subject ?? '(no subject)',
    `<p><a href="/">&larr; all emails</a></p>
<table>
<tr><th>From</th><td>${escapeHtml(addr(m.body.from))}</td></tr>
<tr><th>To</th><td>${escapeHtml(m.body.personalizations?.[0]?.to?.map(addr).join(', ') ?? '')}</td></tr>
<tr><th>Reply-To</th><td>${escapeHtml(addr(m.body.reply_to))}</td></tr>
<tr><th>Subject</th><td>${escapeHtml(m.body.subject ?? '')}</td></tr>
${headers}
</table>
<h2>HTML part</h2>
<iframe sandbox="" style="width:100%;height:480px;border:1px solid #ccc" srcdoc="${escapeHtml(part(m, 'text/html'))}"></iframe>
<h2>Text part</h2>
<pre style="white-space:pre-wrap;border:1px solid #ccc;padding:8px">${escapeHtml(part(m, 'text/plain'))}</pre>`,
  );
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse}td,th{text-align:left;padding:4px 10px;border-bottom:1px solid #eee;vertical-align:top}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}
