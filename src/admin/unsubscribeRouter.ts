import { randomUUID } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import { addSuppression } from '../db/feedback';
import { describeError, mapDatabaseError } from '../db/errors';
import { WorkerError } from '../errors';
import { UnsubscribeTokens } from '../feedback/unsubscribe';
import type { AdminDeps } from './deps';

/**
 * GET/POST /api/v1/unsubscribe/{token} (RFC 8058, DESIGN §9). GET shows a page with a button and
 * changes nothing: mail scanners and link previews follow GET links. POST (the mailbox provider's
 * one-click `List-Unsubscribe=One-Click`, or the page's button) adds the recipient to the tenant's
 * suppression list and answers 200. The pages name no address.
 */
export function makeUnsubscribeRouter(deps: AdminDeps): express.Router {
  const { sql, keys, logger, metrics } = deps;
  const tokens = new UnsubscribeTokens(keys);
  const router = express.Router();
  // RFC 8058's body is a small form; nothing else is read from it.
  router.use(express.urlencoded({ extended: false, limit: '4kb' }));
  router.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });

  router.get('/:token', async (req: Request, res: Response) => {
    const claims = await tokens.open(String(req.params.token));
    if (!claims) {
      res.status(400).type('html').send(page('This link is not valid', '<p>The unsubscribe link is incomplete or was altered. Use the link from the email itself.</p>'));
      return;
    }
    res.status(200).type('html').send(
      page(
        'Unsubscribe',
        '<p>Stop receiving these emails at this address?</p><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>',
      ),
    );
  });

  router.post('/:token', async (req: Request, res: Response) => {
    const claims = await tokens.open(String(req.params.token));
    if (!claims) {
      const we = new WorkerError('unsubscribe_invalid_token');
      logger.info({ unsubscribe: true, error_code: we.code }, 'unsubscribe refused');
      res.status(we.status).type('html').send(page('This link is not valid', '<p>The unsubscribe link is incomplete or was altered. Use the link from the email itself.</p>'));
      return;
    }
    try {
      // With K_SINK set, the platform hears of it like of a provider's unsubscribe (no address in it).
      const publish = deps.outbox
        ? { ceId: randomUUID(), ceType: 'codetether.email.unsubscribed', data: { tenant_id: claims.tenantId, status: 'unsubscribed', via: 'one_click', event_type: claims.eventType, at: new Date().toISOString() } }
        : undefined;
      const { created } = await addSuppression(sql, claims.tenantId, { address: claims.recipient, reason: 'unsubscribe', source: 'unsubscribe', actor: 'recipient', note: `one-click unsubscribe (${claims.eventType})`.slice(0, 500) }, publish);
      if (created) metrics?.suppressed('unsubscribe');
      if (created && publish) deps.outbox?.nudge();
      logger.info({ unsubscribe: true, tenant: claims.tenantId, event_type: claims.eventType, added: created }, 'recipient unsubscribed');
      res.status(200).type('html').send(page('Unsubscribed', '<p>You will not receive these emails at this address any more.</p>'));
    } catch (err) {
      const we = mapDatabaseError(err);
      if (we.code === 'internal_error') logger.error({ unsubscribe: true, err: describeError(err) }, 'unsubscribe failed');
      if (we.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(we.retryAfterSeconds));
      res.status(we.status).type('html').send(page('Please try again', '<p>Your request could not be saved just now. Please try again in a minute.</p>'));
    }
  });

  router.use((_req: Request, res: Response) => {
    res.status(404).type('html').send(page('Not found', '<p>There is nothing here.</p>'));
  });
  return router;
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex"><title>${title}</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}button{font-size:1rem;padding:.5rem 1rem}</style></head><body><h1>${title}</h1>${body}</body></html>`;
}
