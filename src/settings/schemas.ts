import { z } from 'zod';
import { HOSTNAME, emailAddress } from './input';
import { oneLine } from '../core/text';
import { TEMPLATE_MAX_CHARS } from '../types';

/** Request schemas of the admin API besides the settings body (settings/input.ts). */
export const testEmailBody = z.strictObject({ to: emailAddress });
export const daysQuery = z.coerce.number().int().min(1).max(366).default(30);

/** `invalid_request` with the field issues in the answer's `issues`. */

/** An event type in a path: the CloudEvents `type` charset we accept for templates. */
export const EVENT_TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const part = (max: number) => z.string().max(max, `must be at most ${max} characters`).nullable().optional();
/** PUT …/email-templates/{event_type}: each part optional (left out or null: the built-in part). */
export const templateBody = z
  .strictObject({ subject: part(TEMPLATE_MAX_CHARS.subject), html: part(TEMPLATE_MAX_CHARS.html), text: part(TEMPLATE_MAX_CHARS.text) })
  .refine((t) => [t.subject, t.html, t.text].some((v) => typeof v === 'string'), 'must set at least one of subject, html, text (DELETE the template to go back to the built-in one)');

/** POST …/email-templates/{event_type}/preview: a template to try (else the saved one) and event data (else a sample). */
export const previewBody = z.strictObject({
  template: z
    .strictObject({ subject: part(TEMPLATE_MAX_CHARS.subject), html: part(TEMPLATE_MAX_CHARS.html), text: part(TEMPLATE_MAX_CHARS.text) })
    .optional(),
  data: z.record(z.string(), z.unknown()).optional().describe('event data as the broker would deliver it (task_id, prompt, output, …)'),
});

/** A sender domain: a lower-cased DNS name of at least two labels. */
export const domainName = z
  .string()
  .transform((v) => v.trim().toLowerCase().replace(/\.$/, ''))
  .pipe(z.string().regex(HOSTNAME, 'must be a domain name such as mail.example.com'));

const accountToken = z
  .string()
  .min(1, 'must not be empty')
  .max(200)
  .refine(oneLine, 'must be one line of printable characters')
  .optional()
  .describe('Postmark only: the account API token (domains are account-level there); used for this request, never stored or logged');

export const domainBody = z.strictObject({ domain: domainName, account_token: accountToken });
export const domainVerifyBody = z.strictObject({ account_token: accountToken });
