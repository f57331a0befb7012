// The OCI 1.1 referrers API, answered by the proxy for a subject it would serve: listed from the
// upstream's referrers API when it has one, else from the referrers tag schema's fallback index
// (the tag `sha256-<hex>`), which is itself served only as an index of referrer descriptors.
// Nothing listed is served by being listed: each referrer's manifest is checked when pulled, as
// any artifact is (manifests.ts, artifacts.ts); its blobs stream through as all blobs do.
import type { IncomingHttpHeaders } from 'node:http';
import { ociDigest } from '../core/digest.js';
import { fail } from '../core/tuf/verify.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';
import { IMAGE_MANIFESTS } from './artifacts.js';
import { DIGEST_RE, type Ctx, type Fetched, type ProxyHost } from './context.js';
import { DAPI, E, send } from './errors.js';
import { parseObject, type ManifestRoutes } from './manifests.js';
import { OCI_INDEX, referrersTag, type Descriptor } from '../registry/artifacts.js';
import { UpstreamError } from '../registry/client.js';

/** The tag schema's tag for the referrers of `sha256:<hex>`. */
export const REFERRERS_TAG = /^sha256-([0-9a-f]{64})$/;
/** Bytes read of one referrers index: an upstream API page, or the fallback tag. */
export const MAX_INDEX_BYTES = 1024 * 1024;
/** Descriptors one answer lists, and entries a fallback index served as a tag may hold. */
export const MAX_REFERRERS = 1000;
/** Pages of the upstream's referrers API followed (`Link: <…>; rel="next"`). */
const MAX_PAGES = 4;

/** GET `/v2/<name>/referrers/<digest>`, and GET/HEAD of the fallback tag (from pullManifest). */
export class ReferrerRoutes {
  constructor(
    private readonly host: ProxyHost,
    private readonly manifests: ManifestRoutes,
  ) {}

  /**
   * The referrers of `digest` as an OCI index, if a pull of `digest` would be served (else the
   * pull's DENIED). In enforce mode only descriptors the rule would serve as artifacts are listed:
   * image manifests of an allowed artifact type (each still checked in full when pulled).
   */
  async list(ctx: Ctx, digest: string, url: string): Promise<void> {
    const { req, res, rule } = ctx;
    req.resume();
    const repeated = repeatedParam(url);
    if (repeated !== undefined) return send(res, E.REPEATED_PARAMETER, { parameter: repeated }, repeatedParamMessage(repeated));
    const q = url.indexOf('?');
    const wanted = new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('artifactType')?.toLowerCase() || undefined;
    if (rule.mode !== 'off') {
      const v = await this.manifests.verdictFor(ctx, digest);
      if (!v.ok && (rule.mode === 'enforce' || v.reason === 'unavailable')) return void this.manifests.refuse(ctx, digest, url, v);
      if (!v.ok) {
        const reason = v.reason ?? 'not-signed';
        this.host.opts.metrics.decision(rule.mode, 'audit-violation', reason);
        this.host.opts.metrics.auditViolations.inc({ repository: ctx.repo, reason });
        this.host.opts.log('warn', 'audit mode: listing referrers of an unverified digest', { gun: ctx.gun, digest, reason });
      }
    }
    let found: unknown[];
    try {
      found = await this.upstreamReferrers(ctx.repo, digest);
    } catch (e) {
      return this.host.upstreamFailure(res, e as Error, `referrers of ${ctx.repo}@${digest}`);
    }
    const manifests: Descriptor[] = [];
    for (const d of found) {
      if (manifests.length >= MAX_REFERRERS) break;
      const desc = referrerDescriptor(d);
      if (!desc) continue;
      const type = desc.artifactType!.toLowerCase();
      if (rule.mode === 'enforce' && !(IMAGE_MANIFESTS.has(desc.mediaType.toLowerCase()) && rule.artifactTypes.has(type))) continue;
      if (wanted !== undefined && type !== wanted) continue;
      manifests.push(desc);
    }
    if (found.length > MAX_REFERRERS)
      this.host.opts.log('warn', 'referrers list cut', { gun: ctx.gun, digest, found: found.length, limit: MAX_REFERRERS });
    if (rule.mode !== 'off') this.host.opts.metrics.decision(rule.mode, 'allowed', 'referrers');
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
    res.writeHead(200, {
      ...DAPI,
      'Content-Type': OCI_INDEX,
      'Content-Length': body.length,
      ...(wanted !== undefined ? { 'OCI-Filters-Applied': 'artifactType' } : {}),
    });
    res.end(body);
  }

