// Blob GETs from a plain-http upstream with the body copied straight from the upstream socket to
// the client. Node's HTTP client copies every body chunk into a new Buffer (its parser's on_body)
// after reading it into a fresh 64 KB buffer; for a large layer that was most of the proxy's CPU
// (the parser's memmove, and major GCs of the app's heap driven by the buffer churn: 1.2–1.9 s of
// user CPU per 256 MB in profiles, against 0.1 s here). Here the upstream socket reads (`onread`)
// into a few reused 512 KB buffers, which are written to the client as they are and reused once
// the client's socket has taken them: no allocation and no copy per chunk, at most IN_FLIGHT
// buffers queued per response (backpressure: reading stops until the client takes them).
//
// Only the simple answer is streamed this way: 200 or 206 with a Content-Length. Anything else
// (a 401 token challenge, a redirect, an error, a chunked body, a head we do not parse as
// strictly as llhttp would) is reported as `undefined` before a byte went to the client, the
// connection is dropped, and the caller asks again through node's client (`Upstream.request`).
import net from 'node:net';
import {
  validateHeaderName,
  validateHeaderValue,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';

const CHUNK = 512 * 1024;
/** Buffers written to the client and not yet taken by its socket, per response. */
const IN_FLIGHT = 2;
/** Idle buffers kept for reuse, process-wide. */
const SPARE = 16;
const MAX_HEAD = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

const spare: Buffer[] = [];
const takeBuffer = (): Buffer => spare.pop() ?? Buffer.allocUnsafe(CHUNK);
const giveBuffer = (b: Buffer): void => {
  if (b.length === CHUNK && spare.length < SPARE) spare.push(b);
};

/** A failure talking to the upstream (the caller maps it to 503, or cuts a started body short). */
export class RawGetError extends Error {
  override name = 'RawGetError';
  /** Nothing came back on a reused connection: it was stale, the request may be sent again. */
  stale = false;
}

/** The request head of `GET path`, or undefined when a header would not go out as it came in. */
export function requestHead(path: string, host: string, headers: OutgoingHttpHeaders): string | undefined {
  if (!/^\/[\x21-\x7e]*$/.test(path)) return undefined;
  let head = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  for (const [name, v] of Object.entries(headers)) {
    if (v === undefined || name === 'host' || name === 'content-length' || name === 'transfer-encoding') continue;
    for (const one of Array.isArray(v) ? v : [v]) {
      const value = String(one);
      try {
        validateHeaderName(name);
        validateHeaderValue(name, value);
      } catch {
        return undefined;
      }
      head += `${name}: ${value}\r\n`;
    }
  }
  return `${head}\r\n`;
}

export interface RawHead {
  status: number;
  headers: IncomingHttpHeaders;
  /** Body bytes (the Content-Length). */
  length: number;
  keepAlive: boolean;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses a response head (up to, without, the blank line). Undefined when it is not a 200/206
 * with one plain Content-Length, or anything about it is unusual: such answers go through node's
 * client instead.
 */
export function parseHead(text: string): RawHead | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/.exec(lines[0]!);
  if (!m) return undefined;
  const status = Number(m[2]);
  if (status !== 200 && status !== 206) return undefined;
  const headers: Record<string, string | string[]> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.indexOf(':');
    if (c <= 0) return undefined;
    const name = line.slice(0, c).toLowerCase();
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(c + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) return undefined; // what node would refuse to send on
    const had = headers[name];
    if (name === 'set-cookie') headers[name] = [...((had as string[] | undefined) ?? []), value];
    else headers[name] = had === undefined ? value : `${had as string}, ${value}`;
  }
  const length = headers['content-length'];
  if (typeof length !== 'string' || !/^\d{1,15}$/.test(length) || headers['transfer-encoding'] !== undefined) return undefined;
  const connection = String(headers.connection ?? '').toLowerCase();
  const keepAlive = m[1] === '1' && !/(^|,)\s*close\s*(,|$)/.test(connection);
  return { status, headers: headers as IncomingHttpHeaders, length: Number(length), keepAlive };
}

