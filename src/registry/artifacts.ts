// The few OCI distribution calls signing needs against the upstream registry: read a manifest's
// digest and size, push blobs and manifests (signature attachments, referrers), and list
// referrers (with the spec's tag-schema fallback for registries without the referrers API).
import type { IncomingMessage } from 'node:http';
import { Upstream } from './client.js';
import { ociDigest } from '../core/digest.js';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const MANIFEST_ACCEPT = [
  OCI_MANIFEST,
  OCI_INDEX,
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export class RegistryError extends Error {
  override name = 'RegistryError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface ManifestHead {
  digest: string;
  size: number;
  mediaType: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** What the signing service needs from a registry; the proxy's upstream client can stand in. */
export interface RegistryClient {
  /** The manifest's digest, size and type, or undefined when the registry does not have it. */
  headManifest(repo: string, reference: string): Promise<ManifestHead | undefined>;
  getManifest(repo: string, reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | undefined>;
  putBlob(repo: string, bytes: Buffer): Promise<string>;
  /** A blob of at most `limit` bytes whose content matches `digest`, or undefined. */
  getBlob(repo: string, digest: string, limit: number): Promise<Buffer | undefined>;
  /** Stores a manifest; `subject` is the OCI-Subject header the registry answered with, if any. */
  putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<{ digest: string; subject?: string }>;
  /** Referrers of a digest by the referrers API; undefined when the registry does not offer it. */
  referrers(repo: string, digest: string): Promise<Descriptor[] | undefined>;
  /** Whether `repo` has blob `digest`. */
  hasBlob(repo: string, digest: string): Promise<boolean>;
  /** Mounts blob `digest` of `from` into `repo` (cross-repository mount); false when the registry will not. */
  mountBlob(repo: string, digest: string, from: string): Promise<boolean>;
}

const header = (res: IncomingMessage, name: string): string | undefined => {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** A RegistryClient over the proxy's upstream client (its credentials, token flow and keep-alive). */
export class UpstreamRegistry implements RegistryClient {
  constructor(
    readonly upstream: Upstream,
    private maxManifestBytes = 4 * 1024 * 1024,
  ) {}

  private async call(
    method: string,
    path: string,
    scope: string,
    headers: Record<string, string> = {},
    data?: Buffer,
  ): Promise<IncomingMessage> {
    try {
      return await this.upstream.request({ method, path, scope, headers, ...(data ? { data } : {}) });
    } catch (e) {
      throw new RegistryError(`upstream registry unreachable: ${(e as Error).message}`);
    }
  }

  private async fail(what: string, res: IncomingMessage): Promise<never> {
    const text = (await Upstream.readBody(res, 64 * 1024).catch(() => Buffer.alloc(0))).toString('utf8').slice(0, 300).trim();
    throw new RegistryError(`${what}: upstream answered ${res.statusCode}${text ? ` ${text}` : ''}`, res.statusCode);
  }

  async headManifest(repo: string, reference: string): Promise<ManifestHead | undefined> {
    const res = await this.call('HEAD', `/v2/${repo}/manifests/${reference}`, `repository:${repo}:pull`, { accept: MANIFEST_ACCEPT });
    res.resume();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) return this.fail(`HEAD manifest ${repo}:${reference}`, res);
    const digest = header(res, 'docker-content-digest') ?? '';
    const size = Number(header(res, 'content-length') ?? NaN);
    if (digest && Number.isSafeInteger(size) && size > 0) return { digest, size, mediaType: header(res, 'content-type') ?? '' };
    // Some registries leave these out of HEAD: read the manifest instead.
    const m = await this.getManifest(repo, reference);
    return m && { digest: m.digest, size: m.bytes.length, mediaType: m.mediaType };
  }

  async getManifest(repo: string, reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | undefined> {
    const res = await this.call('GET', `/v2/${repo}/manifests/${reference}`, `repository:${repo}:pull`, { accept: MANIFEST_ACCEPT });
    if (res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    if (res.statusCode !== 200) return this.fail(`GET manifest ${repo}:${reference}`, res);
    const bytes = await Upstream.readBody(res, this.maxManifestBytes);
    return { bytes, mediaType: header(res, 'content-type') ?? '', digest: ociDigest(bytes) };
  }

  async putBlob(repo: string, bytes: Buffer): Promise<string> {
    const digest = ociDigest(bytes);
    const scope = `repository:${repo}:pull,push`;
    const head = await this.call('HEAD', `/v2/${repo}/blobs/${digest}`, scope);
    head.resume();
    if (head.statusCode === 200) return digest;
    const start = await this.call('POST', `/v2/${repo}/blobs/uploads/`, scope, {}, Buffer.alloc(0));
    if (start.statusCode !== 202) return this.fail(`start blob upload to ${repo}`, start);
    start.resume();
    const location = header(start, 'location');
    if (!location) throw new RegistryError(`blob upload to ${repo}: no Location header`);
    const url = new URL(location, this.upstream.origin + '/');
    url.searchParams.set('digest', digest);
    const put = await this.call('PUT', url.pathname + url.search, scope, { 'content-type': 'application/octet-stream' }, bytes);
    if (put.statusCode !== 201) return this.fail(`upload blob ${digest} to ${repo}`, put);
    put.resume();
    return digest;
  }

  async getBlob(repo: string, digest: string, limit: number): Promise<Buffer | undefined> {
    const res = await this.call('GET', `/v2/${repo}/blobs/${digest}`, `repository:${repo}:pull`);
    if (res.statusCode !== 200) {
      res.resume();
      return undefined;
    }
    const bytes = await Upstream.readBody(res, limit).catch(() => undefined);
    return bytes && ociDigest(bytes) === digest ? bytes : undefined;
  }

  async putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<{ digest: string; subject?: string }> {
    const res = await this.call(
      'PUT',
      `/v2/${repo}/manifests/${reference}`,
      `repository:${repo}:pull,push`,
      { 'content-type': mediaType },
      bytes,
    );
    if (res.statusCode !== 201 && res.statusCode !== 200) return this.fail(`PUT manifest ${repo}:${reference}`, res);
    res.resume();
    const subject = header(res, 'oci-subject');
    return { digest: header(res, 'docker-content-digest') ?? ociDigest(bytes), ...(subject ? { subject } : {}) };
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    const res = await this.call('HEAD', `/v2/${repo}/blobs/${digest}`, `repository:${repo}:pull`);
    res.resume();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    return this.fail(`HEAD blob ${repo}@${digest}`, res);
  }

  async mountBlob(repo: string, digest: string, from: string): Promise<boolean> {
    const q = new URLSearchParams({ mount: digest, from });
    const res = await this.call(
      'POST',
      `/v2/${repo}/blobs/uploads/?${q}`,
      `repository:${repo}:pull,push repository:${from}:pull`,
      {},
      Buffer.alloc(0),
    );
    res.resume();
    if (res.statusCode === 201) return true;
    if (res.statusCode === 202) {
      // The registry opened an ordinary upload instead: close it again.
      const location = header(res, 'location');
      if (location) {
        const url = new URL(location, this.upstream.origin + '/');
        (await this.call('DELETE', url.pathname + url.search, `repository:${repo}:pull,push`).catch(() => undefined))?.resume();
      }
      return false;
    }
    return this.fail(`mount blob ${digest} from ${from} into ${repo}`, res);
  }

  async referrers(repo: string, digest: string): Promise<Descriptor[] | undefined> {
    const res = await this.call('GET', `/v2/${repo}/referrers/${digest}`, `repository:${repo}:pull`, { accept: OCI_INDEX });
    if (res.statusCode !== 200 || !(header(res, 'content-type') ?? '').includes(OCI_INDEX)) {
      res.resume();
      if (res.statusCode === 200 || res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 400) return undefined;
      return this.fail(`GET referrers of ${repo}@${digest}`, res);
    }
    const index = JSON.parse((await Upstream.readBody(res, this.maxManifestBytes)).toString('utf8')) as { manifests?: Descriptor[] };
    return index.manifests ?? [];
  }
}

/** The tag-schema fallback tag that lists the referrers of `digest`: `sha256-<hex>`. */
export const referrersTag = (digest: string) => digest.replace(':', '-');

/**
 * Referrers of `digest`: the referrers API when the registry has it, else the fallback index
 * under the `sha256-<hex>` tag (OCI distribution 1.1, "referrers tag schema").
 */
export async function listReferrers(reg: RegistryClient, repo: string, digest: string): Promise<Descriptor[]> {
  const api = await reg.referrers(repo, digest);
  if (api) return api;
  const idx = await reg.getManifest(repo, referrersTag(digest));
  if (!idx) return [];
  const parsed = JSON.parse(idx.bytes.toString('utf8')) as { manifests?: Descriptor[] };
  return parsed.manifests ?? [];
}

/**
 * Pushes a referrer manifest by digest; when the registry does not acknowledge the subject
 * (no OCI-Subject header), also adds it to the fallback index under `sha256-<hex>`.
 */
export async function pushReferrer(
  reg: RegistryClient,
  repo: string,
  subjectDigest: string,
  manifest: Buffer,
  desc: Descriptor,
): Promise<{ digest: string; via: 'referrers-api' | 'tag-schema' }> {
  const put = await reg.putManifest(repo, desc.digest, manifest, OCI_MANIFEST);
  if (put.subject) return { digest: put.digest, via: 'referrers-api' };
  const tag = referrersTag(subjectDigest);
  await oneAtATime(`${repo}:${tag}`, async () => {
    const cur = await reg.getManifest(repo, tag);
    let manifests: Descriptor[] = [];
    if (cur) {
      const parsed = JSON.parse(cur.bytes.toString('utf8')) as { mediaType?: string; manifests?: Descriptor[] };
      if (parsed.mediaType === OCI_INDEX || Array.isArray(parsed.manifests)) manifests = parsed.manifests ?? [];
    }
    manifests = [...manifests.filter((m) => m.digest !== desc.digest), desc];
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
    await reg.putManifest(repo, tag, index, OCI_INDEX);
  });
  return { digest: put.digest, via: 'tag-schema' };
}

// Updates of one fallback index (or `.att` manifest) run one at a time in this process: each
// reads, extends and rewrites the tag, so two at once (a batch signing two tags of one digest)
// lost one referrer.
const indexUpdates = new Map<string, Promise<void>>();
/** Runs `fn` after every earlier update of `key` (`repo:tag`) in this process has settled. */
export async function oneAtATime(key: string, fn: () => Promise<void>): Promise<void> {
  const run = (indexUpdates.get(key) ?? Promise.resolve()).then(fn);
  const tail = run.catch(() => undefined);
  indexUpdates.set(key, tail);
  try {
    await run;
  } finally {
    if (indexUpdates.get(key) === tail) indexUpdates.delete(key);
  }
}

/** A manifest as the copy reads it: blobs it needs (config, layers) and child manifests (an index). */
interface ManifestDoc {
  config?: { digest?: unknown };
  layers?: Array<{ digest?: unknown }>;
  manifests?: Array<{ digest?: unknown }>;
}

const MAX_COPY_DEPTH = 2;

/**
 * Copies manifest `digest` of repository `from` into `to` in the same registry, so a tag signed
 * in `to` can be pulled: its blobs by cross-repository mount, an index's child manifests first,
 * then the manifest itself by digest. Throws RegistryError when the registry will not mount.
 */
export async function copyManifest(reg: RegistryClient, from: string, to: string, digest: string, depth = 0): Promise<void> {
  if (await reg.headManifest(to, digest)) return;
  const m = await reg.getManifest(from, digest);
  if (!m) throw new RegistryError(`${from}@${digest} is not in the upstream registry`, 404);
  if (m.digest !== digest) throw new RegistryError(`${from}@${digest}: the upstream answered other bytes (${m.digest})`);
  let doc: ManifestDoc;
  try {
    doc = JSON.parse(m.bytes.toString('utf8')) as ManifestDoc;
  } catch {
    throw new RegistryError(`${from}@${digest} is not a JSON manifest`);
  }
  const digests = (xs: Array<{ digest?: unknown }> | undefined) =>
    Array.isArray(xs) ? xs.map((x) => x?.digest).filter((d): d is string => typeof d === 'string') : [];
  const children = digests(doc.manifests);
  if (children.length && depth >= MAX_COPY_DEPTH) throw new RegistryError(`${from}@${digest}: indexes nest too deep to copy`);
  for (const child of children) await copyManifest(reg, from, to, child, depth + 1);
  const blobs = [...new Set([...digests(doc.config ? [doc.config] : []), ...digests(doc.layers)])];
  for (const blob of blobs) {
    if (await reg.hasBlob(to, blob)) continue;
    if (!(await reg.mountBlob(to, blob, from)))
      throw new RegistryError(`the upstream registry would not mount blob ${blob} from ${from} into ${to}`, 409);
  }
  await reg.putManifest(to, digest, m.bytes, m.mediaType || OCI_MANIFEST);
}
