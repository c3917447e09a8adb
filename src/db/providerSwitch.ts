import type { ProviderName } from '../types';
import { type Sql, callDeadline } from './connect';
import { bounded } from './deadline';

/** The provider outage switch (sql/012): platform-wide rows, read by every worker, written by ops. */
export interface DisabledProvider {
  provider: ProviderName;
  disabled_at: string;
  disabled_by: string | null;
  note: string | null;
}

export async function listDisabledProviders(sql: Sql): Promise<DisabledProvider[]> {
  const rows = await bounded(sql`SELECT provider, disabled_at, disabled_by, note FROM email_disabled_providers ORDER BY provider`, callDeadline(sql));
  return rows.map((r) => ({ provider: r.provider as ProviderName, disabled_at: (r.disabled_at as Date).toISOString(), disabled_by: r.disabled_by ?? null, note: r.note ?? null }));
}

export async function disableProvider(sql: Sql, provider: ProviderName, by: string | null, note: string | null): Promise<boolean> {
  const r = await sql`INSERT INTO email_disabled_providers (provider, disabled_by, note) VALUES (${provider}, ${by}, ${note}) ON CONFLICT (provider) DO NOTHING`;
  return r.count > 0;
}

export async function enableProvider(sql: Sql, provider: ProviderName): Promise<boolean> {
  const r = await sql`DELETE FROM email_disabled_providers WHERE provider = ${provider}`;
  return r.count > 0;
}
