// The proxy's caches. The verdict cache: verification results keyed by repository and reference,
// in process (a bounded map) by default or in Redis when TRUSTGATE_CACHE_URL is redis://, each for
// no longer than the configured TTL nor past the earliest expiry of the trust data it rests on.
// Entries of a GUN are dropped when its trust data changes, in Redis for every instance at once;
// a verification that started before the change is not stored. Identical verifications in flight
// at once run once. The manifest cache: bytes of manifests already checked against their digest.
import type { Logger } from '../observability/log.js';
import { BoundedMap } from '../core/bounded-map.js';
import type { Verdict } from '../trust/verifier.js';

export interface VerdictCacheOptions {
  /** redis://… to share verdicts between processes; default in-process. */
  url?: string;
  /** Entries kept in process (in-memory store only). */
  max: number;
  maxTtlMs: number;
  now: () => number;
  log: Logger;
  /**
   * Whether cached verdicts may be used (and new ones kept): false while this instance cannot be
   * sure it hears every trust change (its change feed is away). Default: always.
   */
  fresh?: () => boolean;
}

/**
 * Where verdicts are kept. `get` also returns a token for the GUN's generation it read at; `set`
 * stores only while that generation is current, so a verdict computed before an invalidation
 * (here or on another instance) is never stored after it.
 */
interface Store {
  get(gun: string, key: string): Promise<{ verdict?: Verdict; token: string }>;
  set(gun: string, key: string, v: Verdict, ttlMs: number, token: string): Promise<void>;
  invalidate(gun: string): Promise<void>;
  clear(): Promise<void>;
  close(): Promise<void>;
}

class MemoryStore implements Store {
  private entries: BoundedMap<string, { verdict: Verdict; until: number }>;
  private keysByGun = new BoundedMap<string, Set<string>>(65536);
  private generation = new Map<string, number>();
  /** Bumped by clear(), as the GUN's generation is by invalidate(). */
  private epoch = 0;

  constructor(
    max: number,
    private now: () => number,
  ) {
    this.entries = new BoundedMap(max);
  }

  async get(gun: string, key: string): Promise<{ verdict?: Verdict; token: string }> {
    const token = this.token(gun);
    const e = this.entries.get(`${gun}|${key}`);
    return e && e.until > this.now() ? { verdict: e.verdict, token } : { token };
  }

  async set(gun: string, key: string, verdict: Verdict, ttlMs: number, token: string): Promise<void> {
    if (this.token(gun) !== token) return;
    const k = `${gun}|${key}`;
    this.entries.set(k, { verdict, until: this.now() + ttlMs });
    let keys = this.keysByGun.get(gun);
    if (!keys) this.keysByGun.set(gun, (keys = new Set()));
    keys.add(k);
  }

  private token(gun: string): string {
    return `${this.epoch}:${this.generation.get(gun) ?? 0}`;
  }

  async invalidate(gun: string): Promise<void> {
    this.generation.set(gun, (this.generation.get(gun) ?? 0) + 1);
    for (const k of this.keysByGun.get(gun) ?? []) this.entries.delete(k);
    this.keysByGun.delete(gun);
  }

  async clear(): Promise<void> {
    this.entries.clear();
    this.keysByGun.clear();
    this.epoch++;
  }

  async close(): Promise<void> {}
}

const NS = 'trustgate-verdicts';
// A verdict's key names the cache epoch (bumped by clear) and its GUN's generation (bumped by
// invalidate), read in the same script: an invalidation on any instance hides every verdict of
// the GUN at once, and the old keys run out on their TTL.
const GET_SCRIPT = `local t = (redis.call('GET', KEYS[1]) or '0') .. ':' .. (redis.call('GET', KEYS[2]) or '0')
return { t, redis.call('GET', ARGV[1] .. t .. ':' .. ARGV[2]) }`;
const SET_SCRIPT = `local t = (redis.call('GET', KEYS[1]) or '0') .. ':' .. (redis.call('GET', KEYS[2]) or '0')
if t ~= ARGV[3] then return 0 end
redis.call('SET', ARGV[1] .. t .. ':' .. ARGV[2], ARGV[4], 'PX', ARGV[5])
return 1`;

type RedisClient = ReturnType<typeof import('@keyv/redis').createClient>;

class RedisStore implements Store {
  private sha = new Map<string, string>();
  private lastError = 0;

  constructor(
    private client: RedisClient,
    private log: Logger,
  ) {
    client.on('error', (e: Error) => {
      // Reconnects repeat the error: one line per 10 s is enough.
      if (Date.now() - this.lastError < 10_000) return;
      this.lastError = Date.now();
      log('warn', 'verdict cache error', { error: e.message });
    });
  }