/** One upstream connection; reads go to the exchange using it, if any. */
class Conn {
  readonly socket: net.Socket;
  exchange?: Exchange;
  used = false;

  constructor(
    host: string,
    port: number,
    readonly timeoutMs: number,
    onIdleGone: (c: Conn) => void,
  ) {
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: takeBuffer, callback: (n: number, buf: Buffer) => this.read(n, buf) },
    });
    this.socket.setTimeout(timeoutMs);
    const gone = (e?: Error) => {
      if (this.exchange) this.exchange.connectionGone(e ?? new Error('the upstream closed the connection'));
      else onIdleGone(this);
    };
    this.socket.on('error', gone);
    this.socket.on('end', () => gone());
    this.socket.on('close', () => gone());
    this.socket.on('timeout', () => {
      if (this.exchange) this.exchange.timedOut();
      else this.socket.destroy();
    });
  }

  /** Reads on, with the timeout counting again from now. */
  resume(): void {
    this.socket.setTimeout(this.timeoutMs);
    this.socket.resume();
  }

  private read(n: number, buf: Buffer): boolean {
    if (this.exchange) return this.exchange.read(n, buf);
    // Bytes nobody asked for: the connection is out of step.
    giveBuffer(buf);
    this.socket.destroy();
    return false;
  }
}

/** One request and its response on a connection. */
class Exchange {
  private phase: 'head' | 'held' | 'body' | 'done' = 'head';
  private headBytes?: Buffer;
  private head?: { resolve: (h: RawHead | undefined) => void; reject: (e: Error) => void };
  /** Body bytes read with the head, before `pipe` was called. */
  private held?: { buf: Buffer; start: number; end: number; pooled: boolean };
  private keepAlive = false;
  private remaining = 0;
  private inFlight = 0;
  private paused = false;
  private res?: ServerResponse;
  /** `collect` mode: the body's bytes land here. */
  private whole?: { body: Buffer; at: number; resolve: (b: Buffer) => void; reject: (e: Error) => void };
  private gotBytes = false;

  constructor(
    private conn: Conn,
    private origin: string,
    /** Whether the connection served an earlier request (then it may have gone stale meanwhile). */
    private reused: boolean,
    private release: (c: Conn, reusable: boolean) => void,
  ) {}

  /** Sends the request head; resolves with the response head, or undefined when it is not streamed here. */
  start(requestHead: string, signal: AbortSignal | undefined): Promise<RawHead | undefined> {
    return new Promise((resolve, reject) => {
      this.head = { resolve, reject };
      if (signal) {
        if (signal.aborted) return this.fail(new RawGetError('aborted'));
        signal.addEventListener('abort', () => this.fail(new RawGetError('aborted')), { once: true });
      }
      this.conn.socket.write(requestHead, 'latin1', (err) => {
        if (err) this.connectionGone(err);
      });
      this.conn.resume();
    });
  }

  read(n: number, buf: Buffer): boolean {
    this.gotBytes = true;
    if (this.phase === 'body') return this.body(buf, 0, n, true);
    if (this.phase !== 'head') {
      giveBuffer(buf);
      this.fail(new RawGetError('the upstream sent bytes out of turn'));
      return false;
    }
    const chunk = buf.subarray(0, n);
    const prev = this.headBytes?.length ?? 0;
    const all = this.headBytes ? Buffer.concat([this.headBytes, chunk]) : chunk;
    const end = all.indexOf(HEAD_END, Math.max(0, prev - 3));
    if (end < 0) {
      giveBuffer(buf);
      if (all.length > MAX_HEAD) {
        this.fail(new RawGetError(`upstream ${this.origin} sent a response head over ${MAX_HEAD} bytes`));
        return false;
      }
      this.headBytes = all === chunk ? Buffer.from(chunk) : all;
      return true;
    }
    const head = parseHead(all.toString('latin1', 0, end));
    const bodyStart = end + HEAD_END.length;
    if (!head) {
      giveBuffer(buf);
      this.phase = 'done';
      this.detach(false);
      this.head!.resolve(undefined);
      return false;
    }
    this.keepAlive = head.keepAlive;
    this.remaining = head.length;
    if (all.length > bodyStart) {
      // The head and the start of the body came together: keep those bytes for `pipe`.
      if (all === chunk) this.held = { buf, start: bodyStart, end: n, pooled: true };
      else {
        this.held = { buf: all, start: bodyStart, end: all.length, pooled: false };
        giveBuffer(buf);
      }
    } else giveBuffer(buf);
    this.phase = 'held';
    this.head!.resolve(head);
    return false; // read no further until `pipe`
  }

