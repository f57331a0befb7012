// Every HTTP(S) server trustgate listens with is made here, so all of them bound how long a
// client may take to send its headers (a socket trickling header bytes is closed) and how long
// an idle keep-alive connection stays open.
import http from 'node:http';
import https from 'node:https';

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
  return server;
}
