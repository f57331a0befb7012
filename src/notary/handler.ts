// The Notary v1 server HTTP API (spec §2) over node's plain request/response, so the hot GET
// paths skip framework overhead. Each route is a thin adapter: parse, call the TrustService,
// answer with notary's exact status codes, bodies and cache headers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MalformedMetadataError, TufValidationError } from '../core/tuf/errors.js';
import { isValidGun } from '../core/tuf/gun.js';
import { parseEnvelope } from '../core/tuf/metadata.js';
import { isValidRole } from '../core/tuf/roles.js';
import { formatRfc3339 } from '../core/tuf/time.js';
import { NotaryErrors as E, sendError } from '../http/errcode.js';
import { VersionConflictError, type StoredFile } from '../storage/types.js';
import type { TrustService } from '../trust/service.js';
import type { Metrics, Operation } from './metrics.js';
import { MultipartError, readMultipart } from './multipart.js';

export interface NotaryOptions {
  maxBodyBytes: number;
  gunPrefixes: string[];
  cacheMaxAge: { current: number; consistent: number };
  /** Authorisation hook: resolves true to go on; otherwise it has answered (401/403) itself. */
  authorize?: (req: IncomingMessage, res: ServerResponse, gun: string | undefined, actions: string[]) => Promise<boolean>;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

const ROLE_PATTERN = '(?:root|snapshot|timestamp|targets(?:/[^/\\s]+)*)';
const BY_CHECKSUM = new RegExp(`^(${ROLE_PATTERN})\\.([0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})\\.json$`);
const BY_VERSION = new RegExp(`^([1-9]*[0-9]+)\\.(${ROLE_PATTERN})\\.json$`);
const CURRENT = new RegExp(`^(${ROLE_PATTERN})\\.json$`);
const KEY = /^(snapshot|timestamp)\.key$/;
const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE']);

/** Go's http.TimeFormat with the stored zone (UTC), as notary writes Last-Modified. */
const lastModified = (d: Date) => d.toUTCString().replace(/GMT$/, 'UTC');

function cacheHeaders(maxAge: number, current: boolean, modified: Date): Record<string, string> {
  if (maxAge === 0) return { 'Cache-Control': 'max-age=0, no-cache, no-store', Pragma: 'no-cache', 'Last-Modified': lastModified(modified) };
  const cc = current ? `public, max-age=${maxAge}, s-maxage=${maxAge}, must-revalidate` : `public, max-age=${maxAge}, s-maxage=${maxAge}`;
  return { 'Cache-Control': cc, 'Last-Modified': lastModified(modified) };
}

/** A 200 answer. Notary sets no Content-Type on metadata, keys or changefeeds, so Go sniffs text/plain. */
function sendBytes(res: ServerResponse, body: Buffer | string, headers: Record<string, string | number> = {}): void {
  const type = Buffer.byteLength(body) > 0 ? { 'Content-Type': 'text/plain; charset=utf-8' } : {};
  res.writeHead(200, { ...type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** The path of a request target as sent (origin form, or the path of an absolute-form target), undecoded. */
function rawPath(target: string): string {
  const noQuery = target.split(/[?#]/, 1)[0]!;
  const abs = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(noQuery);
  const p = abs ? noQuery.slice(abs[0].length) : noQuery;
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
  const gunAllowed = (gun: string) => opts.gunPrefixes.length === 0 || opts.gunPrefixes.some((p) => gun.startsWith(p));
  const authorize = async (req: IncomingMessage, res: ServerResponse, gun: string | undefined, actions: string[]) =>
    opts.authorize ? opts.authorize(req, res, gun, actions) : true;

  async function timed(op: Operation, fn: () => Promise<void>): Promise<void> {
    const start = process.hrtime.bigint();
    try {
      await fn();
    } finally {
      metrics.observe(op, start);
    }
  }

  function serveFile(res: ServerResponse, f: StoredFile | undefined, current: boolean): void {
    if (!f) return notFound(res);
    const maxAge = current ? opts.cacheMaxAge.current : opts.cacheMaxAge.consistent;
    sendBytes(res, f.bytes, cacheHeaders(maxAge, current, f.createdAt));
  }

  async function publish(req: IncomingMessage, res: ServerResponse, gun: string): Promise<void> {
    let parts;
    try {
      parts = await readMultipart(req, opts.maxBodyBytes);
    } catch (e) {
      if (!(e instanceof MultipartError)) throw e;
      if (e.kind === 'TOO_LARGE') return sendError(res, E.TOO_LARGE, undefined, { Connection: 'close' }, `The body of your request is larger than this server accepts (${opts.maxBodyBytes} bytes).`);
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
      const files = await trust.publish(gun, uploads);
      log('info', 'published', { gun, files: files.map((f) => `${f.role}@${f.version}`) });
      sendBytes(res, '');
    } catch (e) {
      if (e instanceof TufValidationError) return sendError(res, E.INVALID_UPDATE, e.toDetail());
      if (e instanceof VersionConflictError) return sendError(res, E.VERSION, {});
      if (e instanceof MalformedMetadataError) return sendError(res, E.MALFORMED_JSON);
      log('error', 'publish failed', { gun, error: (e as Error).message });
      return sendError(res, E.UPDATING);
    }
  }

  async function changefeed(req: IncomingMessage, res: ServerResponse, url: URL, gun: string | undefined): Promise<void> {
    const rec = parseInt32(url.searchParams.get('records') ?? '');
    if (typeof rec === 'string') return sendError(res, E.INVALID_PARAMETERS, `invalid records parameter: ${rec}`);
    // change_id: Go's strconv.ParseInt(id, 10, 32); any negative id means "from the newest, backwards".
    const cidText = url.searchParams.get('change_id') ?? '';
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

  async function tufFile(req: IncomingMessage, res: ServerResponse, gun: string, file: string, method: string): Promise<void> {
    let m: RegExpExecArray | null;
    if (method === 'GET' && (m = BY_CHECKSUM.exec(file))) {
      if (!(await authorize(req, res, gun, ['pull']))) return;
      const [, role, sum] = m;
      return timed('GetRoleByHash', async () => serveFile(res, sum!.length === 64 ? await trust.byChecksum(gun, role!, sum!.toLowerCase()) : undefined, false));
    }
    if (method === 'GET' && (m = BY_VERSION.exec(file))) {
      if (!(await authorize(req, res, gun, ['pull']))) return;
      const version = Number(m[1]);
      return timed('GetRoleByVersion', async () => serveFile(res, Number.isSafeInteger(version) ? await trust.byVersion(gun, m![2]!, version) : undefined, false));
    }
    if (method === 'GET' && (m = CURRENT.exec(file))) {
      if (!(await authorize(req, res, gun, ['pull']))) return;
      return timed('GetRole', async () => serveFile(res, await trust.current(gun, m![1]!), true));
    }
    if ((m = KEY.exec(file)) && (method === 'GET' || method === 'POST')) {
      if (!(await authorize(req, res, gun, method === 'GET' ? ['push', 'pull'] : ['*']))) return;
      const role = m[1] as 'snapshot' | 'timestamp';
      return timed(method === 'GET' ? 'GetKey' : 'RotateKey', async () => {
        const rec = method === 'GET' ? await trust.serverKey(gun, role) : await trust.rotateServerKey(gun, role);
        if (method === 'POST') log('info', 'server key created', { gun, role, keyId: rec.id });
        sendBytes(res, JSON.stringify(rec.public));
      });
    }
    return notFound(res, false);
  }

  /** Handles a request if it is part of the Notary API; resolves false to let others try. */
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://x');
    let path: string;
    try {
      // The raw request path: WHATWG URL parsing would resolve `..` and `%2e%2e` segments, so
      // `/v2/a/../b/_trust/tuf/` would act on GUN `b`. Such GUNs must be refused instead.
      path = decodeURIComponent(rawPath(req.url ?? '/'));
    } catch {
      sendError(res, E.METADATA_NOT_FOUND);
      return true;
    }
    if (path === '/_notary_server/health' && method === 'GET') {
      try {
        await trust.store.ping();
        res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' }).end('{}');
      } catch (e) {
        res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8' }).end(JSON.stringify({ storage: (e as Error).message }));
      }
      return true;
    }
    if (path === '/metrics' && method === 'GET') {
      const body = await metrics.registry.metrics();
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body);
      return true;
    }
    if (!path.startsWith('/v2/')) return false;
    // Only the Notary paths: other /v2/ paths (the registry API, where PATCH uploads blobs) belong to others.
    const notaryPath = path === '/v2/' || path.includes('/_trust/');
    if (!notaryPath) return false;
    if (!KNOWN_METHODS.has(method)) {
      res.writeHead(405, { 'Content-Length': 0 }).end();
      return true;
    }
    try {
      if (path === '/v2/') {
        if (method !== 'GET') return false;
        if (!(await authorize(req, res, undefined, ['catalog']))) return true;
        sendBytes(res, '{}');
        return true;
      }
      if (path === '/v2/_trust/changefeed' && method === 'GET') {
        if (!(await authorize(req, res, undefined, ['catalog']))) return true;
        await timed('Changefeed', () => changefeed(req, res, url, undefined));
        return true;
      }
      const cf = path.endsWith('/_trust/changefeed') ? path.slice(4, -'/_trust/changefeed'.length) : undefined;
      if (cf !== undefined && method === 'GET') {
        if (!isValidGun(cf) || !gunAllowed(cf)) return notFound(res, false), true;
        if (!(await authorize(req, res, cf, ['pull']))) return true;
        await timed('Changefeed', () => changefeed(req, res, url, cf));
        return true;
      }
      // A valid GUN has no `_trust` segment (segments start with a letter or digit), so the first
      // `/_trust/tuf/` ends it even when a delegation name contains `_trust/tuf` (targets/_trust/tuf/x).
      const at = path.indexOf('/_trust/tuf/');
      if (at < 4) return false; // not a trust path: the registry proxy or the management API may own it
      const gun = path.slice(4, at);
      const file = path.slice(at + '/_trust/tuf/'.length);
      if (!isValidGun(gun) || !gunAllowed(gun)) {
        if (file === '' && method === 'POST') {
          const detail = isValidGun(gun) ? `Require GUNs with prefix: [${opts.gunPrefixes.join(' ')}]` : 'invalid GUN';
          req.resume();
          sendError(res, E.INVALID_GUN, detail);
        } else notFound(res, false);
        return true;
      }
      if (file === '') {
        if (method === 'POST') {
          if (!(await authorize(req, res, gun, ['push', 'pull']))) return true;
          await timed('UpdateTUF', () => publish(req, res, gun));
        } else if (method === 'DELETE') {
          if (!(await authorize(req, res, gun, ['*']))) return true;
          await timed('DeleteTUF', async () => {
            await trust.deleteGun(gun);
            log('info', 'deleted trust data', { gun });
            sendBytes(res, '');
          });
        } else notFound(res, false);
        return true;
      }
      await tufFile(req, res, gun, file, method);
      return true;
    } catch (e) {
      log('error', 'request failed', { method, path, error: (e as Error).message });
      if (!res.headersSent) sendError(res, E.UNKNOWN);
      else res.destroy();
      return true;
    }
  };
}
