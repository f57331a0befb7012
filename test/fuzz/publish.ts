// Mutated Notary publishes (multipart POST /v2/<gun>/_trust/tuf/): valid publishes of five shapes
// (new repository with client- or server-held snapshot, new targets, a delegation, a root
// rotation), broken at the byte, JSON (re-signed, so the checks past the signature are reached)
// or multipart level.
import { randomBytes } from 'node:crypto';
import { signingMethod } from '../../src/core/crypto/keys.js';
import { generateSigner, type Signer } from '../../src/core/crypto/signer.js';
import { canonicalBytes, parseJson } from '../../src/core/json/canonical.js';
import { initRepo, newRootSigner, sign, targetMeta, targetsBody, type Files, type TufRepo } from '../helpers/tuf-builder.js';
import type { FuzzRequest, Target } from './harness.js';
import { tufUrl } from './harness.js';
import { encodeMultipart, mbody, mutateBytes, mutateMultipart, mutateTree, parseTree, serialize } from './mutate.js';
import type { Rng } from './prng.js';

const KINDS = ['init-client', 'init-server', 'update', 'delegation', 'rotate-root'] as const;
type Kind = (typeof KINDS)[number];

export interface Scenario {
  kind: Kind;
  gun: string;
  repo: TufRepo;
  files: Files;
  signers: Map<string, Signer[]>;
}

let counter = 0;
const newGun = (kind: string) => `registry.example.com:5000/fuzz/${kind}-${process.pid}-${++counter}`;

/** A valid publish of `kind` on a new GUN (the repository made first where the publish needs one). */
export async function buildScenario(t: Target, kind: Kind): Promise<Scenario> {
  const gun = newGun(kind);
  const fresh = kind === 'init-client' || kind === 'init-server';
  const repo = await initRepo(t.authed, gun, { serverSnapshot: kind === 'init-server', publish: !fresh });
  const signers = new Map<string, Signer[]>([
    ['root', repo.rootSigners],
    ['targets', [repo.targetsKey]],
  ]);
  if (repo.snapshotKey) signers.set('snapshot', [repo.snapshotKey]);
  let files: Files;
  if (fresh) files = repo.pending;
  else if (kind === 'update') {
    files = await repo.files([['targets', repo.next('targets', (b) => void (b.targets.v2 = targetMeta('fuzz-v2')))]]);
  } else if (kind === 'delegation') {
    const key = generateSigner('ecdsa');
    repo.delegationKeys.set('targets/releases', key);
    signers.set('targets/releases', [key]);
    const parent = repo.next('targets', (b) => {
      b.delegations.keys[key.id] = key.key;
      b.delegations.roles.push({ keyids: [key.id], name: 'targets/releases', paths: [''], threshold: 1 });
    });
    files = await repo.files([
      ['targets', parent],
      ['targets/releases', targetsBody({ version: 1, targets: { v1: targetMeta('fuzz-release') } })],
    ]);
  } else {
    const old = repo.rootSigners;
    const next = await newRootSigner(gun);
    repo.rootSigners = [next];
    const body = repo.rootBodyFor(repo.root.body.version + 1);
    signers.set('root', [...old, next]);
    files = await repo.files([], { root: await sign(body, [...old, next]) });
  }
  return { kind, gun, repo, files, signers };
}

/** Signs JSON text (a mutated `signed`) as a client would: over its canonical form when it has one. */
async function resign(signedText: string, signers: Signer[]): Promise<Buffer> {
  let message: Buffer;
  try {
    message = canonicalBytes(parseJson(signedText));
  } catch {
    message = Buffer.from(signedText, 'utf8');
  }
  const sigs = [];
  for (const s of signers)
    sigs.push({ keyid: s.id, method: signingMethod(s.key.keytype), sig: (await s.sign(message)).toString('base64') });
  return Buffer.from(`{"signed":${signedText},"signatures":${JSON.stringify(sigs)}}`, 'utf8');
}

