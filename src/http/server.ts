// Every HTTP(S) server trustgate listens with is made here, so all of them bound how long a
// client may take to send its headers (a socket trickling header bytes is closed) and how long
// an idle keep-alive connection stays open.
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

export interface HttpTimeouts {
  /** The whole header block must arrive within this (from the request's first byte). */
  headersMs: number;
  /** The whole request, body included; 0 = no limit (streamed blob uploads through the proxy). */
  requestMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { headersMs: 10_000, requestMs: 300_000, keepAliveMs: 65_000 };

/** The proxy streams blob uploads of any length: no whole-request limit, headers still bounded. */
export const proxyTimeouts = (t: HttpTimeouts, requestMs = 0): HttpTimeouts => ({ ...t, requestMs });

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export function createServer(t: HttpTimeouts, tls?: https.ServerOptions, listener?: Listener): http.Server {
  const options: http.ServerOptions = {
    headersTimeout: t.headersMs,
    // Node refuses a request timeout below the headers timeout (0 turns it off).
    requestTimeout: t.requestMs === 0 ? 0 : Math.max(t.requestMs, t.headersMs),
    keepAliveTimeout: t.keepAliveMs,
    // Expired requests are found by a periodic sweep: sweep often enough for the bound to hold.
    connectionsCheckingInterval: Math.min(1000, t.headersMs),
  };
  const server = tls ? https.createServer({ ...tls, ...options }) : http.createServer(options);
  if (listener) server.on('request', listener);
  server.keepAliveTimeout = t.keepAliveMs;
  const sockets = new Set<Socket>();
  server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  socketsOf.set(server, sockets);
  return server;
}

const socketsOf = new WeakMap<http.Server, Set<Socket>>();

/**
 * Graceful stop: no new connection is accepted; requests in flight finish, their connections
 * closing after their answer (`Connection: close` when it is not yet sent), idle keep-alive
 * connections are closed. Resolves once every connection is gone. Servers from createServer only.
 */
export function drain(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => (res.shouldKeepAlive = false));
  for (const s of socketsOf.get(server) ?? []) {
    // node keeps the response a connection is answering here.
    const res = (s as Socket & { _httpMessage?: http.ServerResponse })._httpMessage;
    if (!res) continue;
    if (!res.headersSent) res.shouldKeepAlive = false;
    else res.once('finish', () => s.end());
  }
  server.closeIdleConnections();
  // A connection whose answer just went out becomes idle: close it too.
  const sweep = setInterval(() => server.closeIdleConnections(), 50);
  return closed.finally(() => clearInterval(sweep));
}
