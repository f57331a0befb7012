// A test-side Notary/TUF client: builds real signed metadata with the project's own core (the
// same canonical JSON, keys and signatures a notary client produces), turns it into the
// multipart bodies `notary publish` sends, and keeps track of what the server has accepted so
// that follow-up publishes (new targets, delegations, root rotation) chain correctly.
import { createHash, randomBytes } from 'node:crypto';
import type request from 'supertest';
import type { Response } from 'supertest';
import { keyId, parseKey, signingMethod, type TufKey } from '../../src/core/crypto/keys.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { generateSigner, LocalSigner, type Signer } from '../../src/core/crypto/signer.js';
import { createRootCertificate } from '../../src/core/crypto/x509.js';
import {
  fileMetaFor,
  signBody,
  type DelegatedRole,
  type FileMeta,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
} from '../../src/core/tuf/metadata.js';
import { DAY_MS, YEAR_MS, formatRfc3339 } from '../../src/core/tuf/time.js';

export type Agent = ReturnType<typeof request>;
export type Files = Array<[filename: string, bytes: Buffer]>;

export const tufPath = (gun: string, file = '') => `/v2/${gun}/_trust/tuf/${file}`;

/** An Agent whose every request presents `token` as a Bearer token (a later `.set` replaces it). */
export function authedAgent(agent: Agent, token: string): Agent {
  const out: Record<string, unknown> = {};
  for (const [m, f] of Object.entries(agent)) {
    out[m] =
      typeof f === 'function'
        ? (url: string) => (f as (u: string) => ReturnType<Agent['get']>)(url).set('Authorization', `Bearer ${token}`)
        : f;
  }
  return out as unknown as Agent;
}

// ---------------------------------------------------------------------------------------------
// Responses as raw bytes

/** superagent parser that keeps the body as the exact bytes received. */
export function rawParser(res: NodeJS.ReadableStream & { setEncoding?: unknown }, cb: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
  res.on('end', () => cb(null, Buffer.concat(chunks)));
  res.on('error', (e: Error) => cb(e, Buffer.alloc(0)));
}

/** Sends a request and returns the response with `body` as a Buffer of the exact bytes. */
export async function raw(t: ReturnType<Agent['get']>): Promise<Response & { body: Buffer }> {
  return (await t.buffer(true).parse(rawParser as never)) as Response & { body: Buffer };
}

// ---------------------------------------------------------------------------------------------
// Keys

/** A root key as notary makes it: ECDSA P-256 wrapped in a self-signed certificate with CN = `cn`. */
export async function newRootSigner(cn: string, opts: { notBefore?: Date; years?: number } = {}): Promise<LocalSigner> {
  const plain = generateSigner('ecdsa');
  const { key } = await createRootCertificate({ gun: cn, privateKey: plain.privateKey, ...opts });
  return new LocalSigner(plain.privateKey, key);
}

export async function fetchServerKey(
  agent: Agent,
  gun: string,
  role: 'timestamp' | 'snapshot',
  method: 'get' | 'post' = 'get',
): Promise<TufKey> {
  const res = await raw(agent[method](tufPath(gun, `${role}.key`)));
  if (res.status !== 200) throw new Error(`${method.toUpperCase()} ${role}.key: ${res.status} ${res.body.toString()}`);
  return parseKey(JSON.parse(res.body.toString('utf8')));
}

// ---------------------------------------------------------------------------------------------
// Bodies

export const expiresIn = (ms: number, now = Date.now()) => formatRfc3339(now + ms);
export const EXPIRES_10Y = () => expiresIn(10 * YEAR_MS);
export const EXPIRES_3Y = () => expiresIn(3 * YEAR_MS);

