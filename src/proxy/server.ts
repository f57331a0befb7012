// The verifying registry proxy: the OCI Distribution API in front of an upstream registry.
// Blobs, uploads, tag lists, the catalog and referrers stream through (constant memory,
// backpressure by pipeline, the upstream request aborted when the client goes). Manifests are
// where trust is enforced: a tag is served only as the digest its trust data signs, fetched from
// the upstream by that digest and checked byte for byte; a digest only when it is signed, a child
// of a signed index, or an artifact of an allowed type (artifacts.ts) whose subject is served.
// Pushed tags are signed.
import { createHash } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { fail, type TargetRequirement } from '../core/tuf/verify.js';
import { errorBody, JSON_CONTENT_TYPE } from '../http/errcode.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';
import { createServer, DEFAULT_HTTP_TIMEOUTS, proxyTimeouts } from '../http/server.js';
import type { Logger } from '../observability/log.js';
import { checkArtifact } from './artifacts.js';
import { ProxyAuth, CHALLENGE, type Principal, type ProxyAction } from './auth.js';
import { BoundedMap } from '../core/bounded-map.js';
import { ManifestCache, type VerdictCache } from './cache.js';
import { registryNameProblem } from '../config/proxy.js';
import type { AuditSink, CosignHook } from '../trust/hooks.js';
import type { ProxyMetrics } from './metrics.js';
import { requirementFor, ruleFor, type PolicySource, type Rule } from './policy.js';
import type { PushSigner } from './signing.js';
import { Upstream, UpstreamError, endToEnd } from '../registry/client.js';
import type { Verdict, Verifier } from '../trust/verifier.js';
import { ociDigest } from '../core/digest.js';
import { MAX_GUN_LENGTH } from '../core/tuf/gun.js';
import { BodyError as MultipartError, readBody as readRequestBody } from '../http/body.js';

// Registry name grammar (distribution/reference).
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const NAME = `${COMPONENT}(?:/${COMPONENT})*`;
const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
const DIGEST = '[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+';
const ROUTES: Array<[RegExp, Route]> = [
  [new RegExp(`^/v2/(${NAME})/manifests/(${TAG}|${DIGEST})$`), 'manifest'],
  [new RegExp(`^/v2/(${NAME})/blobs/uploads/?$`), 'upload-start'],
  [new RegExp(`^/v2/(${NAME})/blobs/uploads/([A-Za-z0-9_.=-]+)$`), 'upload'],
  [new RegExp(`^/v2/(${NAME})/blobs/(${DIGEST})$`), 'blob'],
  [new RegExp(`^/v2/(${NAME})/tags/list$`), 'tags'],
  [new RegExp(`^/v2/(${NAME})/referrers/(${DIGEST})$`), 'referrers'],
];
type Route = 'manifest' | 'upload-start' | 'upload' | 'blob' | 'tags' | 'referrers';

const DIGEST_RE = new RegExp(`^${DIGEST}$`);
const NAME_RE = new RegExp(`^${NAME}$`);
/** cosign's tag for the signature (and attestation, SBOM) of `sha256:<hex>`. */
const SIGNATURE_TAG = /^sha256-([0-9a-f]{64})\.(sig|att|sbom)$/;
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** An upstream error body relayed is read whole, up to this, so its Content-Length is the one sent. */
const MAX_ERROR_BODY = 64 * 1024;
/** How many artifacts deep a subject chain may go (a signature of an attestation of an image: 2). */
const MAX_ARTIFACT_DEPTH = 2;
/** Every manifest type, for fetches the proxy makes for itself (index children, subjects). */
const ALL_MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const E = {
  DENIED: { code: 'DENIED', status: 403, message: 'requested access to the resource is denied' },
  UNAUTHORIZED: { code: 'UNAUTHORIZED', status: 401, message: 'authentication required' },
  UNAVAILABLE: { code: 'UNAVAILABLE', status: 503, message: 'service unavailable' },
  NAME_INVALID: { code: 'NAME_INVALID', status: 404, message: 'invalid repository name or route' },
  SIZE_INVALID: { code: 'SIZE_INVALID', status: 413, message: 'manifest too large' },
  UNSUPPORTED: { code: 'UNSUPPORTED', status: 405, message: 'The operation is unsupported.' },
  REPEATED_PARAMETER: { code: 'UNSUPPORTED', status: 400, message: 'a query parameter is given more than once' },
  UNKNOWN: { code: 'UNKNOWN', status: 500, message: 'unknown error' },
} as const;
type Err = (typeof E)[keyof typeof E];

