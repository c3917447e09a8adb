import { WorkerError, isWorkerError } from '../errors';
import type { ProviderAccount, SenderSettings } from '../types';
import type { ProviderClients } from './clients';

export interface AccountCheck {
  provider: string;
  ok: boolean;
  code?: string;
  message?: string;
}

export interface VerifyReport {
  ok: boolean;
  primary: AccountCheck;
  fallback: AccountCheck | null;
}

/** Check a tenant's primary and fallback credentials with their providers, sending nothing. */
export async function verifyAccounts(providers: ProviderClients, tenantId: string, settings: SenderSettings): Promise<VerifyReport> {
  const check = async (account: ProviderAccount): Promise<AccountCheck> => {
    try {
      await providers.get(tenantId, account).verify();
      return { provider: account.provider, ok: true };
    } catch (err) {
      const we = isWorkerError(err) ? err : new WorkerError('internal_error');
      return { provider: account.provider, ok: false, code: we.code, message: we.message };
    }
  };
  const primary = await check(settings.primary);
  const fallback = settings.fallback ? await check(settings.fallback) : null;
  return { ok: primary.ok && (fallback?.ok ?? true), primary, fallback };
}
