import { mustVerifyDomain, resolveSender, type SenderContext } from '../../src/email/sender';
import type { ProviderAccount, SenderSettings } from '../../src/types';
import { checkFromPattern, tenantLabel, platformAddress } from '../../src/core/platformAddress';

const account = (provider: ProviderAccount['provider']): ProviderAccount => ({ provider, apiKey: 'k', settings: {} });
const settings = (over: Partial<SenderSettings> = {}): SenderSettings =>
  ({
    source: 'tenant',
    primary: account('sendgrid'),
    fallback: null,
    fromEmail: 'noreply@brand.example',
    fromName: 'Brand',
    replyToDomain: null,
    listUnsubscribe: null,
    extraHeaders: {},
    fromDomain: null,
    ...over,
  }) as SenderSettings;
const ctx = (over: Partial<SenderContext> = {}): SenderContext => ({
  tenantId: 'Acme_Corp',
  settings: settings(),
  account: account('sendgrid'),
  fromPattern: 'noreply@{tenant}.mail.platform.example',
  policy: 'verified',
  ...over,
});

describe('platform tier addresses', () => {
  it.each([
    ['acme', 'acme'],
    ['Acme_Corp', 'acme-corp'],
    ['a.b:c--d', 'a-b-c-d'],
    ['--x--', 'x'],
    ['t'.repeat(100), 't'.repeat(63)],
  ])('tenant %s is the DNS label %s', (id, label) => {
    expect(tenantLabel(id)).toBe(label);
  });

  it('builds the address from the pattern, or none when the result is not an address', () => {
    expect(platformAddress('noreply@{tenant}.mail.example.com', 'Acme_Corp')).toBe('noreply@acme-corp.mail.example.com');
    expect(platformAddress('{tenant}@mail.example.com', 'acme')).toBe('acme@mail.example.com');
    expect(platformAddress('noreply@{tenant}.example.com', '___')).toBeNull();
  });

  it('checks EMAIL_TENANT_FROM_PATTERN', () => {
    expect(checkFromPattern('noreply@{tenant}.mail.example.com')).toBeNull();
    expect(checkFromPattern('noreply@mail.example.com')).toMatch(/must contain \{tenant\}/);
    expect(checkFromPattern('{tenant}')).toMatch(/must give an email address/);
  });
});

describe('resolveSender', () => {
  it('uses the platform tier when the tenant has no from_email', () => {
    expect(resolveSender(ctx({ settings: settings({ fromEmail: null }) }))).toEqual({ email: 'noreply@acme-corp.mail.platform.example', name: 'Brand', tier: 'platform', note: null });
  });

  it('refuses a tenant without from_email when there is no platform tier', () => {
    expect(() => resolveSender(ctx({ settings: settings({ fromEmail: null }), fromPattern: undefined }))).toThrow(expect.objectContaining({ code: 'sender_not_configured' }));
  });

  it('sends from a verified custom domain at the sending provider', () => {
    const s = settings({ fromDomain: { provider: 'sendgrid', status: 'verified' } });
    expect(resolveSender(ctx({ settings: s }))).toEqual({ email: 'noreply@brand.example', name: 'Brand', tier: 'custom', note: null });
  });

  it.each([
    ['not registered', null, 'domain_not_registered'],
    ['pending', { provider: 'sendgrid', status: 'pending' }, 'domain_pending'],
    ['failed', { provider: 'sendgrid', status: 'failed' }, 'domain_failed'],
    ['verified at another provider', { provider: 'resend', status: 'verified' }, 'domain_other_provider'],
  ] as const)('falls back to the platform tier when the custom domain is %s, and says why', (_n, fromDomain, note) => {
    const s = settings({ fromDomain: fromDomain as SenderSettings['fromDomain'] });
    expect(resolveSender(ctx({ settings: s }))).toEqual({ email: 'noreply@acme-corp.mail.platform.example', name: 'Brand', tier: 'platform', note });
  });

  it('refuses an unverified custom domain when there is no platform tier', () => {
    expect(() => resolveSender(ctx({ fromPattern: undefined }))).toThrow(expect.objectContaining({ code: 'sender_domain_unverified' }));
  });

  it('checks the domain against the account that sends (a fallback at another provider)', () => {
    const s = settings({ fromDomain: { provider: 'sendgrid', status: 'verified' } });
    expect(resolveSender(ctx({ settings: s, account: account('resend') }))).toMatchObject({ tier: 'platform', note: 'domain_other_provider' });
  });

  it('trusts the provider with SENDER_DOMAIN_POLICY=provider, and SMTP relays always', () => {
    expect(resolveSender(ctx({ policy: 'provider' }))).toMatchObject({ email: 'noreply@brand.example', tier: 'custom', note: null });
    expect(resolveSender(ctx({ account: account('smtp') }))).toMatchObject({ email: 'noreply@brand.example', tier: 'custom', note: null });
  });

  it('counts a from_email on the platform domain as the platform tier', () => {
    const s = settings({ fromEmail: 'alerts@acme-corp.mail.platform.example' });
    expect(resolveSender(ctx({ settings: s }))).toEqual({ email: 'alerts@acme-corp.mail.platform.example', name: 'Brand', tier: 'platform', note: null });
  });

  it('sends global-configuration events from the platform', () => {
    const s = settings({ source: 'global', fromEmail: 'platform@platform.example' });
    expect(resolveSender(ctx({ settings: s }))).toMatchObject({ email: 'noreply@acme-corp.mail.platform.example', tier: 'platform' });
    expect(resolveSender(ctx({ settings: s, fromPattern: undefined }))).toMatchObject({ email: 'platform@platform.example', tier: 'platform' });
  });
});

describe('SENDER_DOMAIN_POLICY', () => {
  const paid = (provider: ProviderAccount['provider']): ProviderAccount => ({ ...account(provider), platformPaid: true });

  it('platform-paid (the default): a tenant-owned account sends from its from_email as given', () => {
    expect(resolveSender(ctx({ policy: 'platform-paid', fromPattern: undefined }))).toEqual({ email: 'noreply@brand.example', name: 'Brand', tier: 'custom', note: null });
  });

  it('platform-paid: an account the platform pays for needs the domain verified, or uses the platform tier', () => {
    expect(() => resolveSender(ctx({ policy: 'platform-paid', account: paid('sendgrid'), fromPattern: undefined }))).toThrow(expect.objectContaining({ code: 'sender_domain_unverified' }));
    expect(resolveSender(ctx({ policy: 'platform-paid', account: paid('sendgrid') }))).toMatchObject({ email: 'noreply@acme-corp.mail.platform.example', tier: 'platform', note: 'domain_not_registered' });
    const verified = settings({ fromDomain: { provider: 'sendgrid', status: 'verified' } });
    expect(resolveSender(ctx({ policy: 'platform-paid', account: paid('sendgrid'), settings: verified, fromPattern: undefined }))).toMatchObject({ email: 'noreply@brand.example', tier: 'custom' });
  });

  it('mustVerifyDomain: verified checks every account but SMTP, provider none, platform-paid only the platform’s', () => {
    const cases = (['platform-paid', 'verified', 'provider'] as const).map((p) => [p, mustVerifyDomain(p, account('sendgrid')), mustVerifyDomain(p, paid('sendgrid')), mustVerifyDomain(p, paid('smtp'))]);
    expect(cases).toEqual([
      ['platform-paid', false, true, false],
      ['verified', true, true, false],
      ['provider', false, false, false],
    ]);
  });
});
