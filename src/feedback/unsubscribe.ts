import { hkdfSync } from 'node:crypto';
import type { KeyRing } from '../config/require';

/**
 * One-click unsubscribe tokens (RFC 8058, DESIGN §9). A token names the tenant, the recipient and
 * the event type, encrypted and authenticated (JWE, dir + A256GCM) under a key derived from
 * DB_ENCRYPTION_KEY: the link shows no address, and a token altered in any way, or made without
 * the key, does not decrypt. During a key rotation links made under the previous key still work.
 */

export interface UnsubscribeClaims {
  tenantId: string;
  recipient: string;
  eventType: string;
}

type Jose = typeof import('jose');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const jose = (): Jose => require('jose') as Jose;

const INFO = 'tenant-email-worker one-click unsubscribe v1';

function tokenKey(secret: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), INFO, 32));
}

export class UnsubscribeTokens {
  private readonly current: Uint8Array;
  private readonly previous: Uint8Array | undefined;
  private readonly encoder = new TextEncoder();

  constructor(keys: KeyRing) {
    this.current = tokenKey(keys.current.secret);
    this.previous = keys.previous ? tokenKey(keys.previous.secret) : undefined;
  }

  async create(c: UnsubscribeClaims): Promise<string> {
    const payload = this.encoder.encode(JSON.stringify({ v: 1, t: c.tenantId, r: c.recipient.toLowerCase(), e: c.eventType }));
    return new (jose().CompactEncrypt)(payload).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).encrypt(this.current);
  }

  /** The claims of a token this platform made; null for anything else. */
  async open(token: string): Promise<UnsubscribeClaims | null> {
    if (token.length > 2000 || !/^[A-Za-z0-9_.-]+$/.test(token)) return null;
    for (const key of [this.current, this.previous]) {
      if (!key) continue;
      try {
        const { plaintext } = await jose().compactDecrypt(token, key, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
        const p = JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, unknown>;
        if (p.v !== 1 || typeof p.t !== 'string' || typeof p.r !== 'string' || typeof p.e !== 'string') return null;
        return { tenantId: p.t, recipient: p.r, eventType: p.e };
      } catch {
        // not this key (or not a token at all)
      }
    }
    return null;
  }

  /** The List-Unsubscribe target for one email. */
  async link(publicBaseUrl: string, c: UnsubscribeClaims): Promise<string> {
    return `${publicBaseUrl}/api/v1/unsubscribe/${await this.create(c)}`;
  }
}
