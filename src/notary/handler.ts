// The Notary v1 server HTTP API (spec §2) over node's plain request/response, so the hot GET
// paths skip framework overhead. Each route is a thin adapter: parse, call the TrustService,
// answer with notary's exact status codes, bodies and cache headers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MalformedMetadataError, TufValidationError } from '../core/tuf/errors.js';
import { isValidGun } from '../core/tuf/gun.js';
import { parseEnvelope } from '../core/tuf/metadata.js';
import { isValidRole } from '../core/tuf/roles.js';
import { formatRfc3339 } from '../core/tuf/time.js';
import { JSON_CONTENT_TYPE, NotaryErrors as E, sendError } from '../http/errcode.js';
import { StoreUnavailableError, VersionConflictError, type StoredFile } from '../storage/types.js';
import { KeyStoreUnavailableError } from '../keystore/types.js';
import type { AuditNote, TrustService } from '../trust/service.js';
import type { Metrics, Operation } from '../observability/metrics.js';
import { MultipartError, readMultipart } from './multipart.js';
import { NOTARY_ROUTES, type NotaryRoute } from './routes.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';

export interface NotaryOptions {
  maxBodyBytes: number;
  gunPrefixes: string[];
  cacheMaxAge: { current: number; consistent: number };
  /**
   * Authorisation hook: resolves true to go on; otherwise it has answered (401/403) itself.
   * `route` is the matched NOTARY_ROUTES entry, which declares the access it needs.
   */
  authorize?: (req: IncomingMessage, res: ServerResponse, gun: string | undefined, route: NotaryRoute) => Promise<boolean>;
  /** Reads (permission `read`) skip `authorize`, so the hot GET path stays synchronous. */
  anonymousReads?: boolean;
  /** Hears of every write that succeeded (for the audit log). */
  /** Audits a write; the answer waits for it (it never rejects). */
  onWrite?: (req: IncomingMessage, w: NotaryWrite) => void | Promise<void>;
  /** Who is writing, for the audit entry a publish or delete journals with its commit. */
  auditNote?: (req: IncomingMessage, action: NotaryWrite['action']) => AuditNote;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** A Notary API write that succeeded. */
export interface NotaryWrite {
  action: 'notary.publish' | 'notary.delete' | 'notary.key.create' | 'notary.key.rotate';
  gun: string;
  role?: string;
  keyId?: string;
  /** Publishes: the files stored, `role@version`. */
  files?: string[];
  /** The journal id of the commit's audit entry (TrustService.acknowledge it once appended). */
  journal?: string;
}

const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE']);
const TUF = '/_trust/tuf/';
const FEED = '/_trust/changefeed';

/** Go's http.TimeFormat with the stored zone (UTC), as notary writes Last-Modified. */
const lastModified = (d: Date) => d.toUTCString().replace(/GMT$/, 'UTC');

const TEXT_PLAIN = 'text/plain; charset=utf-8';

/** A 200 answer. Notary sets no Content-Type on metadata, keys or changefeeds, so Go sniffs text/plain. */
function sendBytes(res: ServerResponse, body: Buffer | string): void {
  const length = Buffer.byteLength(body);
  res.writeHead(200, length > 0 ? ['Content-Length', String(length), 'Content-Type', TEXT_PLAIN] : ['Content-Length', '0']);
  res.end(body);
}

/** A whole body with its length, as notary sends health and metrics (writeHead alone would chunk it). */
function sendWithLength(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, ['Content-Type', type, 'Content-Length', String(Buffer.byteLength(body))]);
  res.end(body);
}

/** A metadata file's 200 answer, ready to write: its bytes and raw header pairs. */
interface ReadyFile {
  createdMs: number;
  bytes: Buffer;
  /**
   * The same bytes as a latin1 string (a byte per character, so exactly the same bytes go out),
   * for small files: node writes a string body and the headers with one write() instead of a
   * two-buffer writev, which saves a few µs of a GET's ~60. Large files go out as the buffer,
   * uncopied.
   */
  text: string | undefined;
  /** By cache policy: [current, consistent]. */
  headers: [string[] | undefined, string[] | undefined];
}