  /**
   * Serves the fallback tag `ref` (the index of the referrers of `subject`) when `subject` would be
   * served and the tag holds an OCI index of referrer descriptors only; relays the upstream's 4xx
   * when it has none (a writer reads the tag before adding to it). Otherwise says why not
   * ('answered' when a reply went out), and the tag is checked as any other tag.
   */
  async indexTag(ctx: Ctx, ref: string, url: string, subject: string): Promise<'answered' | string> {
    const { req, res } = ctx;
    const { upstream, verifier } = this.host.opts;
    let got: Fetched;
    try {
      got = await upstream.getWhole(
        {
          path: `/v2/${ctx.repo}/manifests/${ref}`,
          headers: { accept: req.headers.accept ?? OCI_INDEX },
          scope: `repository:${ctx.repo}:pull`,
        },
        MAX_INDEX_BYTES,
      );
      if (got.status === 401) throw new UpstreamError("the upstream registry refused trustgate's credentials");
    } catch (e) {
      this.host.upstreamFailure(res, e as Error, `manifest ${ctx.repo}:${ref}`);
      return 'answered';
    }
    /** Undefined when `subject` is served, else why not ('answered' when the 503 went out). */
    const notServed = async (): Promise<'answered' | string | undefined> => {
      const v = await this.manifests.verdictFor(ctx, subject);
      if (v.ok) return undefined;
      if (v.reason !== 'unavailable') return `its subject ${subject} is not served: ${v.message ?? v.reason}`;
      void this.manifests.refuse(ctx, ref, url, v);
      return 'answered';
    };
    if (got.status !== 200) {
      if (got.status >= 500) {
        void this.manifests.refuse(
          ctx,
          ref,
          url,
          verifier.failure(ctx.gun, ref, fail('unavailable', `upstream registry answered ${got.status}`)),
        );
        return 'answered';
      }
      if (got.status < 400) return `the upstream answered ${got.status}`;
      const not = await notServed();
      if (not !== undefined) return not;
      this.manifests.relayUpstream(ctx, got);
      return 'answered';
    }
    const why = notReferrersIndex(got);
    if (why) return why;
    const not = await notServed();
    if (not !== undefined) return not;
    const digest = ociDigest(got.body);
    this.host.opts.metrics.decision(ctx.rule.mode, 'allowed', 'referrers-index');
    res.writeHead(200, {
      ...DAPI,
      'Content-Type': OCI_INDEX,
      'Content-Length': got.body.length,
      'Docker-Content-Digest': digest,
      Etag: `"${digest}"`,
    });
    res.end(req.method === 'HEAD' ? undefined : got.body);
    return 'answered';
  }

  /** Descriptors the upstream lists as referrers of `digest`: its referrers API, or else the fallback index. Bounded. */
  private async upstreamReferrers(repo: string, digest: string): Promise<unknown[]> {
    const { upstream } = this.host.opts;
    const scope = `repository:${repo}:pull`;
    const first = `/v2/${repo}/referrers/${digest}`;
    const found: unknown[] = [];
    let path: string | undefined = first;
    for (let page = 0; path !== undefined && page < MAX_PAGES && found.length <= MAX_REFERRERS; page++) {
      const got = await upstream.getWhole({ path, headers: { accept: OCI_INDEX }, scope }, MAX_INDEX_BYTES);
      if (got.status === 401) throw new UpstreamError("the upstream registry refused trustgate's credentials");
      if (got.status >= 500) throw new UpstreamError(`the upstream answered ${got.status} for the referrers of ${digest}`);
      if (got.status !== 200 || mediaType(got.headers) !== OCI_INDEX) {
        // No referrers API (docker-registry 2.8 answers 404): the spec's fallback is the tag schema.
        if (page === 0) return this.fallbackIndex(repo, digest);
        throw new UpstreamError(`the upstream answered ${got.status} for a next page of the referrers of ${digest}`);
      }
      const doc = parseObject(got.body);
      if (!doc || !Array.isArray(doc.manifests)) throw new UpstreamError(`the upstream's referrers index of ${digest} is malformed`);
      found.push(...(doc.manifests as unknown[]).slice(0, MAX_REFERRERS + 1 - found.length));
      const link = got.headers.link;
      path = nextPage(Array.isArray(link) ? link.join(', ') : link, upstream.origin, first);
    }
    return found;
  }