  /**
   * Streams the body to `res`, whose head the caller has written. Resolves when `res` closes:
   * with the whole body, or cut short (destroyed) when the upstream or the client failed.
   */
  pipe(res: ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      this.res = res;
      if (this.phase !== 'held' || res.destroyed) {
        this.fail(new RawGetError('the upstream connection failed before the body'));
        res.destroy();
        return resolve();
      }
      res.once('close', () => {
        if (this.phase !== 'done') this.fail(new RawGetError('the client went away'));
        resolve();
      });
      this.startBody();
    });
  }

  /** Reads the whole body, at most `limit` bytes, into one buffer (for small bodies such as manifests). */
  collect(limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.phase !== 'held') return reject(new RawGetError('the upstream connection failed before the body'));
      if (this.remaining > limit) {
        this.fail(new RawGetError(`upstream response larger than ${limit} bytes`));
        return reject(new RawGetError(`upstream response larger than ${limit} bytes`));
      }
      this.whole = { body: Buffer.allocUnsafe(this.remaining), at: 0, resolve, reject };
      this.startBody();
    });
  }

  /** Takes the bytes that came with the head, then reads on (unless that was all, or the sink is full). */
  private startBody(): void {
    this.phase = 'body';
    const held = this.held;
    this.held = undefined;
    const more = held ? this.body(held.buf, held.start, held.end, held.pooled) : this.remaining > 0 || this.complete(false);
    if (more && this.phase === 'body') this.conn.resume();
  }

  /** Takes body bytes (to the client, or into the whole body); returns whether the connection should read on. */
  private body(buf: Buffer, start: number, end: number, pooled: boolean): boolean {
    let n = end - start;
    let extra = false;
    if (n > this.remaining) {
      n = this.remaining;
      extra = true; // more than the Content-Length: not a connection to reuse
    }
    this.remaining -= n;
    if (this.whole) {
      this.whole.at += buf.copy(this.whole.body, this.whole.at, start, start + n);
      if (pooled) giveBuffer(buf);
      return this.remaining === 0 ? this.complete(extra) : true;
    }
    if (n > 0) {
      this.inFlight++;
      this.res!.write(start === 0 && n === buf.length ? buf : buf.subarray(start, start + n), (err) => {
        this.inFlight--;
        if (!err && pooled) giveBuffer(buf);
        if (this.paused && this.phase === 'body' && this.inFlight < IN_FLIGHT) {
          this.paused = false;
          this.conn.resume();
        }
      });
    } else if (pooled) giveBuffer(buf);
    if (this.remaining === 0) return this.complete(extra);
    if (this.inFlight >= IN_FLIGHT) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** All of the body was read: the connection goes back to the pool; returns whether it reads on (idle). */
  private complete(extra: boolean): boolean {
    this.phase = 'done';
    const reusable = this.keepAlive && !extra;
    this.detach(reusable);
    if (this.whole) this.whole.resolve(this.whole.body);
    else this.res!.end();
    return reusable;
  }

  /** The caller will not take the body (it failed to answer its client): drop the connection. */
  cancel(): void {
    this.fail(new RawGetError('cancelled'));
  }

  /** The connection closed or failed. */
  connectionGone(e: Error): void {
    if (this.phase === 'done') return;
    const err = new RawGetError(`upstream ${this.origin} unavailable: ${e.message}`);
    err.stale = this.reused && !this.gotBytes && this.phase === 'head';
    this.fail(err);
  }

  timedOut(): void {
    // Waiting for the client to take what was read is not the upstream's delay.
    if (this.phase === 'done' || this.phase === 'held' || this.paused) return;
    this.fail(new RawGetError(`upstream ${this.origin} timed out`));
  }

  private detach(reusable: boolean): void {
    this.conn.exchange = undefined;
    this.release(this.conn, reusable);
  }

  private fail(e: RawGetError): void {
    if (this.phase === 'done') return;
    const phase = this.phase;
    this.phase = 'done';
    this.detach(false);
    if (this.held) {
      if (this.held.pooled) giveBuffer(this.held.buf);
      this.held = undefined;
    }
    if (phase === 'head') this.head!.reject(e);
    else if (this.whole) this.whole.reject(e);
    // Mid-body the client can only be told that the response was cut short.
    else if (phase === 'body' && this.res && !this.res.destroyed) this.res.destroy();
    // In 'held' the caller has the head and calls pipe(), which finds the exchange done.
  }
}

