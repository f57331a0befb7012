// The verifying registry proxy: the OCI Distribution API in front of an upstream registry.
// PROXY_ROUTES declares each route (method, path pattern, operation, the access it needs); this
// file dispatches by it, authorises, and holds the helpers the resource handlers share: the
// pass-through (constant memory, backpressure by pipeline, the upstream request aborted when the
// client goes) and the audit of refused pushes. Trust is enforced on manifests (manifests.ts) and
// referrers listings (referrers.ts); blobs, uploads, tag lists and the catalog stream through.
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { MAX_GUN_LENGTH } from '../core/tuf/gun.js';
import { createServer, DEFAULT_HTTP_TIMEOUTS, proxyTimeouts } from '../http/server.js';
import { CHALLENGE, type Principal, type ProxyAction } from './auth.js';
import { blob } from './blobs.js';
import { registryNameProblem } from '../config/proxy.js';
import { DIGEST, NAME, TAG, type Ctx, type ProxyHost, type ProxyOptions } from './context.js';
import { E, send } from './errors.js';
import type { AuditSink } from '../trust/hooks.js';
import { ManifestRoutes } from './manifests.js';
import { ruleFor } from './policy.js';
import { catalog, listTags } from './tags.js';
import { UpstreamError, endToEnd } from '../registry/client.js';
import { startUpload, upload } from './uploads.js';

export type { ProxyOptions } from './context.js';

/** An upstream error body relayed is read whole, up to this, so its Content-Length is the one sent. */
const MAX_ERROR_BODY = 64 * 1024;

interface RouteBase {
  methods: readonly string[];
  /** The path (without query); for repository routes group 1 is the repository name, group 2 the reference. */
  pattern: RegExp;
  operation: string;
}
/** Registry-wide: `ping` needs a valid token unless pulls are open; `catalog` read access to every repository. */
interface RegistryRoute extends RouteBase {
  permission: 'ping' | 'catalog';
  handle(p: RegistryProxy, req: IncomingMessage, res: ServerResponse, url: string): Promise<void> | void;
}
/** On one repository: `pull` needs read access to its GUN (or open pulls), `push` sign access. */
interface RepositoryRoute extends RouteBase {
  permission: Extract<ProxyAction, 'pull' | 'push'>;
  handle(p: RegistryProxy, ctx: Ctx, ref: string, url: string): Promise<void> | void;
}
export type ProxyRoute = RegistryRoute | RepositoryRoute;

const BASE = /^\/v2\/?$/;
const CATALOG = /^\/v2\/_catalog$/;
const MANIFEST = new RegExp(`^/v2/(${NAME})/manifests/(${TAG}|${DIGEST})$`);
const UPLOAD_START = new RegExp(`^/v2/(${NAME})/blobs/uploads/?$`);
const UPLOAD = new RegExp(`^/v2/(${NAME})/blobs/uploads/([A-Za-z0-9_.=-]+)$`);
const BLOB = new RegExp(`^/v2/(${NAME})/blobs/(${DIGEST})$`);
const TAGS = new RegExp(`^/v2/(${NAME})/tags/list$`);
const REFERRERS = new RegExp(`^/v2/(${NAME})/referrers/(${DIGEST})$`);

