import { z } from 'zod';
import { emailAddress } from '../settingsInput';

/** Request schemas of the admin API besides the settings body (settingsInput.ts). */
export const testEmailBody = z.strictObject({ to: emailAddress });
export const daysQuery = z.coerce.number().int().min(1).max(366).default(30);
