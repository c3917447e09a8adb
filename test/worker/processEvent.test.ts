import { loadConfig } from '../../src/config';
import type { ClaimRequest, ClaimResult, DeliveryStore, OutcomeRecord } from '../../src/db/deliveries';
import { WorkerError } from '../../src/errors';
import { createLogger } from '../../src/logger';
import type { ProviderClients } from '../../src/providers/clients';
import type { EmailProvider, OutgoingEmail } from '../../src/providers/types';
import type { ProviderAccount, SenderSettings } from '../../src/types';
import { LateWrites } from '../../src/worker/lateWrites';
import { createEventProcessor } from '../../src/worker/processEvent';
import { taskData } from '../helpers/events';
import { CANARY_DB_KEY } from '../helpers/worker';
import type { IntakeEvent } from '../../src/core/event';

/**
 * The processor on its own, between a ledger and providers that answer as each case needs:
 * which claim outcome becomes which answer, what is recorded, when the fallback is tried, and
 * what is left to the background when the database is away. The same paths end to end, with
 * PostgreSQL and the real SDKs, are in test/e2e and test/faults.
 */

const log = createLogger({ level: 'silent' });
const config = loadConfig({ DATABASE_URL: 'postgres://u@localhost/db', DB_ENCRYPTION_KEY: CANARY_DB_KEY, SENDER_DOMAIN_POLICY: 'provider' });

const account = (name: string): ProviderAccount => ({ provider: 'sendgrid', apiKey: `SG.${name}`, settings: {} });
const settings = (fallback = false): SenderSettings => ({
  source: 'tenant',
  primary: account('primary'),
  fallback: fallback ? account('fallback') : null,
  fromEmail: 'noreply@acme.example',
  fromName: 'Acme',
  replyToDomain: null,
  listUnsubscribe: null,
  extraHeaders: {},
  fromDomain: null,
  version: 1,
});

const event = (id = 'ev-1'): IntakeEvent => ({
  id, source: '/test', type: 'codetether.task.created', tenantId: 'acme', traceparent: null, mode: 'binary', recipient: 'owner@customer.example',
  data: taskData({ task_id: `task-${id}` }) as IntakeEvent['data'],
});

/** A ledger that answers the claim as told and keeps every call. */
function ledger(answer: ClaimResult | Error, opts: { recordFails?: boolean } = {}) {
  const claims: ClaimRequest[] = [];
  const outcomes: OutcomeRecord[] = [];
  const store: DeliveryStore = {
    async claim(req) {
      claims.push(req);
      if (answer instanceof Error) throw answer;
      return answer;
    },
    async recordOutcome(rec) {
      if (opts.recordFails) throw Object.assign(new Error('connection closed'), { code: 'CONNECTION_CLOSED' });
      outcomes.push(rec);
      return true;
    },
  };
  return { store, claims, outcomes };
}

/** Providers by API key: each answers with what `behave` says for it. */
function providers(behave: Record<string, (email: OutgoingEmail) => Promise<{ messageId: string | null }>>) {
  const sent: Array<{ key: string; email: OutgoingEmail }> = [];
  const clients = {
    get: (_tenant: string, a: ProviderAccount): EmailProvider => ({
      name: a.provider,
      send: async (email) => {
        sent.push({ key: a.apiKey as string, email });
        return behave[a.apiKey as string]!(email);
      },
      verify: async () => {},
    }),
  } as unknown as ProviderClients;
  return { clients, sent };
}

const claimed = (s: SenderSettings | null = settings()): ClaimResult => ({ outcome: 'claimed', claimToken: 'token-from-db', settings: s, dailyLimit: 100, templateVersion: null });

function processor(store: DeliveryStore, clients: ProviderClients, lateWrites = new LateWrites()) {
  return createEventProcessor({ config, deliveries: store, providers: clients, lateWrites, loadTemplate: async () => null });
}