/** The proxy's routes. A method a matched path does not list is refused with 405 UNSUPPORTED. */
export const PROXY_ROUTES: readonly ProxyRoute[] = [
  {
    methods: ['GET', 'HEAD'],
    pattern: BASE,
    operation: 'Ping',
    permission: 'ping',
    handle: (p, req, res) => p.forward(req, res, '/v2/', { scope: '' }),
  },
  {
    methods: ['GET'],
    pattern: CATALOG,
    operation: 'Catalog',
    permission: 'catalog',
    handle: (p, req, res, url) => catalog(p, req, res, url),
  },
  {
    methods: ['GET', 'HEAD'],
    pattern: MANIFEST,
    operation: 'GetManifest',
    permission: 'pull',
    handle: (p, ctx, ref, url) => p.manifests.pullManifest(ctx, ref, url),
  },
  {
    methods: ['PUT'],
    pattern: MANIFEST,
    operation: 'PutManifest',
    permission: 'push',
    handle: (p, ctx, ref, url) => p.manifests.pushManifest(ctx, ref, url),
  },
  {
    methods: ['DELETE'],
    pattern: MANIFEST,
    operation: 'DeleteManifest',
    permission: 'push',
    handle: (p, ctx, _ref, url) => p.manifests.deleteManifest(ctx, url),
  },
  {
    methods: ['POST'],
    pattern: UPLOAD_START,
    operation: 'StartBlobUpload',
    permission: 'push',
    handle: (p, ctx, _ref, url) => startUpload(p, ctx, url),
  },
  { methods: ['GET'], pattern: UPLOAD, operation: 'GetBlobUpload', permission: 'pull', handle: (p, ctx, _ref, url) => upload(p, ctx, url) },
  {
    methods: ['PATCH', 'PUT', 'DELETE'],
    pattern: UPLOAD,
    operation: 'WriteBlobUpload',
    permission: 'push',
    handle: (p, ctx, _ref, url) => upload(p, ctx, url),
  },
  { methods: ['GET', 'HEAD'], pattern: BLOB, operation: 'GetBlob', permission: 'pull', handle: (p, ctx, _ref, url) => blob(p, ctx, url) },
  { methods: ['DELETE'], pattern: BLOB, operation: 'DeleteBlob', permission: 'push', handle: (p, ctx, _ref, url) => blob(p, ctx, url) },
  { methods: ['GET'], pattern: TAGS, operation: 'ListTags', permission: 'pull', handle: (p, ctx, _ref, url) => listTags(p, ctx, url) },
  {
    methods: ['GET'],
    pattern: REFERRERS,
    operation: 'ListReferrers',
    permission: 'pull',
    handle: (p, ctx, digest, url) => p.manifests.referrers.list(ctx, digest, url),
  },
];

/** The table by pattern, in order, so each pattern is tried once per request. */
const BY_PATTERN: Array<{ pattern: RegExp; routes: ProxyRoute[] }> = [];
for (const r of PROXY_ROUTES) {
  const group = BY_PATTERN.find((g) => g.pattern === r.pattern);
  if (group) group.routes.push(r);
  else BY_PATTERN.push({ pattern: r.pattern, routes: [r] });
}
const isRegistryRoute = (r: ProxyRoute): r is RegistryRoute => r.permission === 'ping' || r.permission === 'catalog';

export class RegistryProxy implements ProxyHost {
  private server?: http.Server;
  private registryName?: string;
  readonly manifests: ManifestRoutes;

  constructor(readonly opts: ProxyOptions) {
    if (opts.registryName) this.registryName = opts.registryName;
    this.manifests = new ManifestRoutes(this);
  }

  gunFor(repo: string): string {
    return `${this.registryName ?? 'localhost'}/${repo}`;
  }

