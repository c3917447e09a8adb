import type { ProviderAccount, ProviderName } from '../types';

/** One email as every provider receives it. Addresses and headers are validated before this. */
export interface OutgoingEmail {
  from: { email: string; name: string | null };
  to: string;
  replyTo: string | null;
  subject: string;
  text: string;
  html: string;
  /** Extra headers (X-Tenant-ID, X-Event-ID). */
  headers: Readonly<Record<string, string>>;
  /** Tie provider-side analytics and webhooks back to the tenant and the event. */
  tags: { tenantId: string; eventId: string };
  /** Stable per delivery: the ledger key. Providers that support idempotency keys get it. */
  idempotencyKey: string;
}

export interface SendResult {
  messageId: string | null;
}

/**
 * A provider client for one account. `send` resolves or rejects with a WorkerError from the
 * registry (never with an SDK error, which may carry the credentials in its request config).
 */
export interface EmailProvider {
  readonly name: ProviderName;
  send(email: OutgoingEmail): Promise<SendResult>;
  /** Check the credentials without sending an email. Rejects with a WorkerError. */
  verify(): Promise<void>;
  close?(): Promise<void>;
}

export interface ProviderOptions {
  timeoutMs: number;
  allowEndpointOverride: boolean;
}

export type ProviderFactory = (account: ProviderAccount, opts: ProviderOptions) => EmailProvider;
