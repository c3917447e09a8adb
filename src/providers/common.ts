import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { LookupFunction } from 'node:net';
import { WorkerError } from '../errors';
import { ENDPOINT_OVERRIDE_SETTING, type ProviderAccount } from '../types';
import type { ProviderOptions } from './types';

/**
 * The classification every HTTP provider shares, by status code alone (DESIGN §5): 401 auth,
 * 403 account refused, 413 too large, 429 rate limited, 5xx unavailable, other 4xx a rejection
 * of the message; no status at all means the network. Provider files map their own codes
 * (SES error names, Postmark ErrorCode) first and fall back to this.
 */
export function errorFromHttpStatus(
  label: string,
  status: number | null | undefined,
  opts: { retryAfterSeconds?: number; timedOut?: boolean } = {},
): WorkerError {
  if (status === null || status === undefined || status === 0) {
    return opts.timedOut
      ? new WorkerError('provider_timeout', `${label} did not answer in time`)
      : new WorkerError('provider_network', `${label} could not be reached`);
  }
  if (status === 401) return new WorkerError('provider_auth_failed', `${label} rejected the credentials (401)`);
  if (status === 403) return new WorkerError('provider_forbidden', `${label} refused the request for this account (403)`);
  if (status === 413) return new WorkerError('provider_payload_too_large', `${label} rejected the message as too large (413)`);
  if (status === 429) return new WorkerError('provider_rate_limited', `${label} rate limit reached (429)`, { retryAfterSeconds: opts.retryAfterSeconds });
  if (status >= 500) return new WorkerError('provider_unavailable', `${label} server error (${status})`);
  return new WorkerError('provider_rejected', `${label} rejected the message (${status})`);
}

/** Retry-After as seconds: either delta-seconds or an HTTP date. */
export function parseRetryAfter(value: unknown, now: () => number = Date.now): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const n = Number(value);
  if (Number.isFinite(n)) return n >= 0 ? Math.ceil(n) : undefined;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(1, Math.ceil((at - now()) / 1000)) : undefined;
}

/** Settings values are untyped JSON; these read them defensively. */
export function stringSetting(settings: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const v = settings[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The account's endpoint override (ENDPOINT_OVERRIDE_SETTING); it only counts when the platform allows overrides (tests, proxies). */
export function endpointOverride(account: ProviderAccount, allow: boolean): string | undefined {
  const key = ENDPOINT_OVERRIDE_SETTING[account.provider];
  return allow && key !== null ? stringSetting(account.settings, key) : undefined;
}

/**
 * Where an HTTP provider's client connects when the account overrides its endpoint. When the
 * tenant chose it (not the platform's own global account), `lookup` pins every connection to an
 * address the egress policy allowed: the check before each call (clients.ts) then cannot be
 * undone by a name that answers differently when the SDK connects (DNS rebinding).
 */
export function endpointFor(account: ProviderAccount, opts: ProviderOptions): { url: string; lookup?: LookupFunction } | undefined {
  const url = endpointOverride(account, opts.allowEndpointOverride);
  if (url === undefined) return undefined;
  return account.platformManaged ? { url } : { url, lookup: opts.connectLookup ?? opts.egress.lookup };
}

/**
 * The agents below keep connections alive with TCP keep-alive probes after 60 s of silence. 60 s
 * is what axios (inside @sendgrid/client) sets on every request's socket; the agent sets its own
 * value again each time it takes a socket back, and node skips the setsockopt calls only when the
 * value is unchanged. With Node's default of 1 s the two alternate, and every request paid two
 * rounds of system calls: 2.7% of the worker's CPU in the bench's profile.
 */
const KEEP_ALIVE = { keepAlive: true, keepAliveMsecs: 60_000 } as const;

/** Kept-alive http and https agents whose connections resolve through `lookup`. */
export function pinnedAgents(lookup: LookupFunction): { http: HttpAgent; https: HttpsAgent } {
  return { http: new HttpAgent({ ...KEEP_ALIVE, lookup }), https: new HttpsAgent({ ...KEEP_ALIVE, lookup }) };
}

let shared: { http: HttpAgent; https: HttpsAgent } | undefined;
/**
 * The agents of every SendGrid client that connects to SendGrid's own API (no endpoint override):
 * Node's global agents' settings (most recently used socket first, idle sockets closed after
 * 5 s), shared by all tenants' clients as those are, with KEEP_ALIVE's probe interval.
 */
export function sharedAgents(): { http: HttpAgent; https: HttpsAgent } {
  if (!shared) {
    const options = { ...KEEP_ALIVE, scheduling: 'lifo', timeout: 5_000 } as const;
    shared = { http: new HttpAgent(options), https: new HttpsAgent(options) };
  }
  return shared;
}

/** An undici dispatcher (for fetch) whose connections resolve through `lookup`; undici is loaded on first use. */
export function pinnedDispatcher(lookup: LookupFunction): import('undici').Agent {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Agent } = require('undici') as typeof import('undici');
  return new Agent({ connect: { lookup } });
}

/** Whether a failed request ran out its time budget (SDKs that abort without saying why). */
export function ranOutOfTime(startedAt: number, timeoutMs: number): boolean {
  return Date.now() - startedAt >= timeoutMs * 0.95;
}

/**
 * One provider SDK call, the same way for every provider: a WorkerError it throws passes
 * through; any other failure is mapped by the provider's `map`, told whether the call ran out its
 * time budget (PROVIDER_TIMEOUT_MS), which SDKs that abort do not say.
 */
export function timedCall(timeoutMs: number, map: (err: unknown, timedOut: boolean) => WorkerError) {
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkerError) throw err;
      throw map(err, ranOutOfTime(started, timeoutMs));
    }
  };
}

/** `Name <address>` with the name quoted when it holds anything but letters, digits and spaces. */
export function formatFrom(from: { email: string; name: string | null }): string {
  if (!from.name) return from.email;
  const name = /^[A-Za-z0-9 ]+$/.test(from.name) ? from.name : `"${from.name.replace(/["\\]/g, '\\$&')}"`;
  return `${name} <${from.email}>`;
}

/** Provider tag values (SES, Resend) allow only [A-Za-z0-9_-], up to 256 characters. */
export function tagValue(v: string): string {
  return v.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 256);
}

/** A DNS record name as a fully qualified name: some providers give it relative to the domain ("send"). */
export function fqdn(name: string, domain: string): string {
  const n = name.replace(/\.$/, '').toLowerCase();
  if (n === '' || n === '@') return domain;
  return n === domain || n.endsWith(`.${domain}`) ? n : `${n}.${domain}`;
}