  /** The request listener (for http(s).createServer). */
  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    this.handle(req, res).catch((e: Error) => {
      this.opts.log('error', 'proxy request failed', { method: req.method, url: req.url, error: e.message });
      send(res, E.UNKNOWN, undefined, e.message);
    });
  };

  async listen(host: string, port: number, server: http.Server = createServer(proxyTimeouts(DEFAULT_HTTP_TIMEOUTS))): Promise<AddressInfo> {
    server.on('request', this.listener);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address() as AddressInfo;
    if (this.registryName === undefined) {
      const name = `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
      const bad = registryNameProblem(name);
      if (bad) {
        // Started anyway, every pull would be denied and every push left unsigned.
        await this.close();
        throw new Error(
          `the registry name ${name}, taken from the listen address, ${bad}: set TRUSTGATE_REGISTRY_NAME to the name clients use`,
        );
      }
      this.registryName = name;
    }
    return addr;
  }

  async close(): Promise<void> {
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    }
    this.opts.upstream.close();
  }

  async authorize(req: IncomingMessage, res: ServerResponse, action: ProxyAction | 'ping', gun?: string): Promise<Principal | undefined> {
    const r = await this.opts.auth.check(req.headers.authorization, action, gun);
    if (r.ok) return r.principal;
    if (action === 'push') {
      const path = (req.url ?? '/').split('?')[0]!;
      this.denyPush(r.actor, gun, { reason: r.message, method: req.method ?? '', path: path.length > 256 ? path.slice(0, 256) : path });
    }
    if (r.status === 401) send(res, E.UNAUTHORIZED, undefined, r.message, { 'WWW-Authenticate': CHALLENGE });
    else send(res, E.DENIED, undefined, r.message);
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';

    if (this.opts.notary && /^\/v2\/.+\/_trust\//.test(path)) return this.opts.notary(req, res);
    if (this.opts.probes && (path === '/livez' || path === '/readyz')) return void this.opts.probes.handle(req, res);
    let m: RegExpExecArray | null = null;
    let routes: ProxyRoute[] | undefined;
    for (const g of BY_PATTERN) {
      m = g.pattern.exec(path);
      if (m) {
        routes = g.routes;
        break;
      }
    }
    if (!routes || !m) return send(res, E.NAME_INVALID, { path });
    let route: ProxyRoute | undefined;
    for (const r of routes) if (r.methods.includes(method)) route = r;
    if (!route) return send(res, E.UNSUPPORTED);
    if (isRegistryRoute(route)) {
      if (!(await this.authorize(req, res, route.permission))) return;
      return route.handle(this, req, res, url);
    }
    const repo = m[1]!;
    const gun = this.gunFor(repo);
    // The name grammar has no length limit, and the registry part lengthens the GUN: a name whose
    // GUN is over 255 bytes would be signed into trust data the Notary API refuses to serve.
    // (Length only: the name grammar makes valid segments, and an IPv6 registry part fails isValidGun.)
    if (Buffer.byteLength(gun) > MAX_GUN_LENGTH)
      return send(
        res,
        E.NAME_INVALID,
        { name: repo, limit: MAX_GUN_LENGTH - Buffer.byteLength(this.gunFor('')) },
        `repository name too long: its GUN is over ${MAX_GUN_LENGTH} bytes`,
      );
    const principal = await this.authorize(req, res, route.permission, gun);
    if (!principal) return;
    const rule = ruleFor(this.opts.policy.current(), repo);
    const scope = `repository:${repo}:${route.permission === 'push' ? 'pull,push' : 'pull'}`;
    const ctx: Ctx = { req, res, repo, gun, rule, principal, scope };
    return route.handle(this, ctx, m[2] ?? '', url);
  }

  // ---------------------------------------------------------------------------------------------
  // Pass-through

  /** Where clients reach the proxy, for rewritten Location headers. */
  private origin(req: IncomingMessage): string {
    return `${this.opts.scheme ?? 'http'}://${req.headers.host ?? this.registryName}`;
  }

  private rewrite(req: IncomingMessage, value: string): string {
    try {
      const u = new URL(value, this.opts.upstream.origin);
      if (u.origin === this.opts.upstream.origin) return `${this.origin(req)}${u.pathname}${u.search}`;
    } catch {
      // not a URL: leave it
    }
    return value;
  }

  responseHeaders(req: IncomingMessage, upstreamHeaders: IncomingHttpHeaders): OutgoingHttpHeaders {
    const h = endToEnd(upstreamHeaders, ['www-authenticate']);
    if (typeof h.location === 'string') h.location = this.rewrite(req, h.location);
    if (typeof h.link === 'string') h.link = h.link.replace(/<([^>]+)>/g, (_all, u: string) => `<${this.rewrite(req, u)}>`);
    return h;
  }

  upstreamFailure(res: ServerResponse, e: Error, what: string): void {
    this.opts.metrics.upstreamErrors.inc({ kind: e instanceof UpstreamError ? 'unavailable' : 'error' });
    this.opts.log('warn', 'upstream registry failed', { what, error: e.message });
    send(res, E.UNAVAILABLE, { upstream: this.opts.upstream.origin, error: e.message }, `upstream registry unavailable: ${e.message}`);
  }

  /**
   * Streams a request to the upstream and its answer back; aborts upstream when the client goes.
   * Blob GETs (`blob`) take the raw path first: body bytes copied from the upstream's socket
   * without node's HTTP client (rawget.ts), falling back to it for answers that path leaves alone.
   */
  async forward(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    o: { scope: string; body?: boolean; blob?: boolean },
  ): Promise<void> {
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort();
    };
    res.once('close', onClose);
    try {
      const hasBody = o.body && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0);
      if (!hasBody) req.resume();
      const headers = endToEnd(req.headers);
      if (o.blob && req.method === 'GET') {
        const raw = await this.opts.upstream.streamGet({ path, headers, scope: o.scope, signal: ac.signal });
        if (raw) {
          this.opts.metrics.blobBodies.inc({ via: 'socket' });
          try {
            res.writeHead(raw.head.status, this.responseHeaders(req, raw.head.headers));
          } catch (e) {
            raw.cancel();
            throw e;
          }
          return await raw.pipe(res);
        }
      }
      const up = await this.opts.upstream.request({
        method: req.method ?? 'GET',
        path,
        headers,
        scope: o.scope,
        ...(hasBody ? { body: req } : {}),
        signal: ac.signal,
      });
      if (up.statusCode === 401) {
        up.resume();
        return send(res, E.UNAVAILABLE, { upstream: this.opts.upstream.origin }, "the upstream registry refused trustgate's credentials");
      }
      if (o.blob && req.method === 'GET') this.opts.metrics.blobBodies.inc({ via: 'client' });
      const status = up.statusCode ?? 502;
      if (status >= 400 && req.method !== 'HEAD') {
        // An error's Content-Length may not be its body's (docker-registry's 416 and 412 keep the
        // blob's): relay the body that came, with its own length.
        const body = await upstreamErrorBody(up, MAX_ERROR_BODY);
        res.writeHead(status, { ...this.responseHeaders(req, up.headers), 'content-length': body.length });
        res.end(body);
        return;
      }
      res.writeHead(status, this.responseHeaders(req, up.headers));
      // Client or upstream gone mid-body: pipeline has destroyed both ends.
      await pipeline(up, res).catch(() => undefined);
    } catch (e) {
      if (ac.signal.aborted) return;
      return this.upstreamFailure(res, e as Error, `${req.method} ${path}`);
    } finally {
      res.off('close', onClose);
    }
  }

  /** A push refused for its credentials or its signing rights, audited with the actor (refusals of one kind are windowed when the sink can). */
  denyPush(actor: { id: string; name: string }, gun: string | undefined, detail: Record<string, string>): void {
    this.opts.log('debug', 'push refused', { actor: actor.name, gun, ...detail });
    const entry = {
      actor: { id: actor.id, name: actor.name },
      action: 'proxy.push',
      outcome: 'denied' as const,
      ...(gun !== undefined ? { gun } : {}),
      detail,
    };
    const sink = this.opts.audit;
    if (!sink?.appendDenial) {
      void this.audit(entry);
      return;
    }
    try {
      sink.appendDenial(entry, { reason: detail.reason ?? '', ...(gun !== undefined ? { gun } : {}) });
    } catch (e) {
      this.opts.log('error', 'audit log write failed', { error: (e as Error).message });
    }
  }

  async audit(entry: Parameters<AuditSink['append']>[0]): Promise<boolean> {
    if (!this.opts.audit) return false;
    try {
      await this.opts.audit.append(entry);
      return true;
    } catch (e) {
      this.opts.log('error', 'audit log write failed', { error: (e as Error).message });
      return false;
    }
  }
}

/** An upstream error answer's body as far as it came (it may end before its stated length), at most `limit` bytes. */
function upstreamErrorBody(up: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      up.off('data', onData);
      resolve(Buffer.concat(chunks, Math.min(n, limit)));
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= limit) {
        up.destroy();
        done();
      }
    };
    up.on('data', onData);
    up.once('end', done);
    up.once('close', done);
    up.once('error', () => undefined);
  });
}
