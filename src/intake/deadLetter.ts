import { firstHeader, type HeaderMap } from '../core/httpHeader';
import { GLOBAL_TENANT, TENANT_ID_PATTERN, type DeadLetter } from '../types';

const ERROR_EXTENSIONS = ['knativeerrorcode', 'knativeerrordest', 'knativeerrordata'];
const cap = (s: string | undefined | null, n: number) => (s === undefined || s === null ? null : s.slice(0, n));

/** The answer the destination gave, decoded: base64 when it decodes to text, else as given. */
export function decodeErrorData(raw: string | undefined): string | null {
  if (!raw) return null;
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(raw) && raw.length % 4 === 0) {
    const text = Buffer.from(raw, 'base64').toString('utf8');
    // Decoded text that is printable is the answer; anything else was not base64 after all.
    if (!text.includes('\uFFFD') && /^[\x09\x0A\x0D\x20-\x7E\u00A0-\uFFFF]*$/.test(text)) return text;
  }
  return raw;
}

function errorCodeOf(data: string | null): string | null {
  if (!data) return null;
  try {
    const code = (JSON.parse(data) as { code?: unknown }).code;
    return typeof code === 'string' && /^[a-z_]{1,100}$/.test(code) ? code : null;
  } catch {
    return null;
  }
}

/**
 * A dead letter as a Knative broker sends it to its dead letter sink: the original CloudEvent
 * (binary or structured mode) plus the extensions knativeerrorcode (the destination's HTTP
 * status), knativeerrordest (where it went) and knativeerrordata (the first ~1 KB of the answer,
 * base64 in some brokers, plain in others). Parsing is lenient on purpose: an event the worker
 * refused as malformed is dead-lettered too, and must still be kept.
 */
export function parseDeadLetter(req: { headers: HeaderMap; body: Buffer }, maxBodyBytes: number): DeadLetter | null {
  const contentType = firstHeader(req.headers, 'content-type') ?? null;
  const attributes: Record<string, string> = {};
  let body = req.body;
  if (/^application\/cloudevents\+json/i.test(contentType ?? '')) {
    let envelope: Record<string, unknown>;
    try {
      envelope = JSON.parse(req.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
    if (typeof envelope !== 'object' || envelope === null) return null;
    for (const [k, v] of Object.entries(envelope)) {
      if (k === 'data' || k === 'data_base64') continue;
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[k] = String(v);
    }
  } else {
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith('ce-') && v !== undefined) attributes[k.slice(3)] = Array.isArray(v) ? v.join(',') : v;
    }
    body = req.body;
  }
  const errorDest = cap(attributes.knativeerrordest, 2000);
  const errorData = cap(decodeErrorData(attributes.knativeerrordata), 4000);
  const status = Number(attributes.knativeerrorcode);
  for (const k of ERROR_EXTENSIONS) delete attributes[k];
  const id = attributes.id;
  const source = attributes.source;
  if (!id || !source) return null;
  let tenant = attributes.tenant;
  if (!tenant) {
    try {
      const data = /^application\/cloudevents\+json/i.test(contentType ?? '')
        ? (JSON.parse(req.body.toString('utf8')) as { data?: { tenant_id?: unknown } }).data
        : (JSON.parse(req.body.toString('utf8')) as { tenant_id?: unknown });
      if (typeof data?.tenant_id === 'string') tenant = data.tenant_id;
    } catch {
      // not JSON: no tenant in it
    }
  }
  const truncated = body.length > maxBodyBytes;
  return {
    tenantId: tenant && TENANT_ID_PATTERN.test(tenant) ? tenant : GLOBAL_TENANT,
    eventSource: source.slice(0, 1000),
    eventId: id.slice(0, 1000),
    eventType: cap(attributes.type, 256),
    contentType: cap(contentType, 256),
    attributes,
    body: truncated ? body.subarray(0, maxBodyBytes) : body,
    bodyTruncated: truncated,
    httpStatus: Number.isInteger(status) && status >= 100 && status <= 599 ? status : null,
    errorDest,
    errorData,
    errorCode: errorCodeOf(errorData),
  };
}
