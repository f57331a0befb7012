// Build OCI image layouts by hand (no Docker, no buildah) and move them around
// with skopeo. Layers are real tar archives (one regular file each) so that
// registries/clients that inspect them are happy; diff_ids are correct.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { runCommand, type RunResult } from './services.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const REF_NAME = 'org.opencontainers.image.ref.name';
/** Layers whose file content is larger than this are streamed to disk and left uncompressed. */
export const BIG_LAYER_THRESHOLD = 8 * 1024 * 1024;
const CHUNK = 1024 * 1024;

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** A JSON blob (manifest, index, config) with its exact serialized bytes. */
export interface JsonBlob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export interface LayerInfo {
  mediaType: string;
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar (what goes into rootfs.diff_ids). */
  diffId: string;
  /** Path of the blob file inside the layout. */
  path: string;
}

export interface ImageInfo {
  platform: Platform;
  manifest: JsonBlob;
  config: JsonBlob;
  layers: LayerInfo[];
}

export interface ImageLayout extends ImageInfo {
  dir: string;
  tag: string;
  /** skopeo source ref: oci:<dir>:<tag> */
  ref: string;
}

export interface IndexLayout {
  dir: string;
  tag: string;
  ref: string;
  index: JsonBlob;
  /** One per platform, in the order given. */
  images: ImageInfo[];
}

export interface ImageOptions {
  /** ref.name annotation in index.json (default 'latest'). Existing entries with the same name are replaced. */
  tag?: string;
  /** Number of layers (default 1). */
  layers?: number;
  /**
   * Bytes of random file content per layer (default 1024). Above BIG_LAYER_THRESHOLD
   * the layer is streamed to disk (never held in memory) as an uncompressed tar.
   */
  layerBytes?: number;
  platform?: Platform;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (!alg || !hex) throw new Error(`bad digest ${digest}`);
  return path.join(dir, 'blobs', alg, hex);
}

// --- tar -------------------------------------------------------------------

function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  // length-1 zero-padded octal digits + NUL, as POSIX ustar expects.
  buf.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'latin1');
}

/** 512-byte ustar header for one regular file. */
export function tarHeader(name: string, size: number, mtime = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error('tar name too long');
  if (size > 0o77777777777) throw new Error('tar entry too large for ustar');
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 100, 'utf8');
  writeOctal(h, 100, 8, 0o644); // mode
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, mtime);
  h.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  h.write('0', 156, 'latin1'); // typeflag: regular file
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write('root', 265, 'latin1'); // uname
  h.write('root', 297, 'latin1'); // gname
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return h;
}

function tarPadding(size: number): number {
  return (512 - (size % 512)) % 512;
}

/** Complete in-memory tar with a single file. */
export function makeTar(name: string, content: Buffer): Buffer {
  return Buffer.concat([tarHeader(name, content.length), content, Buffer.alloc(tarPadding(content.length) + 1024)]);
}

// --- blobs -----------------------------------------------------------------

async function writeBlob(dir: string, data: Buffer): Promise<string> {
  const digest = sha256Digest(data);
  const p = blobPath(dir, digest);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  return digest;
}

function jsonBlob(mediaType: string, value: unknown): JsonBlob {
  const bytes = Buffer.from(JSON.stringify(value));
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, bytes };
}

async function writeJsonBlob(dir: string, mediaType: string, value: unknown): Promise<JsonBlob> {
  const blob = jsonBlob(mediaType, value);
  await writeBlob(dir, blob.bytes);
  return blob;
}

async function smallLayer(dir: string, name: string, bytes: number): Promise<LayerInfo> {
  const tar = makeTar(name, randomBytes(bytes));
  const gz = gzipSync(tar);
  const digest = await writeBlob(dir, gz);
  return { mediaType: MEDIA_TYPES.ociLayerGzip, digest, size: gz.length, diffId: sha256Digest(tar), path: blobPath(dir, digest) };
}

