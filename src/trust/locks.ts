// One change per GUN at a time in this process: a trust change reads the current versions, signs
// the next ones and publishes them, and two of those must not interleave. The management API and
// the signing service share one instance (app.ts), so their changes to a GUN queue behind each
// other. Not re-entrant: code holding a GUN's lock must not ask for it again.
export class GunLocks {
  private tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every earlier run for `gun` has settled (whatever their outcome). */
  async run<T>(gun: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(gun) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(gun, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(gun) === tail) this.tails.delete(gun);
    }
  }
}
