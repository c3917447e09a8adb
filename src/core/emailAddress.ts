import { z } from 'zod';

/**
 * The one email address check (zod's): for settings bodies (settings/input.ts), recipients
 * (intake), Reply-To and platform addresses (email/, core/platformAddress.ts) and
 * SENDGRID_FROM_EMAIL (config). Callers add what their field needs besides (length, one line).
 */
export const EMAIL_ADDRESS = z.email({ message: 'must be one email address' });

export function isEmailAddress(value: string): boolean {
  return EMAIL_ADDRESS.safeParse(value).success;
}