/** Stream a tar with `bytes` of random content to disk, hashing as we go. */
async function bigLayer(dir: string, name: string, bytes: number): Promise<LayerInfo> {
  const blobsDir = path.join(dir, 'blobs', 'sha256');
  await fsp.mkdir(blobsDir, { recursive: true });
  const tmp = path.join(blobsDir, `.tmp-${randomBytes(8).toString('hex')}`);
  const hash = createHash('sha256');
  const fh = await fsp.open(tmp, 'w');
  let size = 0;
  const put = async (b: Buffer): Promise<void> => {
    hash.update(b);
    await fh.write(b, 0, b.length); // awaited, so the buffer can be reused afterwards
    size += b.length;
  };
  try {
    await put(tarHeader(name, bytes));
    const buf = Buffer.alloc(CHUNK);
    for (let left = bytes; left > 0; left -= CHUNK) {
      const n = Math.min(CHUNK, left);
      randomFillSync(buf, 0, n);
      await put(buf.subarray(0, n));
    }
    await put(Buffer.alloc(tarPadding(bytes) + 1024));
  } finally {
    await fh.close();
  }
  const digest = `sha256:${hash.digest('hex')}`;
  const final = blobPath(dir, digest);
  await fsp.rename(tmp, final);
  // Uncompressed: the blob digest is also the diff_id.
  return { mediaType: MEDIA_TYPES.ociLayerTar, digest, size, diffId: digest, path: final };
}

/** Write layers + config + manifest blobs; does not touch index.json. */
async function writeImage(dir: string, opts: ImageOptions): Promise<ImageInfo> {
  const platform = opts.platform ?? { architecture: 'amd64', os: 'linux' };
  const count = opts.layers ?? 1;
  const layerBytes = opts.layerBytes ?? 1024;
  const layers: LayerInfo[] = [];
  for (let i = 0; i < count; i++) {
    const name = `layer${i}-${randomBytes(4).toString('hex')}.bin`;
    layers.push(layerBytes > BIG_LAYER_THRESHOLD ? await bigLayer(dir, name, layerBytes) : await smallLayer(dir, name, layerBytes));
  }
  const config = await writeJsonBlob(dir, MEDIA_TYPES.ociConfig, {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Cmd: ['/bin/true'], Labels: { 'org.trustgate.test': randomBytes(8).toString('hex') } },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  });
  const manifest = await writeJsonBlob(dir, MEDIA_TYPES.ociManifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  });
  return { platform, manifest, config, layers };
}

/** Write oci-layout and add/replace the index.json entry for `tag`. */
async function addRef(dir: string, tag: string, desc: Descriptor): Promise<void> {
  await fsp.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const indexFile = path.join(dir, 'index.json');
  let manifests: Descriptor[] = [];
  try {
    manifests = (JSON.parse(await fsp.readFile(indexFile, 'utf8')) as { manifests?: Descriptor[] }).manifests ?? [];
  } catch {
    // new layout
  }
  manifests = manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
  manifests.push({ ...desc, annotations: { [REF_NAME]: tag } });
  await fsp.writeFile(indexFile, JSON.stringify({ schemaVersion: 2, manifests }));
}

/** Build (or add a tag to) an OCI image layout in `dir` with a single-platform image. */
export async function makeImageLayout(dir: string, opts: ImageOptions = {}): Promise<ImageLayout> {
  const tag = opts.tag ?? 'latest';
  await fsp.mkdir(dir, { recursive: true });
  const image = await writeImage(dir, opts);
  await addRef(dir, tag, { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size });
  return { ...image, dir, tag, ref: `oci:${dir}:${tag}` };
}

export const DEFAULT_PLATFORMS: readonly Platform[] = [
  { architecture: 'amd64', os: 'linux' },
  { architecture: 'arm64', os: 'linux', variant: 'v8' },
];

/** Build a multi-arch image index (one image per platform; default amd64 + arm64). */
export async function makeIndexLayout(
  dir: string,
  platforms: readonly Platform[] = DEFAULT_PLATFORMS,
  opts: Omit<ImageOptions, 'platform'> = {},
): Promise<IndexLayout> {
  const tag = opts.tag ?? 'latest';
  await fsp.mkdir(dir, { recursive: true });
  const images: ImageInfo[] = [];
  for (const platform of platforms) images.push(await writeImage(dir, { ...opts, annotations: undefined, platform }));
  const index = await writeJsonBlob(dir, MEDIA_TYPES.ociIndex, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: images.map((im) => ({
      mediaType: im.manifest.mediaType,
      digest: im.manifest.digest,
      size: im.manifest.size,
      platform: im.platform,
    })),
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  });
  await addRef(dir, tag, { mediaType: index.mediaType, digest: index.digest, size: index.size });
  return { dir, tag, ref: `oci:${dir}:${tag}`, index, images };
}

// --- skopeo ----------------------------------------------------------------

interface SkopeoEnv {
  dir: string;
  policy: string;
  authfile: string;
  env: NodeJS.ProcessEnv;
}

