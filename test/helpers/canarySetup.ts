import { canaryReport, noteOutput } from './canary';

// Every HTTP answer any test reads, headers and body, goes past the canary check.
const realFetch = globalThis.fetch;
globalThis.fetch = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
  const res = await realFetch(input, init);
  noteOutput(`http ${res.status} headers`, [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n'));
  res
    .clone()
    .text()
    .then((t) => noteOutput(`http ${res.status} body`, t), () => {});
  return res;
};

afterAll(async () => {
  // Let the last cloned bodies finish reading.
  await new Promise((r) => setTimeout(r, 20));
  const { hits } = canaryReport();
  if (hits.length > 0) {
    throw new Error(`a secret canary appeared in the output (${hits.length}×):\n${hits.slice(0, 5).map((h) => `  [${h.source}] …${h.excerpt}…`).join('\n')}`);
  }
});
