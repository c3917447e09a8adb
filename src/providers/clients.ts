import { raceDeadline } from '../core/timeLimit';
import { createHash } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import { WorkerError } from '../errors';
import { Egress, destinationHost, refusalReason, type EgressPolicy } from '../net/egress';
import type { ProviderAccount, ProviderName } from '../types';
import { endpointFor } from './common';
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
    const refusals = new ConnectRefusals(this.opts.egress);
    const built = this.factories[account.provider](account, { ...this.opts, connectLookup: refusals.lookup });
    const client = withDeadline(guardDestination(built, account, this.opts, refusals), this.opts.timeoutMs);
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
 * The lookup one client's connections use (common.ts endpointFor): the egress policy's, counting
 * what it refuses. An SDK reports a refused connection as a network failure, or (Resend) not at
 * all; the count lets the guard below tell that a call failed because its connection was
 * refused.
 */
class ConnectRefusals {
  count = 0;
  last: WorkerError | undefined;
  constructor(private readonly egress: Egress) {}

  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.egress.lookup(hostname, options, ((err: NodeJS.ErrnoException | null, ...rest: unknown[]) => {
      if (refusalReason(err)) {
        this.count++;
        this.last = err as unknown as WorkerError;
      }
      (callback as (err: NodeJS.ErrnoException | null, ...rest: unknown[]) => void)(err, ...rest);
    }) as Parameters<LookupFunction>[2]);
  };
}

/**
 * An endpoint override (base_url, endpoint) is checked against the egress policy before every
 * call, on freshly resolved addresses, so a refusal is `destination_forbidden`. The SDKs also
 * connect through the policy's lookup (common.ts endpointFor), so the address connected to is
 * one that was checked; a call whose connection was refused there (a name that answered
 * differently for the connection: DNS rebinding) is `destination_forbidden` too. SMTP needs no
 * wrapper: its sockets are opened through the policy's lookup (smtp.ts).
 */
function guardDestination(client: EmailProvider, account: ProviderAccount, opts: ProviderOptions, refusals: ConnectRefusals): EmailProvider {
  // The endpoints to guard are the tenant-chosen ones: those endpointFor pins to the policy.
  const endpoint = endpointFor(account, opts);
  const host = endpoint?.lookup ? destinationHost(endpoint.url) : undefined;
  if (host === undefined) return client;
  const check = async () => {
    try {
      await opts.egress.check(host);
    } catch (err) {
      if (refusalReason(err) === 'internal') throw err;
      throw new WorkerError('provider_network', `the provider endpoint ${host} could not be resolved`);
    }
  };
  // Check, call, and if a connection of this client was refused while the call ran (the same
  // host, so the same answer for any call in flight), say so rather than the SDK's network error.
  const guard = async <T>(call: () => Promise<T>): Promise<T> => {
    await check();
    const before = refusals.count;
    try {
      return await call();
    } catch (err) {
      const refused = refusals.count > before ? refusals.last : undefined;
      if (refusalReason(refused) === 'internal') throw refused;
      throw err;
    }
  };
  return aroundEveryCall(client, guard);
}

/** The same client with every call to the provider (send, verify, domain calls) passed through `around`. */
function aroundEveryCall(client: EmailProvider, around: <T>(call: () => Promise<T>) => Promise<T>): EmailProvider {
  const wrapped: EmailProvider = {
    name: client.name,
    send: (email) => around(() => client.send(email)),
    verify: () => around(() => client.verify()),
    ...(client.close ? { close: () => client.close!() } : {}),
  };
  const domains = client.domains?.bind(client);
  if (domains) {
    wrapped.domains = (o) => {
      const api = domains(o);
      return { register: (d) => around(() => api.register(d)), check: (d, id) => around(() => api.check(d, id)) };
    };
  }
  const webhooks = client.webhooks?.bind(client);
  if (webhooks) {
    wrapped.webhooks = () => {
      const api = webhooks();
      return { register: (url, o) => around(() => api.register(url, o)) };
    };
  }
  return wrapped;
}

/**
 * PROVIDER_TIMEOUT_MS, enforced the same way for every provider: past it a call is answered
 * `provider_timeout`, whatever its SDK does. Each SDK is also given the timeout (and closes its
 * socket when it fires), but their timers differ — one only logs unless told to throw, one counts
 * whole seconds, one counts per SMTP phase — so this is the one deadline a caller can rely on.
 */
function withDeadline(client: EmailProvider, ms: number): EmailProvider {
  return aroundEveryCall(client, (call) => raceDeadline(call(), ms, () => new WorkerError('provider_timeout', `${client.name} did not answer within ${ms} ms`)));
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
