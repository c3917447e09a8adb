import { platformAddress } from '../core/platformAddress';
import { WorkerError } from '../errors';
import { GLOBAL_TENANT, type ProviderAccount, type SenderDomainPolicy, type SenderNote, type SenderSettings, type SenderTier } from '../types';

/**
 * Who an email is from: the sender tiers of the outbound-email plan.
 *
 * - platform tier: the address EMAIL_TENANT_FROM_PATTERN builds for the tenant (e.g.
 *   `noreply@{tenant}.mail.example.com`), or the global sender for tenant-less events. Used when
 *   the tenant has no from_email of its own, and instead of a custom domain that is not verified.
 * - custom tier: the tenant's from_email. Whether its domain must first be verified through
 *   POST …/email-domains (then …/verify) depends on who pays for the account that sends
 *   (SENDER_DOMAIN_POLICY):
 *   - `platform-paid` (the default): only on an account the platform pays for (the global
 *     account, a SendGrid subuser the platform provisioned), where a spoofed From would spend
 *     the platform's reputation. A tenant's own account enforces its own verified senders, so its
 *     from_email is used as given: the seed's flow (own key + from_email) sends at once.
 *   - `verified`: on every account.
 *   - `provider`: on none; every provider account enforces its verified senders.
 *   SMTP accounts are never checked: the relay is the tenant's, with no domain API.
 */

export interface SenderChoice {
  email: string;
  name: string | null;
  tier: SenderTier;
  /** Why the tier is not the one the settings asked for; null when it is. */
  note: SenderNote | null;
}

export function domainOf(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1).toLowerCase();
}

/** Whether a tenant's own from_email domain must be verified before `account` sends from it. */
export function mustVerifyDomain(policy: SenderDomainPolicy, account: ProviderAccount): boolean {
  if (account.provider === 'smtp') return false;
  return policy === 'verified' || (policy === 'platform-paid' && account.platformPaid === true);
}

export interface SenderContext {
  tenantId: string;
  settings: SenderSettings;
  /** The account about to send (the primary, or the fallback). */
  account: ProviderAccount;
  fromPattern: string | undefined;
  policy: SenderDomainPolicy;
}

/**
 * Pick the From address for one send. Throws `sender_not_configured` when the tenant has no
 * from_email and there is no platform tier, `sender_domain_unverified` when a custom domain is
 * not verified and there is no platform tier to fall back to.
 */
export function resolveSender(ctx: SenderContext): SenderChoice {
  const { settings, fromPattern, tenantId } = ctx;
  const name = settings.fromName;
  const platform = fromPattern && tenantId !== GLOBAL_TENANT ? platformAddress(fromPattern, tenantId) : null;

  if (settings.source === 'global') {
    // The platform's own account: the pattern's address when there is a tenant, else the global sender.
    return { email: platform ?? (settings.fromEmail as string), name, tier: 'platform', note: null };
  }
  if (!settings.fromEmail) {
    if (!platform) {
      throw new WorkerError(
        'sender_not_configured',
        fromPattern
          ? `tenant "${tenantId}" has no from_email and EMAIL_TENANT_FROM_PATTERN gives no valid address for it`
          : `tenant "${tenantId}" has no from_email and EMAIL_TENANT_FROM_PATTERN is not set`,
      );
    }
    return { email: platform, name, tier: 'platform', note: null };
  }
  // A from_email on the tenant's platform domain is the platform tier, whatever its local part.
  if (platform && domainOf(settings.fromEmail) === domainOf(platform)) {
    return { email: settings.fromEmail, name, tier: 'platform', note: null };
  }
  // An SMTP server is the tenant's own relay: it has no domain API here and decides itself which
  // From it accepts (and signs), so its from_email is used as given.
  if (!mustVerifyDomain(ctx.policy, ctx.account)) return { email: settings.fromEmail, name, tier: 'custom', note: null };

  const d = settings.fromDomain;
  const note: SenderNote | null = !d
    ? 'domain_not_registered'
    : d.provider !== ctx.account.provider
      ? 'domain_other_provider'
      : d.status === 'verified'
        ? null
        : d.status === 'failed'
          ? 'domain_failed'
          : 'domain_pending';
  if (!note) return { email: settings.fromEmail, name, tier: 'custom', note: null };
  if (platform) return { email: platform, name, tier: 'platform', note };
  throw new WorkerError(
    'sender_domain_unverified',
    `the domain of from_email (${domainOf(settings.fromEmail)}) is not verified for ${ctx.account.provider} (${note}), the account ${ctx.account.platformPaid ? 'is paid for by the platform' : 'is checked (SENDER_DOMAIN_POLICY=verified)'}, and EMAIL_TENANT_FROM_PATTERN is not set; register and verify it through …/email-domains`,
  );
}
