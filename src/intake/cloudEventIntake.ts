import { MAX_JSON_DEPTH, nestedDeeperThan } from '../core/jsonDepth';
import { parse as parseContentType } from 'content-type';
import type { CloudEvent } from 'cloudevents';
import { WorkerError } from '../errors';
import { TENANT_ID_PATTERN } from '../types';
import { oneLine } from '../core/text';
import { eventDataSchema, type IntakeEvent } from '../core/event';
import { isEmailAddress } from '../core/emailAddress';

export interface IntakeRequest {
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const JSON_TYPES = new Set(['application/json', 'text/json']);
const CE_JSON = 'application/cloudevents+json';
const CE_BATCH = 'application/cloudevents-batch+json';

/**
 * Turn one HTTP request into a checked event, or throw a WorkerError with a 4xx code. The SDK's
 * HTTP.toEvent is lenient (it invents ids and times, skips validation, parses only exact content
 * types), so the body is parsed here and the SDK's event is validated explicitly.
 */
export function parseCloudEvent(req: IntakeRequest, opts: { eventTypes: readonly string[] }): IntakeEvent {
  const headers = lowerCaseHeaders(req.headers);
  const mediaType = mediaTypeOf(headers['content-type']);

  if (mediaType === CE_BATCH) throw new WorkerError('batch_not_supported');

  let event: CloudEvent<unknown>;
  let mode: IntakeEvent['mode'];
  if (mediaType === CE_JSON) {
    mode = 'structured';
    const raw = parseJson(req.body);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new WorkerError('invalid_event', 'a structured-mode body must be one JSON object');
    }
    const obj = raw as Record<string, unknown>;
    if (typeof obj.id !== 'string' || obj.id === '') throw new WorkerError('missing_event_id');
    if ('data_base64' in obj) throw new WorkerError('unsupported_media_type', 'data_base64 is not accepted; send data as JSON');
    const dct = typeof obj.datacontenttype === 'string' ? mediaTypeOf(obj.datacontenttype) : 'application/json';
    if (!JSON_TYPES.has(dct)) throw new WorkerError('unsupported_media_type', 'datacontenttype must be application/json');
    event = toEvent({ 'content-type': CE_JSON }, obj);
  } else {
    mode = 'binary';
    if (!headers['ce-id'] || !headers['ce-specversion']) {
      if (!mediaType || JSON_TYPES.has(mediaType)) {
        throw new WorkerError('invalid_event', 'not a CloudEvent: binary mode needs ce-id, ce-specversion, ce-source and ce-type headers');
      }
      throw new WorkerError('unsupported_media_type', 'use application/json (binary mode) or application/cloudevents+json (structured mode)');
    }
    if (!JSON_TYPES.has(mediaType)) {
      throw new WorkerError('unsupported_media_type', 'binary-mode events must carry JSON data (Content-Type: application/json)');
    }
    const data = parseJson(req.body);
    const ceHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (k.startsWith('ce-')) ceHeaders[k] = v;
    event = toEvent({ ...ceHeaders, 'content-type': 'application/json' }, data);
  }

  try {
    event.validate();
  } catch (err) {
    throw new WorkerError('invalid_event', validationMessage(err));
  }
  if (event.specversion !== '1.0') throw new WorkerError('invalid_event', 'specversion must be 1.0');
  // id and source are the idempotency key and are stored: one printable line of sane length.
  for (const [name, v] of [['id', event.id], ['source', event.source]] as const) {
    if (typeof v !== 'string' || v.length > MAX_ATTRIBUTE_CHARS || !oneLine(v)) {
      throw new WorkerError(name === 'id' && typeof v !== 'string' ? 'missing_event_id' : 'invalid_event', `${name} must be one line of printable characters, at most ${MAX_ATTRIBUTE_CHARS} long`);
    }
  }
  if (!opts.eventTypes.includes(event.type)) {
    throw new WorkerError('unsupported_event_type', `event type is not one of: ${opts.eventTypes.join(', ')}`);
  }