export interface RawGetOptions {
  host: string;
  port: number;
  /** The Host header. */
  hostHeader: string;
  /** For messages: the upstream's origin. */
  origin: string;
  timeoutMs: number;
  /** Idle connections kept for reuse. */
  maxIdle?: number;
}

/**
 * A started GET whose head is known. Exactly one of these must follow: `pipe(res)` streams the
 * body, `collect` reads it whole, `cancel` drops it (see Exchange).
 */
export interface RawResponse {
  head: RawHead;
  pipe(res: ServerResponse): Promise<void>;
  collect(limit: number): Promise<Buffer>;
  cancel(): void;
}

export class RawGetClient {
  private idle: Conn[] = [];

  constructor(readonly opts: RawGetOptions) {}

  /**
   * Sends `GET path` with `headers`. Resolves with the response when it is a 200/206 with a
   * Content-Length, or undefined (nothing sent to the client, nothing left to clean up) when the
   * caller should ask through node's client instead. Rejects with RawGetError when the upstream
   * cannot be reached.
   */
  async get(path: string, headers: OutgoingHttpHeaders, signal?: AbortSignal): Promise<RawResponse | undefined> {
    const head = requestHead(path, this.opts.hostHeader, headers);
    if (head === undefined) return undefined;
    for (let attempt = 0; ; attempt++) {
      let conn = this.idle.pop();
      while (conn?.socket.destroyed) conn = this.idle.pop();
      conn ??= this.connect();
      conn.socket.ref();
      const reused = conn.used;
      conn.used = true;
      const ex = new Exchange(conn, this.opts.origin, reused, (c, reusable) => this.release(c, reusable));
      conn.exchange = ex;
      try {
        const h = await ex.start(head, signal);
        if (!h) return undefined;
        return { head: h, pipe: (res) => ex.pipe(res), collect: (limit) => ex.collect(limit), cancel: () => ex.cancel() };
      } catch (e) {
        // A kept-alive connection the upstream had closed meanwhile: ask once more on a new one.
        if (reused && attempt === 0 && e instanceof RawGetError && e.stale) continue;
        throw e;
      }
    }
  }

  private connect(): Conn {
    return new Conn(this.opts.host, this.opts.port, this.opts.timeoutMs, (c) => this.forget(c));
  }

  private release(c: Conn, reusable: boolean): void {
    if (!reusable || c.socket.destroyed || this.idle.length >= (this.opts.maxIdle ?? 32)) {
      c.socket.destroy();
      return;
    }
    // Idle connections read on, so one the upstream closes leaves the pool at once.
    c.socket.unref();
    this.idle.push(c);
    c.resume();
  }

  private forget(c: Conn): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    c.socket.destroy();
  }

  /** Idle connections (for tests and metrics). */
  get idleCount(): number {
    return this.idle.length;
  }

  close(): void {
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }
}
