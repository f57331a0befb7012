// Bounds the password checks of the token endpoint, so wrong passwords cannot slow it for
// everyone: a few KDF runs at a time (the rest wait in a bounded queue, beyond it 503), at most
// two checks in flight per client (more: 429), and a client whose checks keep failing waits
// longer and longer (429 with Retry-After, no KDF run) until one succeeds.

export interface LoginGateOptions {
  /** KDF runs at once (each takes a libuv thread and scrypt's memory). */
  concurrency: number;
  /** Checks waiting for a slot; beyond this the endpoint answers 503. */
  queue: number;
  /** Checks in flight (running or waiting) per client. */
  perClient: number;
  /** Failures a client may have before it must wait. */
  freeFailures: number;
  /** The longest wait imposed, in ms. */
  maxBackoffMs: number;
  /** Clients remembered (oldest forgotten first). */
  maxClients: number;
}

export const DEFAULT_LOGIN_GATE: LoginGateOptions = {
  concurrency: 2,
  queue: 32,
  perClient: 2,
  freeFailures: 5,
  maxBackoffMs: 60_000,
  maxClients: 10_000,
};

export type Refusal = { status: 429 | 503; retryAfterS: number; reason: string };

interface Client {
  inFlight: number;
  failures: number;
  until: number;
}

export class LoginGate {
  private running = 0;
  private waiting: Array<() => void> = [];
  private clients = new Map<string, Client>();

  constructor(
    private o: LoginGateOptions = DEFAULT_LOGIN_GATE,
    private now: () => number = Date.now,
  ) {}

  /** Runs `check` for `client` when allowed; a refusal instead when not. */
  async run(client: string, check: () => Promise<boolean>): Promise<boolean | Refusal> {
    const c = this.client(client);
    const t = this.now();
    if (c.until > t)
      return { status: 429, retryAfterS: Math.ceil((c.until - t) / 1000), reason: 'too many failed logins: wait before trying again' };
    if (c.inFlight >= this.o.perClient) return { status: 429, retryAfterS: 1, reason: 'too many logins in flight from this client' };
    if (this.running >= this.o.concurrency && this.waiting.length >= this.o.queue)
      return { status: 503, retryAfterS: 1, reason: 'the token service is busy' };
    c.inFlight++;
    try {
      if (this.running >= this.o.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
      else this.running++;
      let ok = false;
      try {
        ok = await check();
      } finally {
        // The slot passes straight to the next waiter, so `running` never overshoots.
        const next = this.waiting.shift();
        if (next) next();
        else this.running--;
      }
      if (ok) c.failures = 0;
      else if (++c.failures > this.o.freeFailures)
        c.until = this.now() + Math.min(this.o.maxBackoffMs, 1000 * 2 ** (c.failures - this.o.freeFailures - 1));
      return ok;
    } finally {
      c.inFlight--;
    }
  }

  private client(key: string): Client {
    let c = this.clients.get(key);
    if (c) {
      this.clients.delete(key); // re-inserted: the map's order is least recently used first
    } else {
      c = { inFlight: 0, failures: 0, until: 0 };
      if (this.clients.size >= this.o.maxClients) this.clients.delete(this.clients.keys().next().value!);
    }
    this.clients.set(key, c);
    return c;
  }
}