export function rootBody(opts: {
  version: number;
  root: TufKey[];
  targets: TufKey[];
  snapshot: TufKey[];
  timestamp: TufKey[];
  thresholds?: Partial<Record<'root' | 'targets' | 'snapshot' | 'timestamp', number>>;
  expires?: string;
}): RootBody {
  const keys: Record<string, TufKey> = {};
  const ids = (ks: TufKey[]) =>
    ks.map((k) => {
      const id = keyId(k);
      keys[id] = k;
      return id;
    });
  const role = (name: 'root' | 'targets' | 'snapshot' | 'timestamp', ks: TufKey[]) => ({
    keyids: ids(ks),
    threshold: opts.thresholds?.[name] ?? 1,
  });
  return {
    _type: 'Root',
    consistent_snapshot: false,
    expires: opts.expires ?? EXPIRES_10Y(),
    keys,
    roles: {
      root: role('root', opts.root),
      snapshot: role('snapshot', opts.snapshot),
      targets: role('targets', opts.targets),
      timestamp: role('timestamp', opts.timestamp),
    },
    version: opts.version,
  };
}

export function targetsBody(opts: {
  version: number;
  targets?: Record<string, FileMeta>;
  delegations?: TargetsBody['delegations'];
  expires?: string;
}): TargetsBody {
  return {
    _type: 'Targets',
    delegations: opts.delegations ?? { keys: {}, roles: [] },
    expires: opts.expires ?? EXPIRES_3Y(),
    targets: opts.targets ?? {},
    version: opts.version,
  };
}

export function snapshotBody(opts: {
  version: number;
  files: Map<string, Buffer> | Record<string, Buffer>;
  expires?: string;
}): SnapshotBody {
  const meta: Record<string, FileMeta> = {};
  const entries = opts.files instanceof Map ? [...opts.files] : Object.entries(opts.files);
  for (const [role, bytes] of entries) meta[role] = fileMetaFor(bytes);
  return { _type: 'Snapshot', expires: opts.expires ?? EXPIRES_3Y(), meta, version: opts.version };
}

/** FileMeta of a docker-style target: sha256 only (notary adds sha512 too). */
export function targetMeta(content: Buffer | string, custom?: unknown): FileMeta {
  const b = Buffer.from(content);
  const fm: FileMeta = { hashes: { sha256: createHash('sha256').update(b).digest('base64') }, length: b.length };
  if (custom !== undefined) fm.custom = custom as never;
  return fm;
}

export const sign = (body: object, signers: readonly Signer[]) => signBody(body as never, signers);

/**
 * Signs canonical JSON text that JS values cannot produce (a version of 2^63, an unsorted
 * `custom` as Go embeds it): `body` is canonicalised, each `"<placeholder>"` string replaced by
 * its literal text, and the signatures made over exactly those bytes, as a Go client would.
 */
export async function signLiteral(body: object, literals: Record<string, string>, signers: readonly Signer[]): Promise<Buffer> {
  let message = canonicalBytes(body).toString('utf8');
  for (const [placeholder, text] of Object.entries(literals)) {
    if (!message.includes(JSON.stringify(placeholder))) throw new Error(`placeholder ${placeholder} not in body`);
    message = message.split(JSON.stringify(placeholder)).join(text);
  }
  const signatures = [];
  for (const s of signers) {
    signatures.push({ keyid: s.id, method: signingMethod(s.key.keytype), sig: (await s.sign(Buffer.from(message))).toString('base64') });
  }
  return Buffer.from(`{"signed":${message},"signatures":${JSON.stringify(signatures)}}`);
}

// ---------------------------------------------------------------------------------------------
// Multipart

/** The body `notary publish` sends: one part per role, filename = role name (slashes kept). */
export function multipart(files: Files, boundary = `tgtest${randomBytes(12).toString('hex')}`): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const [name, bytes] of files) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      bytes,
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** POSTs role files to the GUN; answers with the raw response. */
export function publish(agent: Agent, gun: string, files: Files | Map<string, Buffer>): Promise<Response & { body: Buffer }> {
  const { body, contentType } = multipart(files instanceof Map ? [...files] : files);
  return raw(agent.post(tufPath(gun)).set('Content-Type', contentType).send(body));
}

// ---------------------------------------------------------------------------------------------
// A repository the test owns

interface Held<T> {
  body: T;
  bytes: Buffer;
}

export interface InitOptions {
  /** Snapshot key held by the server (docker's default) instead of the client (notary's). */
  serverSnapshot?: boolean;
  /** Send the initial publish (default true). */
  publish?: boolean;
  /** Targets to put in the first targets file. */
  targets?: Record<string, FileMeta>;
}

