import { createHash } from 'node:crypto';
import type { ProviderAccount, ProviderName } from '../types';
import { createPostmarkProvider } from './postmark';
import { createResendProvider } from './resend';
import { createSendgridProvider } from './sendgrid';
import { createSesProvider } from './ses';
import { createSmtpProvider } from './smtp';
import type { EmailProvider, ProviderFactory, ProviderOptions } from './types';

// Each factory requires its SDK when first called, so start-up loads none of them.
const FACTORIES: Record<ProviderName, ProviderFactory> = {
  sendgrid: createSendgridProvider,
  ses: createSesProvider,
  postmark: createPostmarkProvider,
  smtp: createSmtpProvider,
  resend: createResendProvider,
};

/**
 * Provider clients, built per (tenant, provider, credential fingerprint) and kept in a bounded
 * LRU. The fingerprint covers the key and the provider settings, so a changed credential builds
 * a new client on the next event; the old one ages out and is closed.
 */
export class ProviderClients {
  private readonly cache = new Map<string, EmailProvider>();

  constructor(
    private readonly opts: ProviderOptions & { maxClients?: number },
    private readonly factories: Record<ProviderName, ProviderFactory> = FACTORIES,
  ) {}

  get size(): number {
    return this.cache.size;
  }

  get(tenantId: string, account: ProviderAccount): EmailProvider {
    const key = `${tenantId}\0${account.provider}\0${fingerprint(account)}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const client = this.factories[account.provider](account, this.opts);
    this.cache.set(key, client);
    const max = this.opts.maxClients ?? 1000;
    while (this.cache.size > max) {
      const [oldestKey, oldest] = this.cache.entries().next().value as [string, EmailProvider];
      this.cache.delete(oldestKey);
      void oldest.close?.().catch(() => {});
    }
    return client;
  }

  async closeAll(): Promise<void> {
    const clients = [...this.cache.values()];
    this.cache.clear();
    await Promise.allSettled(clients.map((c) => c.close?.()));
  }
}

function fingerprint(account: ProviderAccount): string {
  return createHash('sha256')
    .update(account.apiKey ?? '')
    .update('\0')
    .update(JSON.stringify(account.settings))
    .digest('base64url')
    .slice(0, 22);
}
