import { createHash } from 'node:crypto';
import { WorkerError } from '../errors';
import { Egress, EgressRefused, destinationForbidden, destinationHost, type EgressPolicy } from '../net/egress';
import type { ProviderAccount, ProviderName } from '../types';
import { endpointOverride } from './common';
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

  /** The egress policy these clients connect under (the admin API checks saves against it too). */
  get egress(): Egress {
    return this.opts.egress;
  }

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
    const client = guardDestination(this.factories[account.provider](account, this.opts), account, this.opts);
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

/**
 * An endpoint override (base_url, endpoint) is checked against the egress policy before every
 * call, on freshly resolved addresses, so a refusal is `destination_forbidden`. The SDKs also
 * connect through the policy's lookup (common.ts endpointFor), so the address connected to is
 * one that was checked. SMTP needs no wrapper: its sockets are opened through that lookup
 * (smtp.ts).
 */
function guardDestination(client: EmailProvider, account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  if (account.platformManaged) return client;
  const override = endpointOverride(account, opts.allowEndpointOverride);
  const host = override === undefined ? undefined : destinationHost(override);
  if (host === undefined) return client;
  const check = async () => {
    try {
      await opts.egress.check(host);
    } catch (err) {
      if (err instanceof EgressRefused && err.reason === 'internal') throw destinationForbidden(err);
      throw new WorkerError('provider_network', `the provider endpoint ${host} could not be resolved`);
    }
  };
  const guarded: EmailProvider = {
    name: client.name,
    send: async (email) => {
      await check();
      return client.send(email);
    },
    verify: async () => {
      await check();
      return client.verify();
    },
    ...(client.close ? { close: () => client.close!() } : {}),
  };
  const domains = client.domains?.bind(client);
  if (domains) {
    guarded.domains = (o) => {
      const api = domains(o);
      return {
        register: async (d) => (await check(), api.register(d)),
        check: async (d, id) => (await check(), api.check(d, id)),
      };
    };
  }
  return guarded;
}

/** The provider options a process builds from its configuration. */
export function providerOptions(config: { providerTimeoutMs: number; allowProviderEndpointOverride: boolean; egress: EgressPolicy }): ProviderOptions {
  return { timeoutMs: config.providerTimeoutMs, allowEndpointOverride: config.allowProviderEndpointOverride, egress: new Egress(config.egress) };
}

function fingerprint(account: ProviderAccount): string {
  return createHash('sha256')
    .update(account.apiKey ?? '')
    .update('\0')
    .update(JSON.stringify(account.settings))
    .digest('base64url')
    .slice(0, 22);
}
