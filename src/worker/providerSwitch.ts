import type { ProviderName } from '../types';

/**
 * Which providers ops took out of service (the outage switch): PROVIDERS_DISABLED, fixed for the
 * process, and the database's email_disabled_providers, refreshed every few seconds off the event
 * path, so a switch needs no redeploy and costs the hot path nothing. A failed refresh keeps what
 * was known.
 */
export class ProviderSwitch {
  private fromDb: ReadonlySet<ProviderName> = new Set();
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(
    private readonly fromEnv: ReadonlySet<ProviderName>,
    private readonly load?: () => Promise<ProviderName[]>,
    private readonly onChange?: (disabled: ProviderName[], failed: boolean) => void,
  ) {}

  disabled(provider: ProviderName): boolean {
    return this.fromEnv.has(provider) || this.fromDb.has(provider);
  }

  /** Every provider out of service now. */
  list(): ProviderName[] {
    return [...new Set([...this.fromEnv, ...this.fromDb])].sort();
  }

  async refresh(): Promise<void> {
    if (!this.load) return;
    let next: ReadonlySet<ProviderName>;
    try {
      next = new Set(await this.load());
    } catch {
      // Said once per outage of the database, not on every refresh.
      if (!this.failing) this.onChange?.(this.list(), true);
      this.failing = true;
      return;
    }
    const changed = next.size !== this.fromDb.size || [...next].some((p) => !this.fromDb.has(p));
    this.fromDb = next;
    this.failing = false;
    if (changed) this.onChange?.(this.list(), false);
  }

  start(intervalMs: number): void {
    if (!this.load) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
