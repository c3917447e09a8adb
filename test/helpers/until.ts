/**
 * Wait for a condition that the code under test makes true, polling every 25 ms. The cap only
 * turns a hang into a failure; a busy machine just makes the wait longer.
 */
export async function until<T>(what: () => T | Promise<T | undefined | false>, capMs = 120_000): Promise<T> {
  const end = Date.now() + capMs;
  for (;;) {
    const v = await what();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 25));
  }
}