/** How many files' answers, and how many of their bytes, the handler keeps ready. */
const READY_MAX_FILES = 1024;
const READY_MAX_BYTES = 64 * 1024 * 1024;
/** Files up to this size are also kept as a string (ReadyFile.text). */
const SINGLE_WRITE_MAX_BYTES = 16 * 1024;

/**
 * The raw request path (origin form, or the path of an absolute-form target), undecoded and
 * without query or fragment.
 */
function rawPath(target: string): string {
  let end = target.length;
  const q = target.indexOf('?');
  if (q >= 0) end = q;
  const h = target.indexOf('#');
  if (h >= 0 && h < end) end = h;
  let p = end === target.length ? target : target.slice(0, end);
  if (p.charCodeAt(0) !== 47 /* '/' */) {
    const abs = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(p);
    if (abs) p = p.slice(abs[0].length);
  }
  return p === '' ? '/' : p;
}

/** Go's strconv.ParseInt(s, 10, 32) and its error text, which clients may show. */
function parseInt32(s: string): number | string {
  if (!/^[+-]?\d+$/.test(s)) return `strconv.ParseInt: parsing ${JSON.stringify(s)}: invalid syntax`;
  const n = Number(s);
  if (n < -2147483648 || n > 2147483647) return `strconv.ParseInt: parsing ${JSON.stringify(s)}: value out of range`;
  return n;
}

