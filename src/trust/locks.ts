// One change per GUN at a time in this process: a trust change reads the current versions, signs
// the next ones and publishes them, and two of those must not interleave. The management API, the
// signing API and sign-on-push share one instance (through TrustChanges), so their changes to a
// GUN queue behind each other. Re-entrant within one async call chain: code holding a GUN's lock
// may run a change of that GUN (it runs at once instead of waiting for itself). With `across`
// (the store's cross-process lock, when several instances share it) the holder of a GUN's lock
// here also holds it in every other instance.
// While an AsyncLocalStorage is enabled, node runs a hook for every promise and async resource in
// the process (every request pays), so the storage is enabled only while some change holds a lock.
import { AsyncLocalStorage } from 'node:async_hooks';

export class GunLocks {
  private tails = new Map<string, Promise<unknown>>();
  private held = new AsyncLocalStorage<ReadonlySet<string>>();
  /** Runs holding a lock (not yet settled), over every GUN. */
  private active = 0;

  constructor(private across?: <T>(key: string, fn: () => Promise<T>) => Promise<T>) {}

  /** Runs `fn` once every earlier run for `gun` has settled (whatever their outcome). */
  async run<T>(gun: string, fn: () => Promise<T>): Promise<T> {
    const mine = this.held.getStore();
    if (mine?.has(gun)) return fn();
    const across = this.across;
    const locked = across ? () => across(gun, fn) : fn;
    const inner = async () => {
      this.active++;
      try {
        return await this.held.run(new Set([...(mine ?? []), gun]), locked);
      } finally {
        if (--this.active === 0) this.held.disable();
      }
    };
    const prev = this.tails.get(gun) ?? Promise.resolve();
    const run = prev.then(inner, inner);
    const tail = run.catch(() => undefined);
    this.tails.set(gun, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(gun) === tail) this.tails.delete(gun);
    }
  }
}
