import type { LookupFunction } from 'node:net';
import type { Egress } from '../net/egress';
import type { DomainState, ProviderAccount, ProviderName } from '../types';

/** One email as every provider receives it. Addresses and headers are validated before this. */
export interface OutgoingEmail {
  from: { email: string; name: string | null };
  to: string;
  replyTo: string | null;
  subject: string;
  text: string;
  html: string;
  /** Extra headers (X-Tenant-ID, X-Event-ID, X-Entity-Ref-ID, List-Unsubscribe, the tenant's own). */
  headers: Readonly<Record<string, string>>;
  /** `<hash@from-domain>`, stable per delivery: the Message-ID where the provider lets us set it (SMTP). */
  reference: string;
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
  /** The provider's sender-domain API, where it has one the worker can use (not SMTP). */
  domains?(opts: DomainApiOptions): DomainApi;
  /** The provider's webhook API, where it lets the tenant's own credentials register one (SendGrid, Postmark, Resend). */
  webhooks?(): WebhookApi;
}

/** The delivery events the worker subscribes to: what DESIGN §9's statuses come from. */
export interface WebhookRegistration {
  /** The provider's id of the webhook, to update it when registered again (null: the provider has one per account). */
  providerWebhookId: string | null;
  events: string[];
  /** SendGrid: the signed webhook's verification key. */
  publicKey?: string;
  /** Resend: the webhook's signing secret. */
  signingSecret?: string;
}

/** Register (or update) the delivery-event webhook at `url`. Rejects with a WorkerError. */
export interface WebhookApi {
  register(url: string, opts: { existingId: string | null; basicAuth?: { username: string; password: string } }): Promise<WebhookRegistration>;
}

export interface DomainApiOptions {
  /** Postmark only: the account token (domains are account-level there). Never stored. */
  accountToken?: string;
}

/** Register a sender domain at the provider and ask it whether the DNS records are in place. Rejects with a WorkerError. */
export interface DomainApi {
  register(domain: string): Promise<DomainState>;
  check(domain: string, providerDomainId: string): Promise<DomainState>;
}

export interface ProviderOptions {
  timeoutMs: number;
  allowEndpointOverride: boolean;
  /** Where tenant-chosen hosts may point; checked on the resolved addresses at connect time. */
  egress: Egress;
  /**
   * The lookup a client's connections to a tenant's endpoint use; ProviderClients sets one per
   * client that notes refusals. Without it, the policy's own (`egress.lookup`).
   */
  connectLookup?: LookupFunction;
}

export type ProviderFactory = (account: ProviderAccount, opts: ProviderOptions) => EmailProvider;
