import { WorkerError } from '../errors';
import type { ProviderAccount, DomainState } from '../types';
import { endpointFor, errorFromHttpStatus, formatFrom, pinnedAgents, stringSetting, tagValue, timedCall } from './common';
import type { EmailProvider, OutgoingEmail, ProviderOptions } from './types';

type SesModule = typeof import('@aws-sdk/client-sesv2');

/**
 * Amazon SES v2 through @aws-sdk/client-sesv2 (SendEmailCommand, GetAccountCommand). Settings:
 * `region` (required), `access_key_id` with the stored api_key as the secret key, or neither to
 * use the default credential chain (IRSA on EKS); `configuration_set`; `tenant_name` (SES
 * tenants, for per-tenant reputation isolation) on every send. The SDK's own retries are off:
 * Knative redelivers, and the ledger keeps a redelivery from sending twice.
 */
export function createSesProvider(account: ProviderAccount, opts: ProviderOptions): EmailProvider {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ses = require('@aws-sdk/client-sesv2') as SesModule;
  const region = stringSetting(account.settings, 'region');
  if (!region) throw new WorkerError('provider_rejected', 'SES settings need a region');
  const accessKeyId = stringSetting(account.settings, 'access_key_id');
  const endpoint = endpointFor(account, opts);
  const agents = endpoint?.lookup ? pinnedAgents(endpoint.lookup) : undefined;
  const client = new ses.SESv2Client({
    region,
    ...(accessKeyId && account.apiKey ? { credentials: { accessKeyId, secretAccessKey: account.apiKey } } : {}),
    ...(endpoint ? { endpoint: endpoint.url } : {}),
    maxAttempts: 1,
    requestHandler: {
      requestTimeout: opts.timeoutMs,
      connectionTimeout: opts.timeoutMs,
      // Without it the handler only logs a warning when requestTimeout passes and keeps waiting.
      throwOnRequestTimeout: true,
      // A tenant's endpoint: every connection goes to an address the egress policy checked.
      ...(agents ? { httpAgent: agents.http, httpsAgent: agents.https } : {}),
    },
  });
  const configurationSet = stringSetting(account.settings, 'configuration_set');
  const tenantName = stringSetting(account.settings, 'tenant_name');

  const call = timedCall(opts.timeoutMs, mapSesError);

  return {
    name: 'ses',
    send: (email: OutgoingEmail) =>
      call(async () => {
        const out = await client.send(
          new ses.SendEmailCommand({
            FromEmailAddress: formatFrom(email.from),
            Destination: { ToAddresses: [email.to] },
            ...(email.replyTo ? { ReplyToAddresses: [email.replyTo] } : {}),
            Content: {
              Simple: {
                Subject: { Data: email.subject, Charset: 'UTF-8' },
                Body: { Text: { Data: email.text, Charset: 'UTF-8' }, Html: { Data: email.html, Charset: 'UTF-8' } },
                Headers: Object.entries(email.headers).map(([Name, Value]) => ({ Name, Value })),
              },
            },
            EmailTags: [
              { Name: 'tenant_id', Value: tagValue(email.tags.tenantId) },
              { Name: 'event_id', Value: tagValue(email.tags.eventId) },
            ],
            ...(configurationSet ? { ConfigurationSetName: configurationSet } : {}),
            ...(tenantName ? { TenantName: tenantName } : {}),
          }),
        );
        return { messageId: out.MessageId ?? null };
      }),
    verify: () =>
      call(async () => {
        const out = await client.send(new ses.GetAccountCommand({}));
        if (out.SendingEnabled === false) throw new WorkerError('provider_forbidden', 'SES sending is paused for this account');
      }),
    async close() {
      client.destroy();
    },
    domains() {
      const get = (domain: string): Promise<DomainState> =>
        call(async () => sesDomainState(domain, await client.send(new ses.GetEmailIdentityCommand({ EmailIdentity: domain }))));
      return {
        register: (domain) =>
          call(async () => {
            try {
              return sesDomainState(domain, await client.send(new ses.CreateEmailIdentityCommand({ EmailIdentity: domain })));
            } catch (err) {
              // Already an identity of this account: read it instead.
              if ((err as { name?: unknown }).name === 'AlreadyExistsException') return get(domain);
              throw err;
            }
          }),
        check: (domain) => get(domain),
      };
    },
  };
}

/** Easy DKIM: three CNAMEs; the identity can send once SES reports it verified for sending. */
function sesDomainState(
  domain: string,
  out: { VerifiedForSendingStatus?: boolean; DkimAttributes?: { Status?: string; Tokens?: string[] } },
): DomainState {
  const dkim = out.DkimAttributes?.Status;
  const status = out.VerifiedForSendingStatus ? 'verified' : dkim === 'FAILED' ? 'failed' : 'pending';
  const records = (out.DkimAttributes?.Tokens ?? []).map((t) => ({
    type: 'CNAME',
    name: `${t}._domainkey.${domain}`,
    value: `${t}.dkim.amazonses.com`,
    ...(dkim ? { status: dkim.toLowerCase() } : {}),
  }));
  return { providerDomainId: domain, status, records };
}

const PERMANENT_MESSAGE = new Set(['MessageRejected', 'BadRequestException', 'NotFoundException']);
const PERMANENT_ACCOUNT = new Set(['MailFromDomainNotVerifiedException', 'AccountSuspendedException', 'SendingPausedException', 'AccessDeniedException']);
const AUTH = new Set(['UnrecognizedClientException', 'InvalidSignatureException', 'SignatureDoesNotMatch', 'InvalidClientTokenId', 'ExpiredTokenException', 'CredentialsProviderError']);
const THROTTLED = new Set(['TooManyRequestsException', 'LimitExceededException', 'ThrottlingException', 'Throttling']);

/** By the SDK's error name and HTTP status, never the message (DESIGN §5). */
export function mapSesError(err: unknown, timedOut = false): WorkerError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; $metadata?: { httpStatusCode?: number } };
  const name = typeof e.name === 'string' ? e.name : '';
  const status = e.$metadata?.httpStatusCode;
  if (PERMANENT_MESSAGE.has(name)) return new WorkerError('provider_rejected', `SES rejected the message (${name})`);
  if (PERMANENT_ACCOUNT.has(name)) return new WorkerError('provider_forbidden', `SES refused to send for this account (${name})`);
  if (AUTH.has(name)) return new WorkerError('provider_auth_failed', `SES rejected the credentials (${name})`);
  if (THROTTLED.has(name)) return new WorkerError('provider_rate_limited', `SES is throttling this account (${name})`);
  if (name === 'TimeoutError' || name === 'RequestTimeout') return new WorkerError('provider_timeout', 'SES did not answer in time');
  return errorFromHttpStatus('SES', status, { timedOut });
}