export interface ProxyOptions {
  upstream: Upstream;
  verifier: Verifier;
  cache: VerdictCache;
  policy: PolicySource;
  signer: PushSigner;
  auth: ProxyAuth;
  metrics: ProxyMetrics;
  log: Logger;
  /** Registry part of GUNs; default: the address the proxy listens on (host:port). */
  registryName?: string;
  /** Scheme clients use to reach the proxy (for rewritten Location headers). */
  scheme?: 'http' | 'https';
  /** Requests under `/v2/<gun>/_trust/` go here (the Notary API), so docker trust works at the proxy's address. */
  notary?: (req: IncomingMessage, res: ServerResponse) => void;
  audit?: AuditSink;
  cosign?: CosignHook;
  now?: () => number;
  /**
   * Bytes of verified manifests kept in memory (keyed by repository, digest and the client's
   * Accept, each checked against its digest when fetched), for `manifestCacheTtlMs`; 0 = fetch
   * every pull from the upstream.
   */
  manifestCacheBytes?: number;
  manifestCacheTtlMs?: number;
}

/** An upstream answer with its whole body. */
interface Fetched {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  repo: string;
  gun: string;
  rule: Rule;
  principal: Principal;
}

const DAPI = { 'Docker-Distribution-Api-Version': 'registry/2.0' };