describe('processEvent', () => {
  it.each([
    [{ outcome: 'duplicate' } as ClaimResult, { kind: 'duplicate' }],
    [{ outcome: 'skipped_no_recipient' } as ClaimResult, { kind: 'skipped', reason: 'no_recipient' }],
    [{ outcome: 'skipped_disabled' } as ClaimResult, { kind: 'skipped', reason: 'tenant_disabled' }],
  ])('claim %j → %j, nothing sent or recorded', async (answer, outcome) => {
    const l = ledger(answer);
    const p = providers({});
    expect(await processor(l.store, p.clients)(event(), log)).toEqual(outcome);
    expect(p.sent).toEqual([]);
    expect(l.outcomes).toEqual([]);
  });

  it.each([
    [{ outcome: 'in_flight' } as ClaimResult, 'event_in_flight'],
    [{ outcome: 'quota_exceeded', dailyLimit: 5 } as ClaimResult, 'quota_exceeded'],
    [{ outcome: 'unknown_tenant' } as ClaimResult, 'unknown_tenant'],
  ])('claim %j → %s', async (answer, code) => {
    const l = ledger(answer);
    await expect(processor(l.store, providers({}).clients)(event(), log)).rejects.toMatchObject({ code });
    expect(l.outcomes).toEqual([]);
  });

  it('claimed: sends through the primary once and records sent with the claim token and message id', async () => {
    const l = ledger(claimed());
    const p = providers({ 'SG.primary': async () => ({ messageId: 'm-1' }) });
    const out = await processor(l.store, p.clients)(event(), log);
    expect(out).toMatchObject({ kind: 'sent', provider: 'sendgrid', messageId: 'm-1', fallbackUsed: false, recorded: true, template: 'builtin' });
    expect(p.sent).toHaveLength(1);
    expect(p.sent[0]!.email.to).toBe('owner@customer.example');
    expect(l.outcomes).toEqual([expect.objectContaining({ claimToken: 'token-from-db', status: 'sent', messageId: 'm-1', errorCode: null, templateSource: 'builtin' })]);
    // The claim carried a token of the processor's own drawing (sql/008).
    expect(l.claims[0]!.claimToken).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a retryable primary failure goes to the fallback; a rejection of the message does not', async () => {
    const l = ledger(claimed(settings(true)));
    const p = providers({ 'SG.primary': async () => Promise.reject(new WorkerError('provider_unavailable')), 'SG.fallback': async () => ({ messageId: 'fb-1' }) });
    expect(await processor(l.store, p.clients)(event('ev-fb'), log)).toMatchObject({ kind: 'sent', messageId: 'fb-1', fallbackUsed: true });
    expect(p.sent.map((s) => s.key)).toEqual(['SG.primary', 'SG.fallback']);

    const l2 = ledger(claimed(settings(true)));
    const p2 = providers({ 'SG.primary': async () => Promise.reject(new WorkerError('provider_rejected')), 'SG.fallback': async () => ({ messageId: 'never' }) });
    await expect(processor(l2.store, p2.clients)(event('ev-rej'), log)).rejects.toMatchObject({ code: 'provider_rejected' });
    expect(p2.sent.map((s) => s.key)).toEqual(['SG.primary']);
    expect(l2.outcomes).toEqual([expect.objectContaining({ status: 'failed', errorCode: 'provider_rejected' })]);
  });

  it('an SDK error that is not ours becomes internal_error, recorded as failed', async () => {
    const l = ledger(claimed());
    const p = providers({ 'SG.primary': async () => Promise.reject(new TypeError('boom')) });
    await expect(processor(l.store, p.clients)(event(), log)).rejects.toMatchObject({ code: 'internal_error' });
    expect(l.outcomes).toEqual([expect.objectContaining({ status: 'failed', errorCode: 'internal_error' })]);
  });

  it('a claim whose call failed: database_unavailable, and the claim under our token is given up in the background', async () => {
    const l = ledger(Object.assign(new Error('connection closed'), { code: 'CONNECTION_CLOSED' }));
    const late = new LateWrites();
    await expect(processor(l.store, providers({}).clients, late)(event(), log)).rejects.toMatchObject({ code: 'database_unavailable' });
    expect(late.size).toBe(1);
    // The pending write is the release of exactly the token the claim carried.
    const released: OutcomeRecord[] = [];
    l.store.recordOutcome = async (rec) => (released.push(rec), true);
    await late.flush();
    expect(released).toEqual([expect.objectContaining({ claimToken: l.claims[0]!.claimToken, status: 'failed', errorCode: 'database_unavailable', provider: null })]);
    expect(late.size).toBe(0);
  });

  it('sent, but the outcome cannot be written: still answered as sent (recorded false), the write left to the background', async () => {
    const l = ledger(claimed(), { recordFails: true });
    const late = new LateWrites();
    const p = providers({ 'SG.primary': async () => ({ messageId: 'm-2' }) });
    expect(await processor(l.store, p.clients, late)(event(), log)).toMatchObject({ kind: 'sent', recorded: false });
    expect(late.size).toBe(1);
    await late.flush(); // still failing: dropped and logged at shutdown
    expect(late.size).toBe(0);
  });
});