  static async connect(url: string, log: Logger): Promise<RedisStore> {
    const { createClient } = await import('@keyv/redis');
    // Without the offline queue, commands fail at once while Redis is away (a miss, not a wait).
    const client = createClient({
      url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 2000, reconnectStrategy: (n: number) => Math.min(100 * (n + 1), 2000) },
    });
    const store = new RedisStore(client, log);
    await Promise.race([client.connect().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    return store;
  }

  private keys(gun: string): string[] {
    return [`${NS}:epoch`, `${NS}:gen:${gun}`];
  }

  /** EVALSHA, loading the script on NOSCRIPT. */
  private async script(text: string, keys: string[], args: string[]): Promise<unknown> {
    let sha = this.sha.get(text);
    if (sha) {
      try {
        return await this.client.sendCommand(['EVALSHA', sha, String(keys.length), ...keys, ...args]);
      } catch (e) {
        if (!/NOSCRIPT/.test((e as Error).message)) throw e;
      }
    }
    sha = (await this.client.sendCommand(['SCRIPT', 'LOAD', text])) as string;
    this.sha.set(text, sha);
    return this.client.sendCommand(['EVALSHA', sha, String(keys.length), ...keys, ...args]);
  }

  async get(gun: string, key: string): Promise<{ verdict?: Verdict; token: string }> {
    const [token, value] = (await this.script(GET_SCRIPT, this.keys(gun), [`${NS}:v:`, `${gun}|${key}`])) as [
      string,
      string | null | undefined,
    ];
    return value ? { verdict: JSON.parse(value) as Verdict, token } : { token };
  }

  async set(gun: string, key: string, v: Verdict, ttlMs: number, token: string): Promise<void> {
    await this.script(SET_SCRIPT, this.keys(gun), [
      `${NS}:v:`,
      `${gun}|${key}`,
      token,
      JSON.stringify(v),
      String(Math.max(1, Math.floor(ttlMs))),
    ]);
  }

  async invalidate(gun: string): Promise<void> {
    await this.client.sendCommand(['INCR', `${NS}:gen:${gun}`]);
  }

  async clear(): Promise<void> {
    await this.client.sendCommand(['INCR', `${NS}:epoch`]);
  }

  async close(): Promise<void> {
    // quit() waits for a connection that never comes while reconnecting; disconnect() does not.
    if (this.client.isReady) await this.client.quit().catch(() => undefined);
    if (this.client.isOpen) await this.client.disconnect().catch(() => undefined);
  }
}

export class VerdictCache {
  private inflight = new Map<string, Promise<Verdict>>();
  /** Invalidations made here, per GUN: a computation that began before one is neither joined nor stored. */
  private generation = new Map<string, number>();
  /** Bumped by clear(): a computation that began before it is neither joined nor stored. */
  private epoch = 0;
  /** GUNs whose invalidation has not reached the store yet (it failed): not cached here until it does. */
  private unsynced = new Map<string, Promise<boolean>>();
  readonly kind: 'memory' | 'redis';
  hits = 0;
  misses = 0;

  private constructor(
    private store: Store,
    kind: 'memory' | 'redis',
    private opts: VerdictCacheOptions,
  ) {
    this.kind = kind;
  }

  static async create(opts: VerdictCacheOptions): Promise<VerdictCache> {
    if (opts.url) return new VerdictCache(await RedisStore.connect(opts.url, opts.log), 'redis', opts);
    return new VerdictCache(new MemoryStore(opts.max, opts.now), 'memory', opts);
  }

  /**
   * The cached verdict for (gun, key), or the result of `compute`, which runs once however many
   * callers ask at the same time. Verdicts with reason `unavailable` are never stored.
   */
  async get(gun: string, key: string, compute: () => Promise<Verdict>): Promise<Verdict> {
    const gen = this.generation.get(gun) ?? 0;
    const k = `${this.epoch}|${gen}|${gun}|${key}`;
    const running = this.inflight.get(k);
    if (running) return running;
    const p = this.lookup(gun, key, gen, compute).finally(() => this.inflight.delete(k));
    this.inflight.set(k, p);
    return p;
  }

  private async lookup(gun: string, key: string, gen: number, compute: () => Promise<Verdict>): Promise<Verdict> {
    const epoch = this.epoch;
    if ((this.unsynced.has(gun) && !(await this.synced(gun))) || (this.opts.fresh && !this.opts.fresh())) {
      this.misses++;
      return compute();
    }
    let read: { verdict?: Verdict; token: string } | undefined;
    try {
      read = await this.store.get(gun, key);
    } catch {
      read = undefined; // a cache outage only costs a verification
    }
    const hit = read?.verdict;
    if (hit && (hit.expiresAtMs === undefined || hit.expiresAtMs > this.opts.now())) {
      this.hits++;
      return hit;
    }
    this.misses++;
    const v = await compute();
    if (!read || v.reason === 'unavailable' || (this.generation.get(gun) ?? 0) !== gen || this.epoch !== epoch) return v;
    const ttl = Math.min(this.opts.maxTtlMs, (v.expiresAtMs ?? Infinity) - this.opts.now());
    if (ttl > 0) await this.store.set(gun, key, v, ttl, read.token).catch(() => undefined); // not cached; still a valid answer
    return v;
  }

  /**
   * Drops every verdict of a GUN (its trust data changed), whoever wrote it. Resolves once the
   * store has it; while it keeps failing, this process does not use the store for the GUN and
   * tries again at its next lookup.
   */
  invalidate(gun: string): Promise<void> {
    this.generation.set(gun, (this.generation.get(gun) ?? 0) + 1);
    return this.send(gun, true).then(() => undefined);
  }

  private send(gun: string, first = false): Promise<boolean> {
    const p = this.store.invalidate(gun).then(
      () => true,
      (e: Error) => {
        if (first)
          this.opts.log('warn', "verdict cache: dropping a repository's verdicts failed; its verdicts are not cached until that works", {
            gun,
            error: e.message,
          });
        return false;
      },
    );
    this.unsynced.set(gun, p);
    void p.then((ok) => {
      if (ok && this.unsynced.get(gun) === p) this.unsynced.delete(gun);
    });
    return p;
  }

  /** Whether the GUN's last invalidation reached the store, sending it again if it had failed. */
  private async synced(gun: string): Promise<boolean> {
    const p = this.unsynced.get(gun);
    if (!p) return true;
    if (await p) return true;
    const again = this.unsynced.get(gun);
    return again && again !== p ? again : this.send(gun);
  }

  /** Drops every verdict (of every instance, in Redis). */
  async clear(): Promise<void> {
    this.epoch++;
    await this.store.clear();
  }

  async close(): Promise<void> {
    await this.store.close().catch(() => undefined);
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
