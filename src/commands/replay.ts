import { randomUUID } from 'node:crypto';

/**
 * Send one event to a worker (or a broker ingress) in binary mode, the way a Knative broker
 * delivers it: the replay tool for debugging. Input is a structured-mode JSON object
 * ({specversion, id, source, type, tenant?, data, ...extensions}), or the fields to build one.
 */
export interface ReplayEvent {
  id?: string;
  source?: string;
  type?: string;
  tenant?: string;
  data: Record<string, unknown>;
  [extension: string]: unknown;
}

export function toBinaryRequest(ev: ReplayEvent): { headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': ev.id ?? randomUUID(),
    'ce-source': ev.source ?? '/tenant-email/cli',
    'ce-type': ev.type ?? 'codetether.task.created',
  };
  for (const [k, v] of Object.entries(ev)) {
    if (['id', 'source', 'type', 'data', 'specversion', 'datacontenttype', 'data_base64'].includes(k)) continue;
    if (/^[a-z0-9]{1,20}$/.test(k) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) headers[`ce-${k}`] = String(v);
  }
  return { headers, body: JSON.stringify(ev.data ?? {}) };
}

export async function sendEvent(url: string, ev: ReplayEvent, timeoutMs = 30_000): Promise<{ status: number; body: string; id: string }> {
  const req = toBinaryRequest(ev);
  const res = await fetch(url, { method: 'POST', headers: req.headers, body: req.body, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text(), id: req.headers['ce-id'] as string };
}
