import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildOpenApi } from '../../src/admin/openapi';
import { createTestDatabase } from '../helpers/db';
import { captureLogs } from '../helpers/logCapture';
import { startTestWorker } from '../helpers/worker';

const committed = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'docs', 'openapi.json'), 'utf8'));
const version = (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('OpenAPI document of the admin API', () => {
  it('is up to date in docs/openapi.json (npm run build && npm run docs:openapi)', () => {
    expect(buildOpenApi(version)).toEqual(committed);
  });

  it('describes every endpoint, the settings body from the validating schema, and every error code', () => {
    expect(committed.openapi).toBe('3.1.0');
    expect(Object.keys(committed.paths).sort()).toEqual([
      '/tenants/{tenant_id}/dead-letters', '/tenants/{tenant_id}/dead-letters/replay',
      '/tenants/{tenant_id}/email-domains', '/tenants/{tenant_id}/email-domains/{domain}',
      '/tenants/{tenant_id}/email-domains/{domain}/verify',
      '/tenants/{tenant_id}/email-settings', '/tenants/{tenant_id}/email-settings/test',
      '/tenants/{tenant_id}/email-settings/verify', '/tenants/{tenant_id}/email-stats',
      '/tenants/{tenant_id}/email-templates', '/tenants/{tenant_id}/email-templates/{event_type}',
      '/tenants/{tenant_id}/email-templates/{event_type}/preview',
      '/tenants/{tenant_id}/email-webhooks/{provider}', '/tenants/{tenant_id}/email-webhooks/{provider}/register', '/tenants/{tenant_id}/reputation', '/tenants/{tenant_id}/resume',
      '/tenants/{tenant_id}/suppressions', '/tenants/{tenant_id}/suppressions/{address}',
      '/unsubscribe/{token}', '/webhooks/{provider}/{tenant_id}',
    ]);
    expect(committed.components.schemas.Error.properties.issues.items.properties.line).toEqual({ type: 'integer', minimum: expect.any(Number), maximum: expect.any(Number) });
    const body = committed.components.schemas.SettingsInput;
    // from_email may be left out: the platform tier (EMAIL_TENANT_FROM_PATTERN) then sends.
    expect(body.required).toEqual(['provider']);
    expect(body.additionalProperties).toBe(false);
    expect(body.properties.provider.enum).toEqual(['sendgrid', 'ses', 'postmark', 'smtp', 'resend']);
    expect(committed.components.schemas.ProviderSettings_ses.required).toEqual(['region']);
    expect(committed.components.schemas.Error.properties.code.enum).toContain('quota_exceeded');
  });

  it('is served without a token at /api/v1/admin/openapi.json', async () => {
    const db = await createTestDatabase();
    const w = await startTestWorker(db, captureLogs().logger);
    try {
      const res = await fetch(new URL('/api/v1/admin/openapi.json', w.url));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual(committed);
    } finally {
      await w.shutdown();
      await db.drop();
    }
  });
});
