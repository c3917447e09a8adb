import type { DomainStatus, ProviderName, DomainRecord, DomainState } from '../types';
import type { Sql } from './connect';
import { withTenant } from './settings';

/** tenant_email_domains, always under the tenant's RLS context. */

export interface StoredDomain {
  domain: string;
  provider: ProviderName;
  provider_domain_id: string;
  status: DomainStatus;
  dns_records: DomainRecord[];
  verified_at: string | null;
  checked_at: string | null;
  created_at: string;
  updated_at: string;
}

const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string).toISOString());
const toStored = (r: Record<string, unknown>): StoredDomain => ({
  domain: r.domain as string,
  provider: r.provider as ProviderName,
  provider_domain_id: r.provider_domain_id as string,
  status: r.status as DomainStatus,
  dns_records: r.dns_records as DomainRecord[],
  verified_at: iso(r.verified_at),
  checked_at: iso(r.checked_at),
  created_at: iso(r.created_at) as string,
  updated_at: iso(r.updated_at) as string,
});

/** Record what the provider said about a domain (registration or a verification check). */
export async function saveDomain(sql: Sql, tenantId: string, domain: string, provider: ProviderName, state: DomainState): Promise<{ created: boolean; domain: StoredDomain }> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`
      INSERT INTO tenant_email_domains AS d
        (tenant_id, domain, provider, provider_domain_id, status, dns_records, verified_at, checked_at)
      VALUES (${tenantId}, ${domain}, ${provider}, ${state.providerDomainId}, ${state.status},
              ${tx.json(state.records as never)}, CASE WHEN ${state.status} = 'verified' THEN now() END, now())
      ON CONFLICT (tenant_id, domain) DO UPDATE SET
        provider = EXCLUDED.provider,
        provider_domain_id = EXCLUDED.provider_domain_id,
        status = EXCLUDED.status,
        dns_records = CASE WHEN jsonb_array_length(EXCLUDED.dns_records) > 0 THEN EXCLUDED.dns_records ELSE d.dns_records END,
        verified_at = CASE WHEN EXCLUDED.status = 'verified' THEN COALESCE(d.verified_at, now()) END,
        checked_at = now(),
        updated_at = now()
      RETURNING d.*, (xmax = 0) AS created`;
    return { created: Boolean(r?.created), domain: toStored(r as Record<string, unknown>) };
  });
}

export async function getDomain(sql: Sql, tenantId: string, domain: string): Promise<StoredDomain | null> {
  return withTenant(sql, tenantId, async (tx) => {
    const [r] = await tx`SELECT * FROM tenant_email_domains WHERE tenant_id = ${tenantId} AND domain = ${domain}`;
    return r ? toStored(r) : null;
  });
}

export async function listDomains(sql: Sql, tenantId: string): Promise<StoredDomain[]> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`SELECT * FROM tenant_email_domains WHERE tenant_id = ${tenantId} ORDER BY domain`;
    return rows.map((r) => toStored(r));
  });
}

export async function deleteDomain(sql: Sql, tenantId: string, domain: string): Promise<boolean> {
  return withTenant(sql, tenantId, async (tx) => {
    const rows = await tx`DELETE FROM tenant_email_domains WHERE tenant_id = ${tenantId} AND domain = ${domain} RETURNING domain`;
    return rows.length > 0;
  });
}
