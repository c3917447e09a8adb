import express from 'express';

/**
 * The throughput and cold-start yardstick of `npm run bench`: an express app that takes the same
 * request (the raw body read, like the worker) and answers 202. Nothing a real worker could skip.
 */
const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.get('/readyz', (_req, res) => {
  res.status(200).json({ status: 'ready' });
});
app.post('/', express.raw({ type: () => true, limit: 256 * 1024 }), (_req, res) => {
  res.status(202).end();
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
server.keepAliveTimeout = 65_000;
process.once('SIGTERM', () => server.close(() => process.exit(0)));
