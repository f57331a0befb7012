// The proxy's caches. The verdict cache: verification results keyed by repository and reference,
// kept in keyv (an in-process bounded map by default, Redis when TRUSTGATE_CACHE_URL is
// redis://), each for no longer than the configured TTL nor past the earliest expiry of the
// trust data it rests on. Entries of a GUN are dropped when its trust data changes; a
// verification that started before the change is not stored. Identical verifications in flight
// at once run once. The manifest cache: bytes of manifests already checked against their digest.
import Keyv from 'keyv';
import type { Logger } from '../log.js';
import type { Verdict } from './verifier.js';

/** A Map that forgets its oldest entries past `max` (insertion order; a hit re-inserts). */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (this.has(key)) this.delete(key);
    super.set(key, value);
    while (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

export interface VerdictCacheOptions {
  /** redis://… to share verdicts between processes; default in-process. */
  url?: string;
  /** Entries kept in process (in-memory store only). */
  max: number;
  maxTtlMs: number;
  now: () => number;
  log: Logger;
}

export class VerdictCache {
  private kv: Keyv<Verdict>;
  private inflight = new Map<string, Promise<Verdict>>();
  /** Keys written per GUN, so a trust change can drop them; and a per-GUN generation. */
  private keysByGun = new BoundedMap<string, Set<string>>(65536);
  private generation = new Map<string, number>();
  readonly kind: 'memory' | 'redis';
  hits = 0;
  misses = 0;

  private constructor(kv: Keyv<Verdict>, kind: 'memory' | 'redis', private opts: VerdictCacheOptions) {
    this.kv = kv;
    this.kind = kind;
    kv.on('error', (e: Error) => opts.log('warn', 'verdict cache error', { error: e.message }));
  }

  static async create(opts: VerdictCacheOptions): Promise<VerdictCache> {
    if (opts.url) {
      const { default: KeyvRedis } = await import('@keyv/redis');
      const kv = new Keyv<Verdict>({ store: new KeyvRedis(opts.url), namespace: 'trustgate-verdicts', useKeyPrefix: false });
      return new VerdictCache(kv, 'redis', opts);
    }
    // In process: values stay objects (no serialisation), the map bounds the count.
    const kv = new Keyv<Verdict>({ store: new BoundedMap<string, unknown>(opts.max), serialize: undefined, deserialize: undefined });
    return new VerdictCache(kv, 'memory', opts);
  }

  private fullKey(gun: string, key: string): string {
    return `${gun}|${key}`;
  }

  /**
   * The cached verdict for (gun, key), or the result of `compute`, which runs once however many
   * callers ask at the same time. Verdicts with reason `unavailable` are never stored.
   */
  async get(gun: string, key: string, compute: () => Promise<Verdict>): Promise<Verdict> {
    const k = this.fullKey(gun, key);
    const running = this.inflight.get(k);
    if (running) return running;
    const p = this.lookup(gun, k, compute).finally(() => this.inflight.delete(k));
    this.inflight.set(k, p);
    return p;
  }

  private async lookup(gun: string, k: string, compute: () => Promise<Verdict>): Promise<Verdict> {
    let hit: Verdict | undefined;
    try {
      hit = await this.kv.get(k);
    } catch {
      hit = undefined; // a cache outage only costs a verification
    }
    if (hit && (hit.expiresAtMs === undefined || hit.expiresAtMs > this.opts.now())) {
      this.hits++;
      return hit;
    }
    this.misses++;
    const gen = this.generation.get(gun) ?? 0;
    const v = await compute();
    if (v.reason === 'unavailable' || (this.generation.get(gun) ?? 0) !== gen) return v;
    const ttl = Math.min(this.opts.maxTtlMs, (v.expiresAtMs ?? Infinity) - this.opts.now());
    if (ttl > 0) {
      try {
        await this.kv.set(k, v, ttl);
        let keys = this.keysByGun.get(gun);
        if (!keys) this.keysByGun.set(gun, (keys = new Set()));
        keys.add(k);
      } catch {
        // not cached; still a valid answer
      }
    }
    return v;
  }

  /** Drops every verdict of a GUN (its trust data changed). */
  invalidate(gun: string): void {
    this.generation.set(gun, (this.generation.get(gun) ?? 0) + 1);
    const keys = this.keysByGun.get(gun);
    this.keysByGun.delete(gun);
    if (keys?.size) void this.kv.deleteMany([...keys]).catch(() => undefined);
  }

  async clear(): Promise<void> {
    this.keysByGun.clear();
    await this.kv.clear();
  }

  async close(): Promise<void> {
    await this.kv.disconnect().catch(() => undefined);
  }
}

interface CachedManifest {
  contentType: string | undefined;
  body: Buffer;
  until: number;
}

/**
 * Manifests whose bytes were checked against their digest, by repository, digest and the
 * client's Accept (the upstream may convert a manifest by Accept), within a byte budget (oldest
 * out first; no entry over 1/16 of it) and for `ttlMs`. A digest names its bytes, so an entry
 * stays right for as long as it is kept; the TTL only bounds how long a manifest deleted upstream
 * behind the proxy's back is still served. A budget of 0 keeps nothing.
 */
export class ManifestCache {
  private entries = new Map<string, CachedManifest>();
  private bytes = 0;

  constructor(
    readonly budget: number,
    readonly ttlMs: number,
    private now: () => number,
  ) {}

  private key(repo: string, digest: string, accept: string | undefined): string {
    return `${repo}@${digest}|${accept ?? ''}`;
  }

  get(repo: string, digest: string, accept: string | undefined): CachedManifest | undefined {
    if (this.budget <= 0) return undefined;
    const e = this.entries.get(this.key(repo, digest, accept));
    return e && e.until > this.now() ? e : undefined;
  }

  set(repo: string, digest: string, accept: string | undefined, contentType: string | undefined, body: Buffer): void {
    if (this.budget <= 0 || body.length > this.budget / 16) return;
    const key = this.key(repo, digest, accept);
    this.drop(key);
    this.entries.set(key, { contentType, body, until: this.now() + this.ttlMs });
    this.bytes += body.length;
    for (const k of this.entries.keys()) {
      if (this.bytes <= this.budget) break;
      this.drop(k);
    }
  }

  /** Forgets a repository's manifests (after a DELETE through the proxy). */
  forget(repo: string): void {
    for (const k of this.entries.keys()) if (k.startsWith(`${repo}@`)) this.drop(k);
  }

  private drop(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes -= e.body.length;
  }

  get size(): number {
    return this.entries.size;
  }
}
