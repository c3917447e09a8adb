import { createServer } from 'node:http';

/**
 * The benchmark's SendGrid: POST /v3/mail/send answers 202 with an X-Message-Id, as SendGrid does,
 * and counts each email by its (X-Tenant-ID, X-Event-ID) headers, so the benchmark can say how
 * many emails arrived and whether any event was sent twice. It runs as its own process so that
 * its work does not share an event loop with the load generator. GET /stats, POST /reset.
 */
let received = 0;
let seen = new Map<string, number>();
const perTenant = new Map<string, number>();
let seq = 0;

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/readyz') {
    res.writeHead(200).end();
    return;
  }
  if (req.method === 'GET' && req.url === '/stats') {
    let duplicates = 0;
    for (const n of seen.values()) if (n > 1) duplicates += n - 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ received, distinct: seen.size, duplicates, perTenant: Object.fromEntries(perTenant) }));
    return;
  }
  if (req.method === 'POST' && req.url === '/reset') {
    received = 0;
    seen = new Map();
    perTenant.clear();
    res.writeHead(204).end();
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v3/mail/send') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let body: { headers?: Record<string, string> };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"errors":[{"message":"bad json"}]}');
      return;
    }
    const tenant = body.headers?.['X-Tenant-ID'] ?? '';
    const key = `${tenant}\0${body.headers?.['X-Event-ID'] ?? ''}`;
    received++;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    perTenant.set(tenant, (perTenant.get(tenant) ?? 0) + 1);
    res.writeHead(202, { 'x-message-id': `bench-${++seq}` }).end();
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
