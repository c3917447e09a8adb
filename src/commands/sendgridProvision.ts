import { randomBytes } from 'node:crypto';
import type { ClientRequest } from '@sendgrid/client/src/request';
import type { Sql } from '../db/connect';
import { getSettings, putSettings } from '../db/settings';
import { mapSendgridError } from '../providers/sendgrid';
import type { KeyRing } from '../config/require';
import { UsageError } from '../errors';

/**
 * Give a tenant its own SendGrid subuser (the seed's "SendGrid Subuser System"): the subuser, an
 * API key created on its behalf with the mail.send scope, a verified sender, optionally a
 * dedicated IP; the key is stored as the tenant's settings. Every step first looks at what
 * exists, so a run that failed half way is completed by running it again.
 */

export interface ProvisionOptions {
  masterApiKey: string;
  baseUrl?: string;
  tenantId: string;
  username?: string;
  fromEmail: string;
  fromName: string;
  replyTo?: string;
  sender?: { address: string; city: string; country: string };
  ip?: string;
  dailyLimit?: number;
}

export type StepResult = 'created' | 'exists' | 'assigned' | 'skipped' | 'kept';

export interface ProvisionReport {
  username: string;
  subuser: StepResult;
  sender: StepResult;
  api_key: StepResult;
  ip: StepResult;
}

const KEY_NAME = 'tenant-email-worker';

interface SgClient {
  setApiKey(key: string): void;
  setDefaultRequest(key: string, value: unknown): void;
  request(req: ClientRequest): Promise<[{ statusCode: number; body: unknown }, unknown]>;
}

/** SendGrid usernames: letters, digits, '-', '_'; ours are derived from the tenant id. */
export function subuserName(tenantId: string): string {
  return `tew-${tenantId.toLowerCase().replace(/[^a-z0-9_-]/g, '-')}`.slice(0, 64);
}

export async function provisionSendgridSubuser(sql: Sql, keys: KeyRing, o: ProvisionOptions): Promise<ProvisionReport> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Client } = require('@sendgrid/client') as { Client: new () => SgClient };
  const client = new Client();
  client.setApiKey(o.masterApiKey);
  if (o.baseUrl) client.setDefaultRequest('baseUrl', o.baseUrl);
  client.setDefaultRequest('timeout', 15_000);
  const username = o.username ?? subuserName(o.tenantId);
  const call = async <T>(step: string, req: ClientRequest): Promise<T> => {
    try {
      const [res] = await client.request(req);
      return res.body as T;
    } catch (err) {
      // The SDK error carries the master key in its request config: keep only the mapped code.
      const mapped = mapSendgridError(err);
      throw new UsageError(`${step} failed: ${mapped.code} (${mapped.message}); fix it and run the command again to finish`);
    }
  };
  const onBehalf = { 'on-behalf-of': username };
  const report: ProvisionReport = { username, subuser: 'exists', sender: 'exists', api_key: 'kept', ip: 'skipped' };

  const found = await call<Array<{ username: string }>>('looking up the subuser', { method: 'GET', url: '/v3/subusers', qs: { username } });
  if (!found.some((s) => s.username === username)) {
    await call('creating the subuser', {
      method: 'POST',
      url: '/v3/subusers',
      // The subuser's password is never used again (the API key is): random, not stored, not shown.
      body: { username, email: o.fromEmail, password: `${randomBytes(24).toString('base64url')}aA1!`, ips: o.ip ? [o.ip] : [] },
    });
    report.subuser = 'created';
  }

  const senders = await call<{ results?: Array<{ from_email: string }> }>('listing verified senders', { method: 'GET', url: '/v3/verified_senders', headers: onBehalf });
  if (!(senders.results ?? []).some((s) => s.from_email.toLowerCase() === o.fromEmail.toLowerCase())) {
    if (!o.sender) throw new UsageError('the verified sender does not exist yet: pass --address, --city and --country (SendGrid requires a postal address)');
    await call('creating the verified sender', {
      method: 'POST',
      url: '/v3/verified_senders',
      headers: onBehalf,
      body: { nickname: o.tenantId, from_email: o.fromEmail, from_name: o.fromName, reply_to: o.replyTo ?? o.fromEmail, ...o.sender },
    });
    report.sender = 'created';
  }

  const existing = await getSettings(sql, o.tenantId);
  if (!(existing && existing.provider === 'sendgrid' && existing.api_key_set)) {
    // A key made by an earlier run that failed before storing it is useless now: remove it.
    const keysList = await call<{ result?: Array<{ api_key_id: string; name: string }> }>('listing API keys', { method: 'GET', url: '/v3/api_keys', headers: onBehalf });
    for (const k of (keysList.result ?? []).filter((k) => k.name === KEY_NAME)) {
      await call('removing a stale API key', { method: 'DELETE', url: `/v3/api_keys/${encodeURIComponent(k.api_key_id)}`, headers: onBehalf });
    }
    const created = await call<{ api_key: string }>('creating the API key', {
      method: 'POST',
      url: '/v3/api_keys',
      headers: onBehalf,
      body: { name: KEY_NAME, scopes: ['mail.send'] },
    });
    await putSettings(sql, keys, o.tenantId, {
      provider: 'sendgrid',
      api_key: created.api_key,
      from_email: o.fromEmail,
      from_name: o.fromName,
      provider_settings: o.baseUrl ? { base_url: o.baseUrl } : {},
      enabled: true,
      daily_limit: o.dailyLimit ?? existing?.daily_limit ?? 1000,
    }, { platformPaid: true });
    report.api_key = 'created';
  }

  if (o.ip) {
    await call('assigning the IP', { method: 'PUT', url: `/v3/subusers/${encodeURIComponent(username)}/ips`, body: [o.ip] });
    report.ip = 'assigned';
  }
  return report;
}