function send(res: ServerResponse, e: Err, detail?: unknown, message?: string, headers: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(e, detail, message);
  res.writeHead(e.status, { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), ...DAPI, ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export class RegistryProxy {
  private server?: http.Server;
  private registryName?: string;
  /** Children of signed indexes, by index digest: content-addressed, so kept as long as there is room. */
  private children = new BoundedMap<string, Map<string, number>>(4096);
  private manifests: ManifestCache;

  constructor(readonly opts: ProxyOptions) {
    if (opts.registryName) this.registryName = opts.registryName;
    this.manifests = new ManifestCache(opts.manifestCacheBytes ?? 0, opts.manifestCacheTtlMs ?? 60_000, opts.now ?? Date.now);
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
        throw new Error(`the registry name ${name}, taken from the listen address, ${bad}: set TRUSTGATE_REGISTRY_NAME to the name clients use`);
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

  private authorize(req: IncomingMessage, res: ServerResponse, action: ProxyAction | 'ping', gun?: string): Principal | undefined {
    const r = this.opts.auth.check(req.headers.authorization, action, gun);
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
    if (path === '/v2/' || path === '/v2') {
      if (!this.authorize(req, res, 'ping')) return;
      return this.forward(req, res, '/v2/', { scope: '' });
    }
    if (path === '/v2/_catalog') {
      if (method !== 'GET') return send(res, E.UNSUPPORTED);
      if (!this.authorize(req, res, 'catalog')) return;
      return this.forward(req, res, url, { scope: 'registry:catalog:*' });
    }
    let route: Route | undefined;
    let m: RegExpExecArray | null = null;
    for (const [re, r] of ROUTES) {
      m = re.exec(path);
      if (m) {
        route = r;
        break;
      }
    }
    if (!route || !m) return send(res, E.NAME_INVALID, { path });
    const repo = m[1]!;
    const gun = this.gunFor(repo);
    // The name grammar has no length limit, and the registry part lengthens the GUN: a name whose
    // GUN is over 255 bytes would be signed into trust data the Notary API refuses to serve.
    // (Length only: the name grammar makes valid segments, and an IPv6 registry part fails isValidGun.)
    if (Buffer.byteLength(gun) > MAX_GUN_LENGTH) return send(res, E.NAME_INVALID, { name: repo, limit: MAX_GUN_LENGTH - Buffer.byteLength(this.gunFor('')) }, `repository name too long: its GUN is over ${MAX_GUN_LENGTH} bytes`);
    const write = !(method === 'GET' || method === 'HEAD');
    const principal = this.authorize(req, res, write ? 'push' : 'pull', gun);
    if (!principal) return;
    const rule = ruleFor(this.opts.policy.current(), repo);
    const ctx: Ctx = { req, res, repo, gun, rule, principal };
    const scope = `repository:${repo}:${write ? 'pull,push' : 'pull'}`;

    if (route === 'manifest') {
      const ref = m[2]!;
      if (method === 'GET' || method === 'HEAD') return this.pullManifest(ctx, ref, url);
      if (method === 'PUT') return this.pushManifest(ctx, ref, url);
      if (method === 'DELETE') {
        this.manifests.forget(repo);
        return this.forward(req, res, url, { scope });
      }
      return send(res, E.UNSUPPORTED);
    }
    if (route === 'upload-start' && method === 'POST') {
      // A cross-repository mount reads the source repository too: the client needs read access
      // to it here, as the upstream would ask of it (the proxy's own credentials can read it all).
      const repeated = repeatedParam(url);
      if (repeated !== undefined) return send(res, E.REPEATED_PARAMETER, { parameter: repeated }, repeatedParamMessage(repeated));
      const from = new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('from');
      if (from) {
        const fromGun = this.gunFor(from);
        if (!NAME_RE.test(from) || Buffer.byteLength(fromGun) > MAX_GUN_LENGTH) return send(res, E.NAME_INVALID, { from }, 'invalid repository name to mount from');
        if (!this.authorize(req, res, 'pull', fromGun)) return;
      }
      const mountScope = from ? `${scope} repository:${from}:pull` : scope;
      return this.forward(req, res, url, { scope: mountScope, body: true });
    }
    if (route === 'upload' && ['GET', 'PATCH', 'PUT', 'DELETE'].includes(method)) {
      return this.forward(req, res, url, { scope, body: method === 'PATCH' || method === 'PUT' });
    }
    if (route === 'blob' && ['GET', 'HEAD', 'DELETE'].includes(method)) return this.forward(req, res, url, { scope, blob: true });
    if ((route === 'tags' || route === 'referrers') && method === 'GET') return this.forward(req, res, url, { scope });
    return send(res, E.UNSUPPORTED);
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

  private responseHeaders(req: IncomingMessage, upstreamHeaders: IncomingHttpHeaders): OutgoingHttpHeaders {
    const h = endToEnd(upstreamHeaders, ['www-authenticate']);
    if (typeof h.location === 'string') h.location = this.rewrite(req, h.location);
    if (typeof h.link === 'string') h.link = h.link.replace(/<([^>]+)>/g, (_all, u: string) => `<${this.rewrite(req, u)}>`);
    return h;
  }

  private upstreamFailure(res: ServerResponse, e: Error, what: string): void {
    this.opts.metrics.upstreamErrors.inc({ kind: e instanceof UpstreamError ? 'unavailable' : 'error' });
    this.opts.log('warn', 'upstream registry failed', { what, error: e.message });
    send(res, E.UNAVAILABLE, { upstream: this.opts.upstream.origin, error: e.message }, `upstream registry unavailable: ${e.message}`);
  }

  /**
   * Streams a request to the upstream and its answer back; aborts upstream when the client goes.
   * Blob GETs (`blob`) take the raw path first: body bytes copied from the upstream's socket
   * without node's HTTP client (rawget.ts), falling back to it for answers that path leaves alone.
   */
  private async forward(req: IncomingMessage, res: ServerResponse, path: string, o: { scope: string; body?: boolean; blob?: boolean }): Promise<void> {
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
      const up = await this.opts.upstream.request({ method: req.method ?? 'GET', path, headers, scope: o.scope, ...(hasBody ? { body: req } : {}), signal: ac.signal });
      if (up.statusCode === 401) {
        up.resume();
        return send(res, E.UNAVAILABLE, { upstream: this.opts.upstream.origin }, 'the upstream registry refused trustgate\'s credentials');
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

  // ---------------------------------------------------------------------------------------------
  // Pull enforcement

  private async pullManifest(ctx: Ctx, ref: string, url: string): Promise<void> {
    const { req, res, rule } = ctx;
    req.resume();
    if (rule.mode === 'off') {
      this.count(rule, 'passed', 'off');
      return this.forward(req, res, url, { scope: `repository:${ctx.repo}:pull` });
    }
    const { require, key } = requirement(rule);
    const isDigest = DIGEST_RE.test(ref);
    const sig = SIGNATURE_TAG.exec(ref);
    let verdict: Verdict;
    let notArtifact: string | undefined;
    if (sig) {
      // A cosign signature (or attestation, SBOM) tag: served as an artifact of the digest it
      // names, or else only as any other tag is.
      const r = await this.artifactTag(ctx, ref, url, `sha256:${sig[1]}`, require);
      if (r === 'answered') return;
      notArtifact = r;
    }
    if (isDigest) {
      verdict = await this.decideDigest(ctx, ref, require);
    } else {
      verdict = await this.opts.cache.get(ctx.gun, `tag:${ref}|${key}`, () => this.opts.verifier.verifyTag(ctx.gun, ref, require));
    }
    if (rule.signatures !== 'tuf' && verdict.reason !== 'unavailable') verdict = await this.applyCosign(ctx, ref, verdict);
    if (!verdict.ok && notArtifact) verdict = { ...verdict, message: `${verdict.message ?? 'not verified'}; not served as an artifact: ${notArtifact}` };
    if (!verdict.ok) return this.refuse(ctx, ref, url, verdict);
    return this.serveVerified(ctx, ref, url, verdict);
  }

  /**
   * Serves a `sha256-<hex>.sig|.att|.sbom` tag when its manifest is an artifact of an allowed type
   * whose subject (or, without one, the digest `named` by the tag) is served; the bytes checked
   * are the bytes sent. Otherwise says why not ('answered' when a reply went out).
   */
  private async artifactTag(ctx: Ctx, ref: string, url: string, named: string, require: TargetRequirement): Promise<'answered' | string> {
    const { req, res } = ctx;
    const unavailable = (v: Verdict): 'answered' => {
      void this.refuse(ctx, ref, url, v);
      return 'answered';
    };
    let got: Fetched;
    try {
      got = await this.fetchManifest(ctx.repo, ref, req.headers.accept);
    } catch (e) {
      this.upstreamFailure(res, e as Error, `manifest ${ctx.repo}:${ref}`);
      return 'answered';
    }
    if (got.status !== 200) {
      // cosign asks for the tag before signing and verifying: a missing one is relayed when the
      // digest it would be about is served.
      if (got.status >= 500) return unavailable(this.opts.verifier.failure(ctx.gun, ref, fail('unavailable', `upstream registry answered ${got.status}`)));
      if (got.status < 400) return `the upstream answered ${got.status}`;
      const parent = await this.decideDigest(ctx, named, require);
      if (!parent.ok) return parent.reason === 'unavailable' ? unavailable(parent) : `the upstream answered ${got.status}`;
      this.count(ctx.rule, 'upstream', String(got.status));
      res.writeHead(got.status, { ...DAPI, ...endToEnd(got.headers, ['www-authenticate', 'content-length']), 'content-length': got.body.length });
      res.end(req.method === 'HEAD' ? undefined : got.body);
      return 'answered';
    }
    const art = checkArtifact(parseObject(got.body), ctx.rule.artifactTypes);
    if (!art.ok) return art.why;
    const subject = art.subject ?? named;
    if (!DIGEST_RE.test(subject)) return `its subject ${subject} is not a digest`;
    const parent = await this.decideDigest(ctx, subject, require, 1);
    if (!parent.ok) return parent.reason === 'unavailable' ? unavailable(parent) : `its subject ${subject} is not served: ${parent.message ?? parent.reason}`;
    const { length: _l, ...rest } = parent;
    const digest = ociDigest(got.body);
    this.serveManifest(ctx, { ...rest, digest, evidence: { ...parent.evidence, reference: ref, via: 'signature', parent: subject } }, got.headers['content-type'], got.body);
    return 'answered';
  }

  /** Combines the TUF verdict with a cosign-format check as the rule's `signatures` says. */
  private async applyCosign(ctx: Ctx, ref: string, tuf: Verdict): Promise<Verdict> {
    const mode = ctx.rule.signatures;
    if (mode === 'either' && tuf.ok) return tuf;
    if (mode === 'both' && !tuf.ok) return tuf;
    const hook = this.opts.cosign;
    if (!hook) {
      return mode === 'either' ? tuf : this.opts.verifier.failure(ctx.gun, ref, fail('unavailable', 'the policy needs cosign-format signatures, and no cosign verifier is configured'));
    }
    // For `both`, the cosign signature must be over the very digest the TUF data signed.
    const reference = mode === 'both' ? tuf.digest! : ref;
    const cosign = await hook
      .verify({ gun: ctx.gun, repository: ctx.repo, reference })
      .catch((e: Error) => this.opts.verifier.failure(ctx.gun, ref, fail('unavailable', `cosign verification failed: ${e.message}`)));
    if (mode !== 'both' || !cosign.ok) return cosign;
    if (cosign.digest !== tuf.digest) return this.opts.verifier.failure(ctx.gun, ref, fail('digest-mismatch', 'the cosign signature and the TUF trust data name different digests'));
    return { ...tuf, signers: [...tuf.signers, ...cosign.signers] };
  }

  private count(rule: Rule, result: string, reason: string): void {
    this.opts.metrics.decision(rule.mode, result, reason);
  }

  /** A failed verdict: 403 (or 503 when unavailable) in enforce mode; served anyway in audit mode. */
  private refuse(ctx: Ctx, ref: string, url: string, v: Verdict): Promise<void> | void {
    const reason = v.reason ?? 'not-signed';
    if (reason === 'unavailable') {
      this.count(ctx.rule, 'unavailable', reason);
      this.opts.log('warn', 'proxy could not verify; failing closed', { gun: ctx.gun, reference: ref, message: v.message });
      return send(ctx.res, E.UNAVAILABLE, { reason, repository: ctx.repo, reference: ref }, `cannot verify ${ctx.repo}:${ref}: ${v.message}`);
    }
    if (ctx.rule.mode === 'audit') {
      this.count(ctx.rule, 'audit-violation', reason);
      this.opts.metrics.auditViolations.inc({ repository: ctx.repo, reason });
      this.opts.log('warn', 'audit mode: serving unverified content', { gun: ctx.gun, reference: ref, reason, message: v.message });
      return this.forward(ctx.req, ctx.res, url, { scope: `repository:${ctx.repo}:pull` });
    }
    this.count(ctx.rule, 'denied', reason);
    this.opts.log('info', 'pull denied', { gun: ctx.gun, reference: ref, reason, message: v.message, actor: ctx.principal.name });
    send(
      ctx.res,
      E.DENIED,
      { reason, ...(v.role ? { role: v.role } : {}), repository: ctx.repo, reference: ref, gun: ctx.gun },
      `${reason}: ${v.message ?? 'not verified'}`,
    );
  }

  /** Fetches the manifest by its verified digest and serves it if its bytes match. */
  private async serveVerified(ctx: Ctx, ref: string, url: string, v: Verdict): Promise<void> {
    const { req, res } = ctx;
    const digest = v.digest!;
    const cached = this.manifests.get(ctx.repo, digest, req.headers.accept);
    if (cached) return this.serveManifest(ctx, v, cached.contentType, cached.body);
    let got: Fetched;
    try {
      got = await this.fetchManifest(ctx.repo, digest, req.headers.accept);
    } catch (e) {
      return this.upstreamFailure(res, e as Error, `manifest ${ctx.repo}@${digest}`);
    }
    const { status, headers, body } = got;
    if (status >= 300 && status < 400) {
      // Relayed, a redirect would have the client fetch bytes nobody checked against the digest.
      return this.upstreamFailure(res, new UpstreamError(`the upstream answered ${status} (a redirect) for ${digest}; manifests are served only as bytes checked here`), `manifest ${ctx.repo}@${digest}`);
    }
    if (status !== 200) {
      // The signed digest is not (or not in an accepted form) upstream: relay the registry's answer.
      this.count(ctx.rule, 'upstream', String(status));
      res.writeHead(status, { ...DAPI, ...endToEnd(headers, ['www-authenticate', 'content-length']), 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const actual = ociDigest(body);
    const lengthOk = v.length === undefined || v.length === body.length;
    if (actual !== digest || !lengthOk) {
      const message = actual !== digest ? `upstream content for ${digest} hashes to ${actual}` : `upstream content for ${digest} is ${body.length} bytes, signed length is ${v.length}`;
      return this.refuse(ctx, ref, url, { ...v, ok: false, reason: 'digest-mismatch', message });
    }
    const contentType = headers['content-type'];
    this.manifests.set(ctx.repo, digest, req.headers.accept, contentType, body);
    return this.serveManifest(ctx, v, contentType, body);
  }

  private serveManifest(ctx: Ctx, v: Verdict, contentType: string | undefined, body: Buffer): void {
    this.count(ctx.rule, 'allowed', v.evidence.via ?? 'tag');
    ctx.res.writeHead(200, {
      ...DAPI,
      'Content-Type': contentType ?? 'application/vnd.oci.image.manifest.v1+json',
      'Content-Length': body.length,
      'Docker-Content-Digest': v.digest!,
      Etag: `"${v.digest!}"`,
    });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
  }

  /** GET a manifest by digest from the upstream, whole (bounded). */
  private async fetchManifest(repo: string, digest: string, accept: string | undefined): Promise<Fetched> {
    const got = await this.opts.upstream.getWhole({ path: `/v2/${repo}/manifests/${digest}`, headers: accept ? { accept } : {}, scope: `repository:${repo}:pull` }, MAX_MANIFEST_BYTES);
    if (got.status === 401) throw new UpstreamError('the upstream registry refused trustgate\'s credentials');
    return got;
  }

  /** Parsed JSON of a manifest the upstream holds under `digest`, checked against the digest. */
  private async manifestJson(repo: string, digest: string): Promise<Record<string, unknown> | undefined> {
    const got = await this.fetchManifest(repo, digest, ALL_MANIFEST_TYPES);
    // A failing upstream is not an answer about the digest (it must not become a cached denial).
    if (got.status >= 500) throw new UpstreamError(`the upstream answered ${got.status} for ${digest}`);
    if (got.status !== 200 || ociDigest(got.body) !== digest) return undefined;
    return parseObject(got.body);
  }

  /** Digests (and sizes) an index lists; empty for anything else. Cached: content-addressed. */
  private async childrenOf(repo: string, index: string): Promise<Map<string, number>> {
    const hit = this.children.get(index);
    if (hit) return hit;
    const doc = await this.manifestJson(repo, index);
    const kids = new Map<string, number>();
    if (doc && Array.isArray(doc.manifests)) {
      for (const d of doc.manifests as Array<{ digest?: unknown; size?: unknown }>) {
        if (typeof d?.digest === 'string') kids.set(d.digest, typeof d.size === 'number' ? d.size : -1);
      }
    }
    if (doc) this.children.set(index, kids);
    return kids;
  }

  /**
   * Whether a digest may be served: signed for a tag; else a child of a signed index; else an
   * artifact of a type the rule allows (signature, attestation, SBOM; never a runnable image)
   * whose `subject` may be served. Cached (with the depth: deeper, fewer subjects are followed).
   */
  private decideDigest(ctx: Ctx, digest: string, require: TargetRequirement, depth = 0): Promise<Verdict> {
    const { artifacts } = requirement(ctx.rule);
    return this.opts.cache.get(ctx.gun, `digest:${digest}|${reqKey(require)}|${artifacts}${depth ? `|d${depth}` : ''}`, async () => {
      const { verifier } = this.opts;
      const direct = await verifier.verifyDigest(ctx.gun, digest, require);
      if (direct.ok || direct.reason !== 'not-signed') return direct;
      let why: string | undefined;
      try {
        const signed = await verifier.signedDigests(ctx.gun, require);
        if (!signed.ok) return verifier.failure(ctx.gun, digest, signed);
        let n = 0;
        for (const [parent, t] of signed.digests) {
          if (++n > 256) break; // bounded work per decision
          const size = (await this.childrenOf(ctx.repo, parent)).get(digest);
          if (size === undefined) continue;
          const v = verifier.allow(ctx.gun, digest, t, signed.repo, { via: 'index', parent, tags: [t.name] });
          return { ...v, digest, ...(size >= 0 ? { length: size } : {}) };
        }
        if (depth < MAX_ARTIFACT_DEPTH) {
          const art = checkArtifact(await this.manifestJson(ctx.repo, digest), ctx.rule.artifactTypes);
          if (!art.ok) why = art.why;
          else if (!art.subject || !DIGEST_RE.test(art.subject)) why = 'it is an artifact without a subject digest';
          else {
            const parent = await this.decideDigest(ctx, art.subject, require, depth + 1);
            if (parent.ok) {
              const { length: _l, ...rest } = parent;
              return { ...rest, digest, evidence: { ...parent.evidence, reference: digest, via: 'referrer', parent: art.subject } };
            }
            if (parent.reason === 'unavailable') return parent;
            why = `its subject ${art.subject} is not served`;
          }
        }
      } catch (e) {
        return verifier.failure(ctx.gun, digest, fail('unavailable', `upstream registry unavailable: ${(e as Error).message}`));
      }
      return {
        ...direct,
        message: `${digest} is not signed for any tag in ${(require.roles ?? []).join(', ')}, not listed by a signed index, and not an artifact of a served digest${why ? ` (${why})` : ''}`,
      };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Push and sign

  private async pushManifest(ctx: Ctx, ref: string, url: string): Promise<void> {
    const { req, res, rule } = ctx;
    let body: Buffer;
    try {
      // Not Upstream.readBody: it destroys the request past the limit, and with it the socket
      // the 413 must go out on. This one drains the rest, so the client still sending reads it.
      body = await readRequestBody(req, MAX_MANIFEST_BYTES);
    } catch (e) {
      if (e instanceof MultipartError && e.kind === 'TOO_LARGE') return send(res, E.SIZE_INVALID, { limit: MAX_MANIFEST_BYTES }, undefined, { Connection: 'close' });
      return void res.destroy(); // the request broke off: nobody to answer
    }
    const skip = this.signSkipReason(ref, body, rule);
    if (!skip) {
      // Refused before anything is written upstream, or the tag would land there unsigned.
      const why = await this.opts.signer.refusal(ctx.gun, rule.signOnPush!, ctx.principal, { cosign: writesCosign(rule) });
      if (why) {
        this.denyPush(ctx.principal, ctx.gun, { reason: why, method: 'PUT', tag: ref, role: rule.signOnPush! });
        return send(res, E.DENIED, { reason: 'cannot-sign', repository: ctx.repo, tag: ref, role: rule.signOnPush! }, `the policy signs pushes to ${ctx.repo} into ${rule.signOnPush!}, and this token cannot: ${why}`);
      }
    }
    let up: IncomingMessage;
    try {
      up = await this.opts.upstream.request({ method: 'PUT', path: url, headers: endToEnd(req.headers, ['content-length']), data: body, scope: `repository:${ctx.repo}:pull,push` });
    } catch (e) {
      return this.upstreamFailure(res, e as Error, `PUT manifest ${ctx.repo}:${ref}`);
    }
    const headers = this.responseHeaders(req, up.headers);
    const upBody = await Upstream.readBody(up, 1024 * 1024).catch(() => Buffer.alloc(0));
    const relay = () => {
      res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': upBody.length });
      res.end(upBody);
    };
    if (up.statusCode !== 201) return relay();
    if (skip) {
      this.opts.metrics.signedPushes.inc({ result: 'skipped' });
      this.opts.log('debug', 'push not signed', { gun: ctx.gun, reference: ref, why: skip });
      return relay();
    }
    const digest = ociDigest(body);
    const role = rule.signOnPush!;
    const actor = { id: ctx.principal.id, name: ctx.principal.name };
    try {
      const upstreamDigest = up.headers['docker-content-digest'];
      if (upstreamDigest && upstreamDigest !== digest) throw new Error(`the upstream stored ${upstreamDigest}, the pushed bytes hash to ${digest}`);
      const r = await this.opts.signer.sign(ctx.gun, role, ref, digest, body.length, ctx.principal, writesCosign(rule) ? { cosign: { repo: ctx.repo } } : {});
      this.opts.metrics.signedPushes.inc({ result: 'signed' });
      this.opts.log('info', 'signed pushed tag', { gun: ctx.gun, tag: ref, digest, role, initialised: r.initialised, actor: actor.name });
      this.audit({ actor, action: 'proxy.sign', outcome: 'success', gun: ctx.gun, role, detail: { tag: ref, digest, length: body.length, initialised: r.initialised, ...(r.cosign ? { cosign: r.cosign.tag } : {}) } });
      // The cache holds verdicts of the old trust data; the trust 'change' event drops them too.
      this.opts.cache.invalidate(ctx.gun);
      return relay();
    } catch (e) {
      const message = (e as Error).message;
      this.opts.metrics.signedPushes.inc({ result: 'failed' });
      this.opts.log('error', 'signing a pushed tag failed', { gun: ctx.gun, tag: ref, digest, role, error: message });
      this.audit({ actor, action: 'proxy.sign', outcome: 'failure', gun: ctx.gun, role, detail: { tag: ref, digest, error: message } });
      return send(
        res,
        E.UNKNOWN,
        { reason: 'signing-failed', repository: ctx.repo, tag: ref, digest, role, error: message },
        `the manifest was stored upstream as ${digest} but signing it into ${role} failed: ${message}`,
      );
    }
  }

  /** Why a push is not signed, or undefined when it is. */
  private signSkipReason(ref: string, body: Buffer, rule: Rule): string | undefined {
    if (!rule.signOnPush) return 'the policy signs no pushes here';
    if (DIGEST_RE.test(ref)) return 'pushed by digest';
    if (SIGNATURE_TAG.test(ref)) return 'a signature artifact';
    try {
      const doc = JSON.parse(body.toString('utf8')) as { subject?: unknown };
      if (doc && typeof doc === 'object' && doc.subject) return 'a referrer (has a subject)';
    } catch {
      // the upstream accepted it; not JSON we understand, sign it as given
    }
    return undefined;
  }

  /** A push refused for its credentials or its signing rights, audited with the actor (refusals of one kind are windowed when the sink can). */
  private denyPush(actor: { id: string; name: string }, gun: string | undefined, detail: Record<string, string>): void {
    this.opts.log('debug', 'push refused', { actor: actor.name, gun, ...detail });
    const entry = { actor: { id: actor.id, name: actor.name }, action: 'proxy.push', outcome: 'denied' as const, ...(gun !== undefined ? { gun } : {}), detail };
    const sink = this.opts.audit;
    if (!sink?.appendDenial) return this.audit(entry);
    try {
      sink.appendDenial(entry, { reason: detail.reason ?? '', ...(gun !== undefined ? { gun } : {}) });
    } catch (e) {
      this.opts.log('error', 'audit log write failed', { error: (e as Error).message });
    }
  }

  private audit(entry: Parameters<AuditSink['append']>[0]): void {
    if (!this.opts.audit) return;
    try {
      this.opts.audit.append(entry);
    } catch (e) {
      this.opts.log('error', 'audit log write failed', { error: (e as Error).message });
    }
  }
}

const reqKey = (r: TargetRequirement) => JSON.stringify([r.roles ?? [], r.signers ?? [], r.threshold ?? 1]);

/** A rule's pull requirement, its cache-key form and its artifact types' key, worked out once per rule of a loaded policy. */
const requirements = new WeakMap<Rule, { require: TargetRequirement; key: string; artifacts: string }>();
function requirement(rule: Rule): { require: TargetRequirement; key: string; artifacts: string } {
  let r = requirements.get(rule);
  if (!r) {
    const require = requirementFor(rule);
    const artifacts = createHash('sha256').update(JSON.stringify([...rule.artifactTypes].sort())).digest('hex').slice(0, 16);
    requirements.set(rule, (r = { require, key: reqKey(require), artifacts }));
  }
  return r;
}

/** A JSON object, or undefined for anything else. */
function parseObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const doc = JSON.parse(body.toString('utf8')) as unknown;
    return doc && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
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

/** Whether pulls under `rule` need a cosign signature, so sign-on-push writes one too. */
const writesCosign = (rule: Rule) => rule.signatures === 'cosign' || rule.signatures === 'both';