export class TufRepo {
  root!: Held<RootBody>;
  /** `targets` and delegations, as last accepted by the server. */
  readonly roles = new Map<string, Held<TargetsBody>>();
  /** Client-held snapshot as last accepted (undefined when the server holds the snapshot key). */
  snapshot?: Held<SnapshotBody>;
  readonly delegationKeys = new Map<string, LocalSigner>();
  rootSigners: LocalSigner[];
  targetsKey = generateSigner('ecdsa');
  snapshotKey?: LocalSigner;

  private constructor(
    readonly agent: Agent,
    readonly gun: string,
    rootSigner: LocalSigner,
    public timestampKey: TufKey,
    public serverSnapshotKey: TufKey | undefined,
  ) {
    this.rootSigners = [rootSigner];
    if (!serverSnapshotKey) this.snapshotKey = generateSigner('ecdsa');
  }

  /** notary init: root v1, targets v1 (and snapshot v1 when client-held), published unless told not to. */
  static async init(agent: Agent, gun: string, opts: InitOptions = {}): Promise<TufRepo> {
    const ts = await fetchServerKey(agent, gun, 'timestamp');
    const snap = opts.serverSnapshot ? await fetchServerKey(agent, gun, 'snapshot') : undefined;
    const repo = new TufRepo(agent, gun, await newRootSigner(gun), ts, snap);
    const body = repo.rootBodyFor(1);
    repo.root = { body, bytes: await sign(body, repo.rootSigners) };
    const files = await repo.files([['targets', targetsBody({ version: 1, ...(opts.targets ? { targets: opts.targets } : {}) })]], {
      root: true,
    });
    if (opts.publish !== false) {
      const res = await repo.publish(files);
      if (res.status !== 200) throw new Error(`init publish of ${gun}: ${res.status} ${res.body.toString()}`);
    } else {
      repo.pending = files;
    }
    return repo;
  }

  /** Files prepared by init({publish:false}). */
  pending: Files = [];

  rootBodyFor(version: number, over: Partial<Parameters<typeof rootBody>[0]> = {}): RootBody {
    return rootBody({
      version,
      root: this.rootSigners.map((s) => s.key),
      targets: [this.targetsKey.key],
      snapshot: [this.serverSnapshotKey ?? this.snapshotKey!.key],
      timestamp: [this.timestampKey],
      ...over,
    });
  }

  get targets(): Held<TargetsBody> {
    return this.roles.get('targets')!;
  }

  /** The next version of a targets role's body (a copy), optionally changed by `edit`. */
  next(role = 'targets', edit?: (b: TargetsBody) => void): TargetsBody {
    const cur = this.roles.get(role);
    const body: TargetsBody = cur ? structuredClone(cur.body) : targetsBody({ version: 0 });
    body.version += 1;
    edit?.(body);
    return body;
  }

  /** The keys that sign a targets role: the targets key, or the delegation's key. */
  signersFor(role: string): Signer[] {
    if (role === 'targets') return [this.targetsKey];
    const k = this.delegationKeys.get(role);
    if (!k) throw new Error(`no key for ${role}`);
    return [k];
  }

  /**
   * Signs targets bodies (and a root, when `root` is set) and adds a client snapshot over them when
   * the client holds the snapshot key. Returns the files in publish order, without sending them.
   */
  async files(bodies: Array<[string, TargetsBody]>, opts: { root?: boolean | Buffer; snapshot?: boolean } = {}): Promise<Files> {
    const out: Files = [];
    if (opts.root) out.push(['root', Buffer.isBuffer(opts.root) ? opts.root : this.root.bytes]);
    for (const [role, body] of bodies) out.push([role, await sign(body, this.signersFor(role))]);
    if (this.snapshotKey && opts.snapshot !== false) out.push(['snapshot', await this.clientSnapshot(out)]);
    return out;
  }

