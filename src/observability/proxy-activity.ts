// What this process's registry proxy refused, kept for the management API (GET /proxy/denials):
// the newest refusals in a bounded ring, counts by reason since start, and the verdict cache's
// hits and misses. The proxy writes, the management API reads; the root wires both to one
// instance, so neither edge imports the other. Per process: each instance (and each cluster
// worker) keeps its own.

export interface ProxyDenial {
  time: string;
  repository: string;
  gun: string;
  reference: string;
  reason: string;
  message: string;
  outcome: 'denied' | 'unavailable';
  actor: string;
}

export interface VerdictCacheStats {
  kind: 'memory' | 'redis';
  hits: number;
  misses: number;
}

/** Refusals the ring keeps by default. */
export const DENIALS_KEPT = 1000;
/** Messages are cut to this length (they name a tag and a role, never secrets). */
const MAX_MESSAGE = 500;

export class ProxyActivity {
  private ring: ProxyDenial[] = [];
  /** Where the next refusal goes once the ring is full. */
  private next = 0;
  private counts = new Map<string, number>();
  private total = 0;
  private cache: (() => VerdictCacheStats) | undefined;
  readonly since: string;

  constructor(
    readonly capacity = DENIALS_KEPT,
    private now: () => number = Date.now,
  ) {
    this.since = new Date(now()).toISOString();
  }

  /** Set by the proxy when it starts: the page then reports it as enabled. */
  attach(cache: () => VerdictCacheStats): void {
    this.cache = cache;
  }

  detach(): void {
    this.cache = undefined;
  }

  get enabled(): boolean {
    return this.cache !== undefined;
  }

  record(d: Omit<ProxyDenial, 'time'>): void {
    const entry = { time: new Date(this.now()).toISOString(), ...d, message: d.message.slice(0, MAX_MESSAGE) };
    if (this.ring.length < this.capacity) this.ring.push(entry);
    else this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    this.total++;
    this.counts.set(d.reason, (this.counts.get(d.reason) ?? 0) + 1);
  }

  /** The newest refusals first (those with `reason` only), at most `limit`; counts since start. */
  report(o: { limit: number; reason?: string | undefined }) {
    const newestFirst: ProxyDenial[] = [];
    for (let i = 1; i <= this.ring.length && newestFirst.length < o.limit; i++) {
      const d = this.ring[(this.next - i + this.ring.length * 2) % this.ring.length]!;
      if (o.reason === undefined || d.reason === o.reason) newestFirst.push(d);
    }
    const stats = this.cache?.();
    const lookups = stats ? stats.hits + stats.misses : 0;
    return {
      enabled: this.enabled,
      since: this.since,
      capacity: this.capacity,
      total: this.total,
      counts: Object.fromEntries([...this.counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      denials: newestFirst,
      verdictCache: stats ? { ...stats, hitRate: lookups ? stats.hits / lookups : null } : null,
    };
  }
}
