import { z } from 'zod';
import { oneLine } from './text';

/**
 * The event the worker handles, as every layer after intake sees it.
 *
 * `data` of codetether.task.created (DESIGN §2). Unknown fields are kept and ignored. Strings that
 * end up in headers are checked again when the email is composed.
 */
const text = (max: number) => z.string().max(max).nullable().optional();

export const eventDataSchema = z.looseObject({
  task_id: z
    .string({ message: 'task_id is required and must be a string' })
    .min(1, 'task_id must not be empty')
    .max(256)
    .refine(oneLine, 'task_id must be one line of printable characters'),
  session_id: text(256),
  prompt: text(1_000_000),
  agent: text(256),
  model: text(256),
  tenant_id: text(256),
  notify_email: z.string().max(254).nullable().optional(),
  metadata: z.record(z.string(), z.unknown()).nullable().optional(),
  output: text(10_000_000),
  status: text(64),
});

export type EventData = z.infer<typeof eventDataSchema>;

/** The task's output: `data.output`, else `data.metadata.output` (stringified when not text). */
export function taskOutput(data: EventData): string | null {
  if (typeof data.output === 'string') return data.output;
  const m = data.metadata?.output;
  if (m === undefined || m === null) return null;
  return typeof m === 'string' ? m : JSON.stringify(m, null, 2);
}

/** An event as intake (intake/cloudEventIntake.ts) hands it on: checked, with its recipient validated. */
export interface IntakeEvent {
  id: string;
  source: string;
  type: string;
  /** null: no tenant anywhere in the event; the global configuration applies. */
  tenantId: string | null;
  traceparent: string | null;
  mode: 'binary' | 'structured';
  data: EventData;
  /** The validated recipient, or null when the event names none. */
  recipient: string | null;
}
