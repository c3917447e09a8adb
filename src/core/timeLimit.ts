/**
 * `work`, or the error `expired()` makes once `ms` have passed, whichever comes first. The work
 * is not stopped (the caller's `expired` may cancel it); a failure of it after the deadline is
 * not an unhandled rejection. `ms` undefined: no limit. The database's call deadlines
 * (db/deadline.ts) and the provider deadline (providers/clients.ts) are both this race.
 */
export async function raceDeadline<T>(work: Promise<T>, ms: number | undefined, expired: () => Error): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expired()), ms);
  });
  work.catch(() => {});
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