let skopeoEnv: SkopeoEnv | null = null;

/**
 * Private, permissive containers config so no global /etc/containers or ~/.docker
 * state matters: accept-anything policy.json, empty auth.json, empty registries.conf,
 * empty registries.d. Created once per process and removed at exit.
 */
function getSkopeoEnv(): SkopeoEnv {
  if (skopeoEnv) return skopeoEnv;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trustgate-skopeo-'));
  const policy = path.join(dir, 'policy.json');
  const authfile = path.join(dir, 'auth.json');
  const registriesConf = path.join(dir, 'registries.conf');
  fs.writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  fs.writeFileSync(authfile, JSON.stringify({ auths: {} }));
  fs.writeFileSync(registriesConf, 'unqualified-search-registries = []\n');
  fs.mkdirSync(path.join(dir, 'registries.d'));
  fs.mkdirSync(path.join(dir, 'tmp'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    DOCKER_CONFIG: dir,
    XDG_RUNTIME_DIR: dir,
    REGISTRY_AUTH_FILE: authfile,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    TMPDIR: path.join(dir, 'tmp'),
  };
  process.once('exit', () => {
    if (!process.env.TRUSTGATE_TEST_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  });
  skopeoEnv = { dir, policy, authfile, env };
  return skopeoEnv;
}

export interface SkopeoRunOptions {
  /** Default 120s (big layers take a while). */
  timeoutMs?: number;
}

/** Run `skopeo <global opts> <args>` in the private environment; never throws on non-zero exit. */
export function runSkopeo(args: readonly string[], opts: SkopeoRunOptions = {}): Promise<RunResult> {
  const e = getSkopeoEnv();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return runCommand(
    'skopeo',
    [
      '--policy',
      e.policy,
      '--registries.d',
      path.join(e.dir, 'registries.d'),
      '--tmpdir',
      path.join(e.dir, 'tmp'),
      '--command-timeout',
      `${Math.ceil(timeoutMs / 1000)}s`,
      ...args,
    ],
    { env: e.env, timeoutMs: timeoutMs + 5000 }, // our hard kill backs up skopeo's own timeout
  );
}

export interface SkopeoCopyOptions extends SkopeoRunOptions {
  /** Copy every image of an index (`--all`). Default true; harmless for single images. */
  all?: boolean;
  /** Fail instead of silently converting/re-digesting manifests. Default true. */
  preserveDigests?: boolean;
}

function checked(what: string, r: RunResult): RunResult {
  if (r.code !== 0) {
    throw new Error(
      `${what} failed (code=${r.code}${r.timedOut ? ', timed out' : ''})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
    );
  }
  return r;
}

/**
 * `skopeo copy` src → dst (e.g. oci:/dir:tag → docker://127.0.0.1:PORT/ns/app:tag).
 * TLS verification is off, so plain-http and self-signed https registries both work.
 * Throws with skopeo's output on failure.
 */
export async function skopeoCopy(
  src: string,
  dst: string,
  extraArgs: readonly string[] = [],
  opts: SkopeoCopyOptions = {},
): Promise<RunResult> {
  const e = getSkopeoEnv();
  const args = [
    'copy',
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    '--authfile',
    e.authfile,
    ...(opts.all === false ? [] : ['--all']),
    ...(opts.preserveDigests === false ? [] : ['--preserve-digests']),
    ...extraArgs,
    src,
    dst,
  ];
  return checked(`skopeo copy ${src} ${dst}`, await runSkopeo(args, opts));
}

export interface SkopeoInspectOptions extends SkopeoRunOptions {
  /** `--raw`: the manifest/index exactly as served (parsed from JSON). */
  raw?: boolean;
  /** `--config`: the image config. */
  config?: boolean;
  extraArgs?: readonly string[];
}

/** `skopeo inspect` a ref (docker://..., oci:...), returning parsed JSON. */
export async function skopeoInspect<T = Record<string, unknown>>(ref: string, opts: SkopeoInspectOptions = {}): Promise<T> {
  const e = getSkopeoEnv();
  const args = [
    'inspect',
    '--tls-verify=false',
    '--authfile',
    e.authfile,
    ...(opts.raw ? ['--raw'] : []),
    ...(opts.config ? ['--config'] : []),
    ...(opts.extraArgs ?? []),
    ref,
  ];
  const r = checked(`skopeo inspect ${ref}`, await runSkopeo(args, opts));
  return JSON.parse(r.stdout) as T;
}
