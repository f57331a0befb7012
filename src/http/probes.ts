// Probes for load balancers and orchestrators, answered on every port trustgate serves, without
// authentication. GET /livez: 200 while the process serves at all. GET /readyz: 200 when each
// check (the store, the keystore) answers within CHECK_TIMEOUT_MS and the process is not shutting
// down, else 503 naming only what failed; error texts (hosts, paths) go to the log.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/log.js';

const CHECK_TIMEOUT_MS = 2000;
const JSON_TYPE = 'application/json; charset=utf-8';

export class Probes {
  /** Set on shutdown: /readyz answers 503 from then on. */
  draining = false;

  constructor(
    private checks: Record<string, () => Promise<unknown>>,
    private log: Logger,
  ) {}

  /** Answers `req` when it is a probe; false otherwise (the caller serves it). */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== '/livez' && path !== '/readyz') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
      return true;
    }
    if (path === '/livez') send(req, res, 200, { status: 'live' });
    else
      void this.ready().then(
        (failed) => send(req, res, failed.length ? 503 : 200, failed.length ? { status: 'not ready', failed } : { status: 'ready' }),
        () => send(req, res, 503, { status: 'not ready' }),
      );
    return true;
  }

  /** Names of the checks that fail ('shutdown' while draining). */
  async ready(): Promise<string[]> {
    if (this.draining) return ['shutdown'];
    const names = Object.keys(this.checks);
    const results = await Promise.all(names.map((n) => this.run(n)));
    return names.filter((_n, i) => !results[i]);
  }

  private async run(name: string): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.checks[name]!(),
        new Promise((_r, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      return true;
    } catch (e) {
      this.log('warn', 'readiness check failed', { check: name, error: (e as Error).message });
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

function send(req: IncomingMessage, res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(req.method === 'HEAD' ? undefined : text);
}
