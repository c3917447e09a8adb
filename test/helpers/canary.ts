/**
 * The suite-wide secret canary. Test credentials and DB_ENCRYPTION_KEY carry the
 * word CANARY (helpers/worker.ts CANARY_DB_KEY, the provider keys of every suite); everything a
 * test file sees come out of the system is noted here: every log line of in-process workers
 * (captureLogs), every HTTP answer, its headers included (a wrapped fetch: metrics, readiness,
 * the admin API, the worker's answers), every span ended in the process (a global tracer
 * provider), the stdout/stderr of spawned workers and of the CLI. test/canary.test.ts shows
 * each channel is really watched.
 * canarySetup.ts fails the file after its last test if the word appears anywhere.
 */
export const CANARY = /CANARY/i;

const hits: Array<{ source: string; excerpt: string }> = [];
let scanned = 0;

export function noteOutput(source: string, text: string): void {
  scanned += text.length;
  const m = CANARY.exec(text);
  if (m) hits.push({ source, excerpt: text.slice(Math.max(0, m.index - 120), m.index + 80) });
}

export function canaryReport(): { scannedChars: number; hits: ReadonlyArray<{ source: string; excerpt: string }> } {
  return { scannedChars: scanned, hits };
}

/** For the canary's own test: take the hits recorded so far and clear them. */
export function takeHits(): Array<{ source: string; excerpt: string }> {
  return hits.splice(0, hits.length);
}
