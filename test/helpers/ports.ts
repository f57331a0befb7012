// Loopback port helpers for integration tests. Everything is bounded: no loop
// here can spin forever, every wait has a deadline.
import net from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';

/** Ask the kernel for a free TCP port on 127.0.0.1 (bind :0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close((err) => (err ? reject(err) : port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

/** True if something accepts a TCP connection on host:port within `timeoutMs`. */
function tryConnect(port: number, host: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok: boolean): void => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export interface WaitOptions {
  host?: string;
  /** Delay between attempts (ms). */
  intervalMs?: number;
  /** Called between attempts; throw from it to abort early (e.g. the process died). */
  check?: () => void;
}

/** Wait until 127.0.0.1:port accepts TCP connections, or throw after timeoutMs. */
export async function waitForPort(port: number, timeoutMs = 15_000, opts: WaitOptions = {}): Promise<void> {
  const host = opts.host ?? '127.0.0.1';
  const interval = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / interval) + 1; // hard bound besides the clock
  for (let i = 0; i < maxAttempts && Date.now() < deadline; i++) {
    opts.check?.();
    if (await tryConnect(port, host, Math.min(1000, Math.max(50, deadline - Date.now())))) return;
    await sleep(interval);
  }
  throw new Error(`port ${host}:${port} not accepting connections after ${timeoutMs}ms`);
}

export interface WaitHttpOptions extends WaitOptions {
  /** PEM CA bundle to trust for https URLs (fetch() cannot take a custom CA). */
  ca?: string | Buffer;
  /** Accept this status as "ready"; default: any status < 500. */
  okStatus?: (status: number) => boolean;
}

/** One GET via node:http(s); resolves the status code or null on any error. */
function tryGet(url: URL, timeoutMs: number, ca?: string | Buffer): Promise<number | null> {
  return new Promise((resolve) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.get(url, { timeout: timeoutMs, ...(ca ? { ca } : {}) }, (res) => {
      res.resume(); // drain so the socket is released
      resolve(res.statusCode ?? null);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(null));
  });
}

/** Poll `url` until it answers with an acceptable status, or throw after timeoutMs. */
export async function waitForHttp(url: string, timeoutMs = 15_000, opts: WaitHttpOptions = {}): Promise<void> {
  const u = new URL(url);
  const interval = opts.intervalMs ?? 100;
  const ok = opts.okStatus ?? ((s: number) => s < 500);
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / interval) + 1;
  let last: number | null = null;
  for (let i = 0; i < maxAttempts && Date.now() < deadline; i++) {
    opts.check?.();
    last = await tryGet(u, Math.min(2000, Math.max(50, deadline - Date.now())), opts.ca);
    if (last !== null && ok(last)) return;
    await sleep(interval);
  }
  throw new Error(`${url} not ready after ${timeoutMs}ms (last status: ${last ?? 'no response'})`);
}
