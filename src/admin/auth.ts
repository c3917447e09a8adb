import type { AdminConfig } from '../config';
import { authenticateApiKey } from '../db/apiKeys';
import type { Sql } from '../db/connect';
import { WorkerError } from '../errors';
import { TENANT_ID_PATTERN } from '../types';

export type AdminRole = 'platform_admin' | 'tenant_admin';

export interface Principal {
  role: AdminRole;
  /** The tenant a tenant_admin may act on; null for platform_admin tokens without one. */
  tenantId: string | null;
  subject: string | null;
}

type Jose = typeof import('jose');

/**
 * Bearer tokens: admin API keys (`tew_...`, see db/apiKeys.ts), or JWTs verified with jose: HS256 with ADMIN_JWT_SECRET, or any key of ADMIN_JWT_JWKS_URL;
 * issuer and audience checked when configured; `exp` is required. Claims: `role`
 * (platform_admin | tenant_admin) and `tenant_id`.
 */
export function createTokenVerifier(cfg: AdminConfig, sql: Sql): (authorization: string | undefined) => Promise<Principal> {
  const verifyJwt = cfg.jwtSecret || cfg.jwksUrl ? createJwtVerifier(cfg) : undefined;
  return async (authorization) => {
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(authorization ?? '');
    if (!m) throw new WorkerError('unauthorized', 'send Authorization: Bearer <JWT or API key>');
    const token = m[1] as string;
    if (token.startsWith('tew_')) {
      const p = await authenticateApiKey(sql, token);
      if (!p) throw new WorkerError('unauthorized', 'the API key is not valid, has expired or was revoked');
      return { role: p.role, tenantId: p.tenantId, subject: `apikey:${p.id}` };
    }
    if (!verifyJwt) throw new WorkerError('unauthorized', 'this admin API accepts API keys only (no ADMIN_JWT_SECRET or ADMIN_JWT_JWKS_URL)');
    return verifyJwt(token);
  };
}

function createJwtVerifier(cfg: AdminConfig): (token: string) => Promise<Principal> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const jose = require('jose') as Jose;
  const key = cfg.jwtSecret
    ? new TextEncoder().encode(cfg.jwtSecret)
    : jose.createRemoteJWKSet(new URL(cfg.jwksUrl as string), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  const options = {
    ...(cfg.jwtSecret ? { algorithms: ['HS256'] } : { algorithms: ['RS256', 'ES256', 'PS256', 'EdDSA'] }),
    ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
    ...(cfg.audience ? { audience: cfg.audience } : {}),
    requiredClaims: ['exp'],
    clockTolerance: 30,
  };

  return async (token) => {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jose.jwtVerify(token, key as Parameters<Jose['jwtVerify']>[1], options));
    } catch (err) {
      // jose's error codes say which check failed; the token itself is never echoed.
      const code = (err as { code?: string }).code ?? 'ERR_JWT_INVALID';
      const why: Record<string, string> = {
        ERR_JWT_EXPIRED: 'the token has expired',
        ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'the token signature is not valid',
        ERR_JWT_CLAIM_VALIDATION_FAILED: 'a token claim (issuer, audience, exp) is not valid',
        ERR_JOSE_ALG_NOT_ALLOWED: 'the token algorithm is not allowed',
      };
      throw new WorkerError('unauthorized', why[code] ?? 'the token is not valid');
    }
    const role = payload.role;
    if (role !== 'platform_admin' && role !== 'tenant_admin') {
      throw new WorkerError('forbidden', 'the token has no admin role (role must be platform_admin or tenant_admin)');
    }
    const tenantId = typeof payload.tenant_id === 'string' && TENANT_ID_PATTERN.test(payload.tenant_id) ? payload.tenant_id : null;
    if (role === 'tenant_admin' && !tenantId) throw new WorkerError('forbidden', 'a tenant_admin token must carry a valid tenant_id claim');
    return { role, tenantId, subject: typeof payload.sub === 'string' ? payload.sub : null };
  };
}

/** platform_admin may act on any tenant; tenant_admin only on its own. */
export function authorize(principal: Principal, tenantId: string): void {
  if (principal.role === 'platform_admin') return;
  if (principal.tenantId !== tenantId) throw new WorkerError('forbidden', 'this token may only manage its own tenant');
}