  /** The entries of the fallback index under `sha256-<hex>`; none when there is no index there. */
  private async fallbackIndex(repo: string, digest: string): Promise<unknown[]> {
    const { upstream } = this.host.opts;
    const got = await upstream.getWhole(
      { path: `/v2/${repo}/manifests/${referrersTag(digest)}`, headers: { accept: OCI_INDEX }, scope: `repository:${repo}:pull` },
      MAX_INDEX_BYTES,
    );
    if (got.status === 401) throw new UpstreamError("the upstream registry refused trustgate's credentials");
    if (got.status >= 500) throw new UpstreamError(`the upstream answered ${got.status} for ${referrersTag(digest)}`);
    if (got.status !== 200) return [];
    const doc = parseObject(got.body);
    return doc?.mediaType === OCI_INDEX && Array.isArray(doc.manifests) ? (doc.manifests as unknown[]) : [];
  }
}

const mediaType = (h: IncomingHttpHeaders) => (h['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();

/**
 * Why a fallback tag's manifest is not served as a referrers index: it must be an OCI index whose
 * entries are all referrer descriptors (a manifest type, an artifact type, no platform: a runtime
 * picks an image out of an index by platform), at most MAX_REFERRERS of them.
 */
function notReferrersIndex(got: Fetched): string | undefined {
  const doc = parseObject(got.body);
  if (!doc || mediaType(got.headers) !== OCI_INDEX || doc.mediaType !== OCI_INDEX || !Array.isArray(doc.manifests))
    return 'the referrers tag does not hold an OCI index';
  if (doc.manifests.length > MAX_REFERRERS) return `the referrers index lists more than ${MAX_REFERRERS} manifests`;
  for (const d of doc.manifests as unknown[]) {
    const desc = referrerDescriptor(d);
    if (!desc || (d as { platform?: unknown }).platform !== undefined)
      return 'the referrers index lists an entry that is not a referrer descriptor (a manifest type and an artifact type, no platform)';
    const t = desc.mediaType.toLowerCase();
    if (!IMAGE_MANIFESTS.has(t) && t !== OCI_INDEX) return `the referrers index lists an entry of type ${t}`;
  }
  return undefined;
}

/** A referrer's descriptor as listed (media type, digest, size, artifact type, annotations), or undefined if it is not one. */
function referrerDescriptor(d: unknown): Descriptor | undefined {
  if (!d || typeof d !== 'object' || Array.isArray(d)) return undefined;
  const { mediaType: type, digest, size, artifactType, annotations } = d as Record<string, unknown>;
  if (typeof type !== 'string' || typeof digest !== 'string' || !DIGEST_RE.test(digest)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  if (typeof artifactType !== 'string' || artifactType === '') return undefined;
  const out: Descriptor = { mediaType: type, digest, size, artifactType };
  if (annotations && typeof annotations === 'object' && !Array.isArray(annotations)) {
    const entries = Object.entries(annotations).filter((e): e is [string, string] => typeof e[1] === 'string');
    if (entries.length) out.annotations = Object.fromEntries(entries);
  }
  return out;
}

/** The `rel="next"` page of a referrers answer, if it is on the upstream and of the same listing. */
function nextPage(link: string | undefined, origin: string, first: string): string | undefined {
  const m = link && /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link);
  if (!m) return undefined;
  try {
    const u = new URL(m[1]!, `${origin}/`);
    return u.origin === origin && u.pathname === first ? u.pathname + u.search : undefined;
  } catch {
    return undefined;
  }
}
