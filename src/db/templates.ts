import { type Sql, callDeadline } from './connect';
import { withTenant } from './settings';
import type { TemplatePart } from '../types';
import { withDeadline } from './deadline';

/** tenant_email_templates, always under the tenant's RLS context. */

export interface StoredTemplate {
  tenant_id: string;
  event_type: string;
  subject: string | null;
  html: string | null;
  text: string | null;
  version: number;
  created_at: string;
  updated_at: string;
}

const toStored = (r: Record<string, unknown>): StoredTemplate => ({
  tenant_id: r.tenant_id as string,
  event_type: r.event_type as string,
  subject: (r.subject as string | null) ?? null,
  html: (r.html as string | null) ?? null,
  text: (r.text as string | null) ?? null,
  version: Number(r.version),
  created_at: new Date(r.created_at as string).toISOString(),
  updated_at: new Date(r.updated_at as string).toISOString(),
});

/** Create or replace; every save takes a new version from one sequence (never reused). */
export async function putTemplate(
  sql: Sql,
  tenantId: string,
  eventType: string,
  parts: Partial<Record<TemplatePart, string | null>>,
): Promise<{ created: boolean; template: StoredTemplate }> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`
      INSERT INTO tenant_email_templates AS t (tenant_id, event_type, subject, html, text)
      VALUES (${tenantId}, ${eventType}, ${parts.subject ?? null}, ${parts.html ?? null}, ${parts.text ?? null})
      ON CONFLICT (tenant_id, event_type) DO UPDATE SET
        subject = EXCLUDED.subject, html = EXCLUDED.html, text = EXCLUDED.text,
        version = nextval('tenant_email_template_version_seq'), updated_at = now()
      RETURNING t.*, (xmax = 0) AS created`;
    return { created: Boolean(r?.created), template: toStored(r as Record<string, unknown>) };
  });
}

export async function getTemplate(sql: Sql, tenantId: string, eventType: string): Promise<StoredTemplate | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`SELECT * FROM tenant_email_templates WHERE tenant_id = ${tenantId} AND event_type = ${eventType}`;
    return r ? toStored(r) : null;
  });
}

export async function listTemplates(sql: Sql, tenantId: string): Promise<Array<Pick<StoredTemplate, 'event_type' | 'version' | 'updated_at'>>> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`SELECT event_type, version, updated_at FROM tenant_email_templates WHERE tenant_id = ${tenantId} ORDER BY event_type`;
    return rows.map((r) => ({ event_type: r.event_type, version: Number(r.version), updated_at: new Date(r.updated_at).toISOString() }));
  });
}

export async function deleteTemplate(sql: Sql, tenantId: string, eventType: string): Promise<boolean> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`DELETE FROM tenant_email_templates WHERE tenant_id = ${tenantId} AND event_type = ${eventType} RETURNING version`;
    return rows.length > 0;
  });
}

/**
 * What the worker reads a tenant's template with on a cache miss (processEvent's loadTemplate):
 * getTemplate under the pool's call deadline. A read in a transaction (the tenant's RLS context)
 * is bounded like the claim, not cancelled.
 */
export function templateReader(sql: Sql): (tenantId: string, eventType: string) => Promise<StoredTemplate | null> {
  return (tenantId, eventType) => withDeadline(getTemplate(sql, tenantId, eventType), callDeadline(sql));
}