export function createNotaryHandler(trust: TrustService, metrics: Metrics, opts: NotaryOptions) {
  const log = opts.log ?? (() => undefined);
  const notFound = (res: ServerResponse, withDetail = true) => sendError(res, E.METADATA_NOT_FOUND, withDetail ? {} : undefined);
  const authorizeHook = opts.authorize;
  /** The hook a route passes through, or undefined when it needs none. */
  const gateOf = (r: NotaryRoute) =>
    r.permission === 'none' || (r.permission === 'read' && opts.anonymousReads) ? undefined : authorizeHook;
  const wrote = (req: IncomingMessage, w: NotaryWrite) => opts.onWrite?.(req, w);

  // GUN checks (syntax and prefixes) by name, remembered for the GUNs seen last.
  const gunChecks = new Map<string, boolean>();
  const gunAllowed = (gun: string): boolean => {
    let ok = gunChecks.get(gun);
    if (ok === undefined) {
      ok = isValidGun(gun) && (opts.gunPrefixes.length === 0 || opts.gunPrefixes.some((p) => gun.startsWith(p)));
      if (gunChecks.size >= 4096) gunChecks.clear();
      gunChecks.set(gun, ok);
    }
    return ok;
  };

  const cacheControl = (maxAge: number, current: boolean): string[] =>
    maxAge === 0
      ? ['Cache-Control', 'max-age=0, no-cache, no-store', 'Pragma', 'no-cache']
      : ['Cache-Control', `public, max-age=${maxAge}, s-maxage=${maxAge}${current ? ', must-revalidate' : ''}`];
  const currentCache = cacheControl(opts.cacheMaxAge.current, true);
  const consistentCache = cacheControl(opts.cacheMaxAge.consistent, false);

  // Ready answers by sha256: a stored file's bytes never change, and its Last-Modified is its
  // row's time (checked, since the same bytes may be stored at other times, e.g. in another GUN).
  const ready = new Map<string, ReadyFile>();
  let readyBytes = 0;
  /** What an entry holds: its bytes, and as many again for the string of a small file. */
  const size = (r: ReadyFile) => r.bytes.length + (r.text?.length ?? 0);
  function readyFile(f: StoredFile): ReadyFile {
    const createdMs = f.createdAt.getTime();
    let r = ready.get(f.sha256);
    if (r && r.createdMs === createdMs && r.bytes.length === f.bytes.length) return r;
    if (r) {
      ready.delete(f.sha256);
      readyBytes -= size(r);
    }
    const text = f.bytes.length <= SINGLE_WRITE_MAX_BYTES ? f.bytes.toString('latin1') : undefined;
    r = { createdMs, bytes: f.bytes, text, headers: [undefined, undefined] };
    if (f.bytes.length <= READY_MAX_BYTES / 4) {
      while (ready.size > 0 && (ready.size >= READY_MAX_FILES || readyBytes + size(r) > READY_MAX_BYTES)) {
        const [oldest, old] = ready.entries().next().value!;
        ready.delete(oldest);
        readyBytes -= size(old);
      }
      ready.set(f.sha256, r);
      readyBytes += size(r);
    }
    return r;
  }

  function serveFile(res: ServerResponse, f: StoredFile | undefined, current: boolean): void {
    if (!f) return notFound(res);
    const r = readyFile(f);
    const slot = current ? 0 : 1;
    let headers = r.headers[slot];
    if (!headers) {
      const length = r.bytes.length;
      headers = r.headers[slot] = [
        ...(current ? currentCache : consistentCache),
        'Last-Modified',
        lastModified(f.createdAt),
        'Content-Length',
        String(length),
        ...(length > 0 ? ['Content-Type', TEXT_PLAIN] : []),
      ];
    }
    res.writeHead(200, headers);
    if (r.text !== undefined) res.end(r.text, 'latin1');
    else res.end(r.bytes);
  }

  async function publish(req: IncomingMessage, res: ServerResponse, gun: string): Promise<void> {
    let parts;
    try {
      parts = await readMultipart(req, opts.maxBodyBytes);
    } catch (e) {
      if (!(e instanceof MultipartError)) throw e;
      if (e.kind === 'TOO_LARGE')
        return sendError(
          res,
          E.TOO_LARGE,
          undefined,
          { Connection: 'close' },
          `The body of your request is larger than this server accepts (${opts.maxBodyBytes} bytes).`,
        );
      return sendError(res, E.MALFORMED_UPLOAD);
    }
    const uploads = new Map<string, Buffer>();
    for (const p of parts) {
      const role = p.filename.replace(/\.json$/, '');
      if (role === '') return sendError(res, E.NO_FILENAME);
      if (!isValidRole(role)) return sendError(res, E.INVALID_ROLE, role);
      try {
        parseEnvelope(p.bytes);
      } catch (e) {
        if (e instanceof MalformedMetadataError) return sendError(res, E.MALFORMED_JSON);
        throw e;
      }
      if (role === 'timestamp') continue; // the server always makes the timestamp itself
      uploads.delete(role); // the last part for a role wins
      uploads.set(role, p.bytes);
    }
    try {
      const note = opts.auditNote?.(req, 'notary.publish');
      const files = await trust.publish(gun, uploads, note);
      const stored = files.map((f) => `${f.role}@${f.version}`);
      log('info', 'published', { gun, files: stored });
      await wrote(req, { action: 'notary.publish', gun, files: stored, ...(note ? { journal: note.id } : {}) });
      sendBytes(res, '');
    } catch (e) {
      if (e instanceof TufValidationError) return sendError(res, E.INVALID_UPDATE, e.toDetail());
      if (e instanceof VersionConflictError) return sendError(res, E.VERSION, {});
      if (e instanceof MalformedMetadataError) return sendError(res, E.MALFORMED_JSON);
      log('error', 'publish failed', { gun, error: (e as Error).message });
      return sendError(res, e instanceof StoreUnavailableError || e instanceof KeyStoreUnavailableError ? E.UNAVAILABLE : E.UPDATING);
    }
  }

  async function changefeed(req: IncomingMessage, res: ServerResponse, gun: string | undefined): Promise<void> {
    // Only here is the query needed; the path was taken from the raw target already. The query is
    // cut from the raw target too: new URL() over an absolute-form target throws for a host it
    // cannot parse (`GET http://[/v2/_trust/changefeed`), which answered 500.
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const params = new URLSearchParams(q < 0 ? '' : target.slice(q + 1).split('#', 1)[0]);
    const repeated = repeatedParam(target);
    if (repeated !== undefined) return sendError(res, E.INVALID_PARAMETERS, repeatedParamMessage(repeated));
    const rec = parseInt32(params.get('records') ?? '');
    if (typeof rec === 'string') return sendError(res, E.INVALID_PARAMETERS, `invalid records parameter: ${rec}`);
    // change_id: Go's strconv.ParseInt(id, 10, 32); any negative id means "from the newest, backwards".
    const cidText = params.get('change_id') ?? '';
    const cid = cidText === '' ? 0 : parseInt32(cidText);
    if (typeof cid === 'string') return sendError(res, E.INVALID_PARAMETERS, {});
    const records = rec === 0 ? 100 : Math.max(-1000, Math.min(1000, rec));
    const changes = await trust.changes({ ...(gun !== undefined ? { gun } : {}), changeId: cid < 0 ? -1 : cid, records });
    const body = JSON.stringify({
      count: changes.length,
      records: changes.map((c) => ({
        ID: String(c.id),
        CreatedAt: formatRfc3339(c.createdAt.getTime()), // Go's RFC3339Nano: trailing zeros trimmed
        GUN: c.gun,
        Version: c.version,
        SHA256: c.sha256,
        Category: c.category,
      })),
    });
    sendBytes(res, body);
  }

  /** GET `role.json`: the hot path's store read, awaited once. */
  async function current(res: ServerResponse, gun: string, role: string): Promise<void> {
    const start = performance.now();
    try {
      serveFile(res, await trust.current(gun, role), true);
    } finally {
      metrics.observe('GetRole', start);
    }
  }

  /** GET (`GetKey`, made on first use) or POST (`RotateKey`) a server-held snapshot or timestamp key. */
  async function serverKey(
    req: IncomingMessage,
    res: ServerResponse,
    gun: string,
    role: 'snapshot' | 'timestamp',
    op: 'GetKey' | 'RotateKey',
  ): Promise<void> {
    const start = performance.now();
    try {
      const got = op === 'GetKey' ? await trust.serverKeyOrNew(gun, role) : { key: await trust.rotateServerKey(gun, role), created: true };
      const rec = got.key;
      if (op === 'RotateKey') log('info', 'server key created', { gun, role, keyId: rec.id });
      if (got.created) await wrote(req, { action: op === 'GetKey' ? 'notary.key.create' : 'notary.key.rotate', gun, role, keyId: rec.id });
      return sendBytes(res, JSON.stringify(rec.public));
    } finally {
      metrics.observe(op, start);
    }
  }

  async function timed(op: Operation, fn: () => Promise<void>): Promise<void> {
    const start = performance.now();
    try {
      await fn();
    } finally {
      metrics.observe(op, start);
    }
  }

  /** An operation, once its route matched and let the request through; `m`: the file pattern's groups. */
  type Run = (
    req: IncomingMessage,
    res: ServerResponse,
    gun: string | undefined,
    m: readonly (string | undefined)[] | null,
  ) => Promise<void>;
  const runs: Record<NotaryRoute['operation'], Run> = {
    async Health(_req, res) {
      try {
        await trust.store.ping();
        sendWithLength(res, 200, JSON_CONTENT_TYPE, '{}');
      } catch (e) {
        // Anyone may ask: the failed check is named, its error text (hosts, paths) goes to the log.
        log('error', 'health check failed: storage unavailable', { error: (e as Error).message });
        sendWithLength(res, 503, JSON_CONTENT_TYPE, JSON.stringify({ storage: 'unavailable' }));
      }
    },
    async Metrics(_req, res) {
      const body = await metrics.text(); // in cluster mode: all workers' metrics, merged
      sendWithLength(res, 200, metrics.registry.contentType, body);
    },
    async Ping(_req, res) {
      sendBytes(res, '{}');
    },
    Changefeed: (req, res, gun) => timed('Changefeed', () => changefeed(req, res, gun)),
    UpdateTUF: (req, res, gun) => timed('UpdateTUF', () => publish(req, res, gun!)),
    DeleteTUF: (req, res, gun) =>
      timed('DeleteTUF', async () => {
        const note = opts.auditNote?.(req, 'notary.delete');
        await trust.deleteGun(gun!, note);
        log('info', 'deleted trust data', { gun });
        await wrote(req, { action: 'notary.delete', gun: gun!, ...(note ? { journal: note.id } : {}) });
        sendBytes(res, '');
      }),
    async GetRoleByHash(_req, res, gun, m) {
      const role = m![1]!;
      const sum = m![2]!;
      const start = performance.now();
      try {
        serveFile(res, sum.length === 64 ? await trust.byChecksum(gun!, role, sum.toLowerCase()) : undefined, false);
      } finally {
        metrics.observe('GetRoleByHash', start);
      }
    },
    async GetRoleByVersion(_req, res, gun, m) {
      const version = Number(m![1]);
      const start = performance.now();
      try {
        serveFile(res, Number.isSafeInteger(version) ? await trust.byVersion(gun!, m![2]!, version) : undefined, false);
      } finally {
        metrics.observe('GetRoleByVersion', start);
      }
    },
    GetRole: (_req, res, gun, m) => current(res, gun!, m![1]!),
    GetKey: (req, res, gun, m) => serverKey(req, res, gun!, m![1] as 'snapshot' | 'timestamp', 'GetKey'),
    RotateKey: (req, res, gun, m) => serverKey(req, res, gun!, m![1] as 'snapshot' | 'timestamp', 'RotateKey'),
  };

  /** A route with the hook it passes through (none: let through) and what it runs. */
  interface Entry {
    route: NotaryRoute;
    gate: NotaryOptions['authorize'];
    run: Run;
  }
  const entries: Entry[] = NOTARY_ROUTES.map((route) => ({ route, gate: gateOf(route), run: runs[route.operation] }));
  const fixedEntries = entries.filter((e) => !e.route.path.includes('{'));
  const feedEntries = entries.filter((e) => e.route.path === `/v2/{gun}${FEED}`);
  const tufEntries = entries.filter((e) => e.route.file !== undefined);
  const getRole = entries.find((e) => e.route.operation === 'GetRole')!;

  /** The entry of `list` for `method` (and `path`, when given). */
  function entryFor(list: Entry[], method: string, path?: string): Entry | undefined {
    for (const e of list) if ((path === undefined || e.route.path === path) && e.route.methods.includes(method)) return e;
    return undefined;
  }

  async function serve(
    e: Entry,
    req: IncomingMessage,
    res: ServerResponse,
    gun: string | undefined,
    m: readonly (string | undefined)[] | null,
  ): Promise<void> {
    if (e.gate && !(await e.gate(req, res, gun, e.route))) return;
    await e.run(req, res, gun, m);
  }

  /** Everything but the synchronous answers of the hot path (GetRole for a file in memory). */
  async function route(req: IncomingMessage, res: ServerResponse, method: string, path: string): Promise<boolean> {
    const fixed = entryFor(fixedEntries, method, path);
    if (!path.startsWith('/v2/')) {
      if (!fixed) return false;
      await serve(fixed, req, res, undefined, null);
      return true;
    }
    // Only the Notary paths: other /v2/ paths (the registry API, where PATCH uploads blobs) belong to others.
    const notaryPath = path === '/v2/' || path.includes('/_trust/');
    if (!notaryPath) return false;
    if (!KNOWN_METHODS.has(method)) {
      res.writeHead(405, { 'Content-Length': 0 }).end();
      return true;
    }
    try {
      if (fixed) {
        await serve(fixed, req, res, undefined, null);
        return true;
      }
      if (path === '/v2/') return false;
      const cf = path.endsWith(FEED) ? path.slice(4, -FEED.length) : undefined;
      const feed = cf === undefined ? undefined : entryFor(feedEntries, method);
      if (feed) {
        if (!gunAllowed(cf!)) return (notFound(res, false), true);
        await serve(feed, req, res, cf, null);
        return true;
      }
      // A valid GUN has no `_trust` segment (segments start with a letter or digit), so the first
      // `/_trust/tuf/` ends it even when a delegation name contains `_trust/tuf` (targets/_trust/tuf/x).
      const at = path.indexOf(TUF);
      if (at < 4) return false; // not a trust path: the registry proxy or the management API may own it
      const gun = path.slice(4, at);
      const file = path.slice(at + TUF.length);
      if (!gunAllowed(gun)) {
        if (file === '' && method === 'POST') {
          const detail = isValidGun(gun) ? `Require GUNs with prefix: [${opts.gunPrefixes.join(' ')}]` : 'invalid GUN';
          req.resume();
          sendError(res, E.INVALID_GUN, detail);
        } else notFound(res, false);
        return true;
      }
      for (const e of tufEntries) {
        if (!e.route.methods.includes(method)) continue;
        const m = e.route.file!.exec(file);
        if (m) {
          await serve(e, req, res, gun, m);
          return true;
        }
      }
      notFound(res, false);
      return true;
    } catch (e) {
      failed(res, method, path, e);
      return true;
    }
  }

  function failed(res: ServerResponse, method: string, path: string, e: unknown): void {
    const down = e instanceof StoreUnavailableError || e instanceof KeyStoreUnavailableError;
    // An outage fails every request alike: a warning each, not an error.
    log(down ? 'warn' : 'error', 'request failed', { method, path, error: (e as Error).message });
    if (!res.headersSent) sendError(res, down ? E.UNAVAILABLE : E.UNKNOWN);
    else res.destroy();
  }

  /**
   * Handles a request if it is part of the Notary API: true (at once, or as a promise) when it
   * answered, false to let others try.
   */
  return function handle(req: IncomingMessage, res: ServerResponse): boolean | Promise<boolean> {
    const method = req.method ?? 'GET';
    const raw = rawPath(req.url ?? '/');
    let path = raw;
    // The raw request path: WHATWG URL parsing would resolve `..` and `%2e%2e` segments, so
    // `/v2/a/../b/_trust/tuf/` would act on GUN `b`. Such GUNs must be refused instead.
    if (raw.includes('%')) {
      try {
        path = decodeURIComponent(raw);
      } catch {
        // Only Notary paths get notary's 404: `/api/v1/repositories/%ZZ` is the management API's
        // to refuse (it answered {"errors":[METADATA_NOT_FOUND]}, not the API's error shape).
        if (!raw.startsWith('/v2/')) return false;
        sendError(res, E.METADATA_NOT_FOUND);
        return Promise.resolve(true);
      }
    }
    // The hot path: the GetRole route for the top-level roles, matched without regexes.
    if (method === 'GET' && path.startsWith('/v2/') && path.endsWith('.json')) {
      const at = path.indexOf(TUF);
      if (at >= 4) {
        const file = path.slice(at + TUF.length);
        const role =
          file === 'targets.json'
            ? 'targets'
            : file === 'timestamp.json'
              ? 'timestamp'
              : file === 'snapshot.json'
                ? 'snapshot'
                : file === 'root.json'
                  ? 'root'
                  : undefined;
        if (role !== undefined) {
          const gun = path.slice(4, at);
          if (!gunAllowed(gun)) {
            notFound(res, false);
            return Promise.resolve(true);
          }
          // Without an authorisation hook for reads, a file already in memory is answered synchronously.
          const known = getRole.gate ? null : trust.currentNow(gun, role);
          if (known) {
            const start = performance.now();
            serveFile(res, known, true);
            metrics.observe('GetRole', start);
            return true;
          }
          return (getRole.gate ? serve(getRole, req, res, gun, [file, role]) : current(res, gun, role)).then(
            () => true,
            (e: unknown) => (failed(res, method, path, e), true),
          );
        }
      }
    }
    return route(req, res, method, path);
  };
}