  if (typeof event.data !== 'object' || event.data === null || Array.isArray(event.data)) {
    throw new WorkerError('invalid_data', 'data must be a JSON object');
  }
  const parsed = eventDataSchema.safeParse(event.data);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first && first.path.length > 0 ? `data.${first.path.join('.')}` : 'data';
    throw new WorkerError('invalid_data', `${where}: ${first?.message ?? 'invalid'}`);
  }
  const data = parsed.data;

  const tenantId = resolveTenant((event as unknown as Record<string, unknown>).tenant, data.tenant_id);
  const recipient = resolveRecipient(data.notify_email);
  const traceparent = (event as unknown as Record<string, unknown>).traceparent;
  return {
    id: event.id,
    source: event.source,
    type: event.type,
    tenantId,
    traceparent: typeof traceparent === 'string' ? traceparent : null,
    mode,
    data,
    recipient,
  };
}

// The SDK (and the JSON-schema validator it compiles) is loaded with the first event.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const sdk = () => require('cloudevents') as typeof import('cloudevents');

/** Longest id or source accepted (the spec sets no limit; the ledger key should have one). */
export const MAX_ATTRIBUTE_CHARS = 1024;

function toEvent(headers: Record<string, string>, body: unknown): CloudEvent<unknown> {
  // The SDK's JSON parser builds two ValidationErrors on every call, thrown or not (it passes
  // them to its isDefinedOrThrow checks). Capturing their stack traces was ~2% of the worker's
  // CPU per event; their stacks are never read (an error becomes a WorkerError message).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    const ev = sdk().HTTP.toEvent({ headers, body: body as never });
    if (Array.isArray(ev)) throw new WorkerError('batch_not_supported');
    return ev as CloudEvent<unknown>;
  } catch (err) {
    if (err instanceof WorkerError) throw err;
    throw new WorkerError('invalid_event', validationMessage(err));
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function resolveTenant(extension: unknown, fromData: string | null | undefined): string | null {
  const ext = typeof extension === 'string' && extension !== '' ? extension : null;
  const dat = typeof fromData === 'string' && fromData !== '' ? fromData : null;
  for (const [name, v] of [['ce-tenant', ext], ['data.tenant_id', dat]] as const) {
    if (v !== null && !TENANT_ID_PATTERN.test(v)) {
      throw new WorkerError('invalid_tenant_id', `${name} must be 1-128 characters of [A-Za-z0-9._:-]`);
    }
  }
  if (ext !== null && dat !== null && ext !== dat) {
    throw new WorkerError('tenant_mismatch', 'ce-tenant and data.tenant_id name different tenants');
  }
  return ext ?? dat;
}

function resolveRecipient(v: string | null | undefined): string | null {
  if (v === undefined || v === null || v.trim() === '') return null;
  const addr = v.trim();
  if (/[\r\n\0,;<>]/.test(addr) || !isEmailAddress(addr)) {
    throw new WorkerError('invalid_data', 'data.notify_email must be exactly one email address');
  }
  return addr;
}

function parseJson(body: Buffer): unknown {
  let value: unknown;
  try {
    value = JSON.parse(body.length === 0 ? 'null' : body.toString('utf8'));
  } catch {
    throw new WorkerError('invalid_json', 'the body is not valid JSON');
  }
  if (nestedDeeperThan(value)) throw new WorkerError('invalid_data', `the JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  return value;
}

function mediaTypeOf(value: string | undefined): string {
  if (!value) return '';
  try {
    const ct = parseContentType(value);
    const charset = ct.parameters.charset?.toLowerCase();
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      throw new WorkerError('unsupported_media_type', 'only UTF-8 bodies are accepted');
    }
    return ct.type;
  } catch (err) {
    if (err instanceof WorkerError) throw err;
    throw new WorkerError('unsupported_media_type', 'the Content-Type header is malformed');
  }
}

function lowerCaseHeaders(h: IntakeRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/** The SDK's validation errors name attributes and rules; values are not copied into answers. */
function validationMessage(err: unknown): string {
  if (err instanceof sdk().ValidationError) {
    const errors = (err as unknown as { errors?: unknown[] }).errors;
    const first = Array.isArray(errors) ? errors[0] : undefined;
    if (first && typeof first === 'object') {
      const f = first as { instancePath?: string; message?: string };
      const where = f.instancePath ? f.instancePath.replace(/^\//, '') : 'event';
      return `invalid CloudEvent: ${where} ${f.message ?? 'is invalid'}`.slice(0, 300);
    }
    return 'invalid CloudEvent attributes';
  }
  return 'invalid CloudEvent';
}
