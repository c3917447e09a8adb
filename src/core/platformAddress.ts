import { isEmailAddress } from './emailAddress';

/**
 * The platform-tier sender address EMAIL_TENANT_FROM_PATTERN makes for a tenant
 * (`noreply@{tenant}.mail.example.com`). Here rather than in email/, because the configuration
 * checks the pattern when it loads, and config sits below email.
 */

/**
 * A tenant id as a DNS label (and local part): lower case, runs of anything but [a-z0-9] become
 * one `-`, trimmed, at most 63 characters. Distinct ids may share a label (`a.b`, `a_b`); the
 * label only names the sender, it is not an identity.
 */
export function tenantLabel(tenantId: string): string {
  return tenantId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
}

/** The platform-tier address for a tenant, or null when the pattern cannot make a valid one. */
export function platformAddress(pattern: string, tenantId: string): string | null {
  const label = tenantLabel(tenantId);
  if (!label) return null;
  const candidate = pattern.replace(/\{tenant\}/g, label);
  return isEmailAddress(candidate) ? candidate : null;
}

/** Whether EMAIL_TENANT_FROM_PATTERN is usable: it names the tenant and yields an address. */
export function checkFromPattern(pattern: string): string | null {
  if (!pattern.includes('{tenant}')) return 'must contain {tenant}, e.g. noreply@{tenant}.mail.example.com';
  if (!platformAddress(pattern, 'acme')) return 'must give an email address once {tenant} is filled in, e.g. noreply@{tenant}.mail.example.com';
  return null;
}
