import type express from 'express';
import type { Request, Response } from 'express';
import { deleteDomain, getDomain, listDomains, saveDomain } from '../db/domains';
import { loadSenderSettings } from '../db/settings';
import { deleteTemplate, getTemplate, listTemplates, putTemplate } from '../db/templates';
import { renderPreview } from '../email/preview';
import { resolveSender } from '../email/sender';
import { toIssues } from '../settings/input';
import { WorkerError, isWorkerError, invalidRequest } from '../errors';
import { EVENT_TYPE_PATTERN, domainBody, domainName, domainVerifyBody, previewBody, templateBody } from '../settings/schemas';
import type { TemplateSource } from '../types';
import type { AdminDeps } from './deps';
import { checkTemplate } from '../email/templateCheck';

type Handler = (req: Request, res: Response, tenantId: string) => Promise<void>;
type Route = (handler: Handler) => express.RequestHandler;

/**
 * Templates, preview and sender domains under /tenants/{tenant_id} (README "Email content"). Mounted by
 * makeAdminRouter with its `route` wrapper: authentication, tenant authorization, error answers.
 */
export function addContentRoutes(router: express.Router, route: Route, deps: AdminDeps): void {
  const { config, sql, keys, providers } = deps;
  const base = '/tenants/:tenantId';

  const eventTypeParam = (req: Request): string => {
    const t = String(req.params.eventType);
    if (!EVENT_TYPE_PATTERN.test(t)) throw invalidRequest([{ path: 'event_type', message: 'must be 1-128 characters of [A-Za-z0-9._-]' }]);
    if (!config.eventTypes.includes(t)) {
      throw invalidRequest([{ path: 'event_type', message: `is not an event type this worker handles (EVENT_TYPES: ${config.eventTypes.join(', ')})` }]);
    }
    return t;
  };
  const domainParam = (req: Request): string => {
    const d = domainName.safeParse(String(req.params.domain));
    if (!d.success) throw invalidRequest(toIssues(d.error.issues, 'domain'));
    return d.data;
  };
  const templateIssues = (src: TemplateSource) => {
    const issues = checkTemplate(src);
    if (issues.length > 0) throw invalidRequest(issues);
  };

  // ---- templates -------------------------------------------------------------------------

  router.get(`${base}/email-templates`, route(async (_req, res, tenantId) => {
    res.json({ templates: await listTemplates(sql, tenantId) });
  }));

  router.put(`${base}/email-templates/:eventType`, route(async (req, res, tenantId) => {
    const eventType = eventTypeParam(req);
    const body = templateBody.safeParse(req.body);
    if (!body.success) throw invalidRequest(toIssues(body.error.issues));
    templateIssues(body.data);
    const { created, template } = await putTemplate(sql, tenantId, eventType, body.data);
    res.status(created ? 201 : 200).json(template);
  }));

  router.get(`${base}/email-templates/:eventType`, route(async (req, res, tenantId) => {
    const t = await getTemplate(sql, tenantId, eventTypeParam(req));
    if (!t) throw new WorkerError('template_not_found');
    res.json(t);
  }));

  router.delete(`${base}/email-templates/:eventType`, route(async (req, res, tenantId) => {
    if (!(await deleteTemplate(sql, tenantId, eventTypeParam(req)))) throw new WorkerError('template_not_found');
    res.status(204).end();
  }));

  router.post(`${base}/email-templates/:eventType/preview`, route(async (req, res, tenantId) => {
    const eventType = eventTypeParam(req);
    const body = previewBody.safeParse(req.body ?? {});
    if (!body.success) throw invalidRequest(toIssues(body.error.issues));
    const preview = await renderPreview({ tenantId, eventType, template: body.data.template, data: body.data.data, outputMaxChars: config.outputMaxChars, loadSaved: () => getTemplate(sql, tenantId, eventType) });
    if (!preview.ok) throw invalidRequest(preview.issues);
    const content = preview.content;

    if (req.accepts(['application/json', 'text/html']) === 'text/html') {
      // The tenant's own HTML, shown in a browser: sandboxed, no script, no outbound requests but images.
      res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'");
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.type('text/html').send(content.html);
      return;
    }
    res.json({ template: preview.template, version: preview.version, ...content, from: await previewSender(tenantId) });
  }));

  /** Who the email would be from now, or why it could not be sent. */
  async function previewSender(tenantId: string) {
    const settings = await loadSenderSettings(sql, keys, tenantId);
    if (!settings) return null;
    try {
      const c = resolveSender({ tenantId, settings, account: settings.primary, fromPattern: config.tenantFromPattern, policy: config.senderDomainPolicy });
      return { email: c.email, name: c.name, tier: c.tier, note: c.note };
    } catch (err) {
      if (isWorkerError(err)) return { error: err.code, message: err.message };
      throw err;
    }
  }

  // ---- sender domains ----------------------------------------------------------------------

  /** The domain API of the tenant's primary account, or the reason there is none. */
  async function domainApi(tenantId: string, accountToken: string | undefined) {
    const settings = await loadSenderSettings(sql, keys, tenantId);
    if (!settings) throw new WorkerError('settings_not_found', 'save email settings first: the domain is registered with their provider');
    const account = settings.primary;
    const provider = providers.get(tenantId, account);
    if (!provider.domains) {
      throw new WorkerError('domain_api_unsupported', `${account.provider} has no domain API; the SMTP relay decides which senders it accepts`);
    }
    return { provider: account.provider, api: provider.domains({ accountToken }) };
  }

  router.get(`${base}/email-domains`, route(async (_req, res, tenantId) => {
    res.json({ domains: await listDomains(sql, tenantId) });
  }));

  router.get(`${base}/email-domains/:domain`, route(async (req, res, tenantId) => {
    const d = await getDomain(sql, tenantId, domainParam(req));
    if (!d) throw new WorkerError('domain_not_found');
    res.json(d);
  }));

  router.post(`${base}/email-domains`, route(async (req, res, tenantId) => {
    const body = domainBody.safeParse(req.body);
    if (!body.success) throw invalidRequest(toIssues(body.error.issues));
    const { provider, api } = await domainApi(tenantId, body.data.account_token);
    const state = await api.register(body.data.domain);
    const { created, domain } = await saveDomain(sql, tenantId, body.data.domain, provider, state);
    res.status(created ? 201 : 200).json(domain);
  }));

  router.post(`${base}/email-domains/:domain/verify`, route(async (req, res, tenantId) => {
    const name = domainParam(req);
    const body = domainVerifyBody.safeParse(req.body ?? {});
    if (!body.success) throw invalidRequest(toIssues(body.error.issues));
    const stored = await getDomain(sql, tenantId, name);
    if (!stored) throw new WorkerError('domain_not_found', `register ${name} first (POST …/email-domains)`);
    const { provider, api } = await domainApi(tenantId, body.data.account_token);
    if (provider !== stored.provider) {
      throw invalidRequest([{ path: 'domain', message: `was registered with ${stored.provider} but the tenant now sends with ${provider}: register it again (POST …/email-domains)` }]);
    }
    const state = await api.check(name, stored.provider_domain_id);
    res.json((await saveDomain(sql, tenantId, name, provider, state)).domain);
  }));

  router.delete(`${base}/email-domains/:domain`, route(async (req, res, tenantId) => {
    if (!(await deleteDomain(sql, tenantId, domainParam(req)))) throw new WorkerError('domain_not_found');
    res.status(204).end();
  }));
}