/** Replaces a client-held snapshot with one over the (mutated) files, so the change gets past the hash check. */
async function refreshSnapshot(sc: Scenario, files: Files): Promise<void> {
  const i = files.findIndex(([n]) => n === 'snapshot');
  if (i < 0 || !sc.repo.snapshotKey) return;
  files[i] = ['snapshot', await sc.repo.clientSnapshot(files.filter(([n]) => n !== 'snapshot' && !n.includes('..')))];
}

export interface PublishFuzzer {
  /** The GUN the next request is about (for the state fingerprint). */
  gun(): string;
  next(rng: Rng): Promise<{ request: FuzzRequest; mutations: string[] }>;
  /** The last request was accepted: its scenario has moved on and is made again. */
  accepted(): Promise<void>;
}

export async function publishFuzzer(t: Target): Promise<PublishFuzzer> {
  const scenarios = new Map<Kind, Scenario>();
  for (const k of KINDS) scenarios.set(k, await buildScenario(t, k));
  let current: Scenario = scenarios.get('update')!;
  return {
    gun: () => current.gun,
    async accepted() {
      scenarios.set(current.kind, await buildScenario(t, current.kind));
    },
    async next(r) {
      current = scenarios.get(r.pick(KINDS))!;
      const sc = current;
      const files: Files = sc.files.map(([n, b]) => [n, b]);
      const mutations: string[] = [`scenario:${sc.kind}`];
      const mode = r.weighted<string>([
        [35, 'signed'],
        [15, 'envelope'],
        [20, 'bytes'],
        [20, 'multipart'],
        [10, 'mixed'],
      ]);
      mutations.push(`mode:${mode}`);
      if (mode === 'signed' || mode === 'mixed') {
        const i = r.int(0, files.length - 1);
        const [name, bytes] = files[i]!;
        const env = JSON.parse(bytes.toString('utf8')) as { signed: unknown };
        const tree = parseTree(JSON.stringify(env.signed));
        for (let k = r.int(1, 3); k > 0; k--) mutations.push(`${name}:${mutateTree(r, tree)}`);
        files[i] = [name, await resign(serialize(tree), sc.signers.get(name) ?? [])];
        if (name !== 'snapshot' && r.chance(0.8)) await refreshSnapshot(sc, files);
      } else if (mode === 'envelope') {
        const i = r.int(0, files.length - 1);
        const [name, bytes] = files[i]!;
        const tree = parseTree(bytes.toString('utf8'));
        for (let k = r.int(1, 3); k > 0; k--) mutations.push(`${name}:${mutateTree(r, tree)}`);
        files[i] = [name, Buffer.from(serialize(tree), 'utf8')];
      } else if (mode === 'bytes') {
        const i = r.int(0, files.length - 1);
        let bytes = files[i]![1];
        for (let k = r.int(1, 3); k > 0; k--) {
          const m = mutateBytes(r, bytes);
          bytes = m.bytes;
          mutations.push(`${files[i]![0]}:${m.op}`);
        }
        files[i] = [files[i]![0], bytes];
        if (files[i]![0] !== 'snapshot' && r.chance(0.5)) await refreshSnapshot(sc, files);
      }
      const m = mbody(files, `fuzz${randomBytes(8).toString('hex')}`);
      if (mode === 'multipart' || mode === 'mixed') for (let k = r.int(1, 2); k > 0; k--) mutations.push(mutateMultipart(r, m));
      const { body, contentType } = encodeMultipart(m);
      let gun = sc.gun;
      if (r.chance(0.03)) {
        gun = r.pick([
          gun.toUpperCase(),
          `${gun}/`,
          `${gun}/..`,
          gun.replace('/fuzz/', '/fuzz/./'),
          gun.replace(/\//g, '%2F'),
          `${gun}%00`,
        ]);
        mutations.push(`path:${gun.slice(-12)}`);
      }
      const headers: Record<string, string> = contentType === '' ? {} : { 'Content-Type': contentType };
      return { request: { method: 'POST', path: tufUrl(gun), headers, body }, mutations };
    },
  };
}
