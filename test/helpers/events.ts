import { randomUUID } from 'node:crypto';

export interface EventOptions {
  id?: string;
  source?: string;
  type?: string;
  tenant?: string | null;
  data?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export function taskData(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    task_id: `task-${randomUUID().slice(0, 8)}`,
    session_id: 'sess-1',
    prompt: 'Summarise the quarterly report',
    agent: 'build',
    model: 'model-x',
    notify_email: 'owner@customer.example',
    metadata: { output: '## Summary\nRevenue grew <b>12%</b>.' },
    ...overrides,
  };
}

/** Headers and body of a binary-mode event, as a Knative broker sends it. */
export function binaryEvent(o: EventOptions = {}): { headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': o.id ?? randomUUID(),
    'ce-source': o.source ?? '/codetether/a2a',
    'ce-type': o.type ?? 'codetether.task.created',
    ...(o.tenant ? { 'ce-tenant': o.tenant } : {}),
    ...o.headers,
  };
  return { headers, body: JSON.stringify(o.data ?? taskData()) };
}

export function structuredEvent(o: EventOptions = {}): { headers: Record<string, string>; body: string } {
  const event: Record<string, unknown> = {
    specversion: '1.0',
    id: o.id ?? randomUUID(),
    source: o.source ?? '/codetether/a2a',
    type: o.type ?? 'codetether.task.created',
    datacontenttype: 'application/json',
    data: o.data ?? taskData(),
    ...(o.tenant ? { tenant: o.tenant } : {}),
  };
  return { headers: { 'content-type': 'application/cloudevents+json', ...o.headers }, body: JSON.stringify(event) };
}

export async function post(url: string, ev: { headers: Record<string, string>; body: string | Buffer }): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: ev.headers, body: ev.body });
  return { status: res.status, headers: res.headers, text: await res.text() };
}
