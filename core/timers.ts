/**
 * Soft-state expiry: one timer per key (publication entity-tag, subscription id), re-armed on
 * refresh. Delays beyond setTimeout's 24.8-day range are reached in steps.
 */
const MAX_DELAY = 0x7fffffff;

export class ExpiryTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  set(key: string, expiresAt: number, fire: () => void): void {
    this.clear(key);
    const arm = (): void => {
      const delay = expiresAt - Date.now();
      const t = setTimeout(
        () => {
          if (expiresAt - Date.now() > 0) return arm();
          this.timers.delete(key);
          fire();
        },
        Math.max(0, Math.min(delay, MAX_DELAY)),
      );
      t.unref();
      this.timers.set(key, t);
    };
    arm();
  }

  clear(key: string): void {
    const t = this.timers.get(key);
    if (t) {
      clearTimeout(t);
      this.timers.delete(key);
    }
  }

  clearAll(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  get size(): number {
    return this.timers.size;
  }
}