  /** A client snapshot over what the server holds, updated with `files`. */
  async clientSnapshot(files: Files, edit?: (b: SnapshotBody) => void): Promise<Buffer> {
    const all = new Map<string, Buffer>([['root', this.root.bytes]]);
    for (const [role, h] of this.roles) all.set(role, h.bytes);
    for (const [role, bytes] of files) if (role !== 'snapshot' && role !== 'timestamp') all.set(role, bytes);
    const body = snapshotBody({ version: (this.snapshot?.body.version ?? 0) + 1, files: all });
    edit?.(body);
    return sign(body, [this.snapshotKey!]);
  }

  /** Sends files; on 200 records them as the server's state. */
  async publish(files: Files): Promise<Response & { body: Buffer }> {
    const res = await publish(this.agent, this.gun, files);
    if (res.status === 200) this.accept(files);
    return res;
  }

  /** Records files as accepted by the server (the last one per role wins, as on the server). */
  accept(files: Files): void {
    for (const [name, bytes] of files) {
      const role = name.replace(/\.json$/, '');
      const body = JSON.parse(bytes.toString('utf8')).signed;
      if (role === 'root') this.root = { body, bytes };
      else if (role === 'snapshot') this.snapshot = { body, bytes };
      else if (role !== 'timestamp') this.roles.set(role, { body, bytes });
    }
  }

  /** Adds a target to `role` (targets by default) and publishes it. */
  async addTarget(name: string, content: Buffer | string, role = 'targets'): Promise<Response & { body: Buffer }> {
    const body = this.next(role, (b) => {
      b.targets[name] = targetMeta(content);
    });
    return this.publish(await this.files([[role, body]]));
  }

  /**
   * Delegates `name` (a direct child of its parent) to a new ecdsa key and publishes the parent;
   * with `publishRole`, also publishes the delegation's own first (empty) file.
   */
  async addDelegation(
    name: string,
    opts: { paths?: string[]; threshold?: number; publishRole?: boolean } = {},
  ): Promise<Response & { body: Buffer }> {
    const key = generateSigner('ecdsa');
    this.delegationKeys.set(name, key);
    const parent = name.slice(0, name.lastIndexOf('/'));
    const pbody = this.next(parent, (b) => {
      b.delegations.keys[key.id] = key.key;
      const entry: DelegatedRole = { keyids: [key.id], name, paths: opts.paths ?? [''], threshold: opts.threshold ?? 1 };
      b.delegations.roles = [...b.delegations.roles.filter((r) => r.name !== name), entry];
    });
    const bodies: Array<[string, TargetsBody]> = [[parent, pbody]];
    if (opts.publishRole) bodies.push([name, targetsBody({ version: 1 })]);
    return this.publish(await this.files(bodies));
  }

  /**
   * Root rotation: root v+1 with a new root key, signed by the new key and (unless `signOld` is
   * false) the old one. Publishes it on its own (with a client snapshot if client-held).
   */
  async rotateRoot(opts: { signOld?: boolean; newKey?: boolean; edit?: (b: RootBody) => void } = {}): Promise<Response & { body: Buffer }> {
    const old = this.rootSigners;
    const next = opts.newKey === false ? old : [await newRootSigner(this.gun)];
    this.rootSigners = next;
    const body = this.rootBodyFor(this.root.body.version + 1);
    opts.edit?.(body);
    const signers = opts.signOld === false || next === old ? next : [...old, ...next];
    const bytes = await sign(body, signers);
    const res = await this.publish(await this.files([], { root: bytes }));
    if (res.status !== 200) this.rootSigners = old;
    return res;
  }

  /** Points the root at fresh server keys (after POST *.key) and publishes root v+1. */
  async rotateServerKey(role: 'timestamp' | 'snapshot'): Promise<Response & { body: Buffer }> {
    const k = await fetchServerKey(this.agent, this.gun, role, 'post');
    if (role === 'timestamp') this.timestampKey = k;
    else {
      this.serverSnapshotKey = k;
      this.snapshotKey = undefined;
      this.snapshot = undefined;
    }
    const body = this.rootBodyFor(this.root.body.version + 1);
    return this.publish(await this.files([], { root: await sign(body, this.rootSigners) }));
  }
}

export const initRepo = (agent: Agent, gun: string, opts: InitOptions = {}) => TufRepo.init(agent, gun, opts);

export { DAY_MS, YEAR_MS };
