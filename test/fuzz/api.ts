// Mutated JSON bodies for every management and signing route that takes one (src/management/router.ts,
// src/signing/routes.ts), on a server-managed repository with a signed tag, an imported key, a
// delegation-free targets role and one pending change.
import { createHash, randomBytes } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { exportPrivateKeyPem } from '../../src/core/crypto/pem.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { outsideKey } from '../management/keys-helpers.js';
import type { FuzzRequest, Target } from './harness.js';
import { mutateBytes, mutateTree, serialize, toTree, type Node } from './mutate.js';
import type { Rng } from './prng.js';

interface Fixture {
  gun: string;
  targetsKeyId: string;
  spareKeyId: string;
  pendingId: string;
  importPem: string;
  outsidePem: string;
  outsideId: string;
  root: unknown;
}

const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
let counter = 0;
const newGun = (name: string) => `registry.example.com:5000/fuzzapi/${name}-${process.pid}-${++counter}`;
const enc = encodeURIComponent;

async function expect2xx(res: { status: number; text: string }, what: string): Promise<void> {
  if (res.status < 200 || res.status >= 300) throw new Error(`fixture: ${what}: ${res.status} ${res.text.slice(0, 300)}`);
}

async function buildFixture(t: Target): Promise<Fixture> {
  const a = t.authed;
  const gun = newGun('repo');
  const g = enc(gun);
  await expect2xx(await a.post('/api/v1/repositories').send({ gun, rootKey: 'keystore' }), 'create repository');
  const keys = (await a.get(`/api/v1/repositories/${g}/keys`)).body.keys as Array<{ id: string; role: string }>;
  const targetsKeyId = keys.find((k) => k.role === 'targets')!.id;
  await expect2xx(await a.post(`/api/v1/repositories/${g}/tags`).send({ tag: 'v1', digest: digest('v1'), size: 10 }), 'tag');
  const spare = generateSigner('ecdsa');
  const sparePem = exportPrivateKeyPem(spare.privateKey, { passphrase: 'spare-passphrase', role: 'targets', gun });
  await expect2xx(
    await a.post(`/api/v1/repositories/${g}/keys/import`).send({ pem: sparePem, passphrase: 'spare-passphrase', role: 'targets' }),
    'import',
  );
  const outside = outsideKey();
  const pend = await a.post(`/api/v1/repositories/${g}/roles/targets/keys`).send({ publicKey: outside.publicPem, threshold: 2 });
  await expect2xx(pend, 'pending change');
  const root = JSON.parse((await a.get(`/v2/${gun}/_trust/tuf/root.json`).buffer(true)).text) as unknown;
  const another = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    gun,
    targetsKeyId,
    spareKeyId: spare.id,
    pendingId: pend.body.pending.id as string,
    importPem: exportPrivateKeyPem(another.privateKey, { passphrase: 'import-passphrase', role: 'targets', gun }),
    outsidePem: outside.publicPem,
    outsideId: outside.id,
    root,
  };
}

interface RouteCase {
  name: string;
  method: 'POST' | 'PUT' | 'DELETE';
  path(f: Fixture, gunSeg: string, rng: Rng): string;
  body(f: Fixture): unknown;
}

const CASES: RouteCase[] = [
  {
    name: 'repository.create',
    method: 'POST',
    path: () => '/api/v1/repositories',
    body: () => ({ gun: newGun('new'), rootKey: 'keystore' }),
  },
  { name: 'root.upload', method: 'POST', path: (_f, g) => `/api/v1/repositories/${g}/root`, body: (f) => ({ root: f.root }) },
  {
    name: 'repository.resign',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/resign`,
    body: () => ({ roles: ['targets'], within: '30d' }),
  },
  {
    name: 'key.import',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/keys/import`,
    body: (f) => ({ pem: f.importPem, passphrase: 'import-passphrase', role: 'targets' }),
  },
  {
    name: 'key.rotate',
    method: 'POST',
    path: (_f, g, r) => `/api/v1/repositories/${g}/keys/${r.pick(['targets', 'snapshot', 'timestamp', 'root'])}/rotate`,
    body: () => ({ algorithm: 'ecdsa' }),
  },
  {
    name: 'key.export',
    method: 'POST',
    path: (f, g) => `/api/v1/repositories/${g}/keys/${f.targetsKeyId}/export`,
    body: () => ({ passphrase: 'export-passphrase' }),
  },
  {
    name: 'key.delete',
    method: 'DELETE',
    path: (f, g, r) => `/api/v1/repositories/${g}/keys/${r.pick([f.spareKeyId, f.targetsKeyId, 'f'.repeat(64)])}`,
    body: () => ({}),
  },
  {
    name: 'role.key.add',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/roles/targets/keys`,
    body: (f) => ({ publicKey: f.outsidePem, threshold: 1 }),
  },
  {
    name: 'role.threshold',
    method: 'PUT',
    path: (_f, g, r) => `/api/v1/repositories/${g}/roles/${r.pick(['targets', 'root', 'snapshot'])}/threshold`,
    body: () => ({ threshold: 1 }),
  },
  {
    name: 'delegation.add',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/delegations`,
    body: () => ({ role: 'targets/releases', generate: true, paths: [''], threshold: 1 }),
  },
  {
    name: 'signer.add',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/signers`,
    body: (f) => ({ name: 'alice', publicKeys: [f.outsidePem] }),
  },
  {
    name: 'tag.add',
    method: 'POST',
    path: (_f, g) => `/api/v1/repositories/${g}/tags`,
    body: () => ({ tag: 'v2', digest: digest('v2'), size: 20 }),
  },
  {
    name: 'pending.sign',
    method: 'POST',
    path: (f) => `/api/v1/pending/${f.pendingId}/signatures`,
    body: (f) => ({ signatures: [{ keyid: f.outsideId, sig: randomBytes(64).toString('base64'), role: 'targets' }] }),
  },
  {
    name: 'token.create',
    method: 'POST',
    path: () => '/api/v1/tokens',
    body: () => ({ name: 'ci', scopes: ['signer:registry.example.com:5000/fuzzapi/*'], expiresInSeconds: 3600 }),
  },
  {
    name: 'signing.sign',
    method: 'POST',
    path: () => '/api/v1/signing/sign',
    body: (f) => ({ gun: f.gun, tag: 'v3', digest: digest('v3'), size: 30 }),
  },
  {
    name: 'signing.batch',
    method: 'POST',
    path: () => '/api/v1/signing/batch',
    body: (f) => ({
      gun: f.gun,
      items: [
        { tag: 'b1', digest: digest('b1'), size: 1 },
        { tag: 'b2', digest: digest('b2'), size: 2, role: 'targets' },
      ],
    }),
  },
  { name: 'signing.revoke', method: 'POST', path: () => '/api/v1/signing/revoke', body: (f) => ({ gun: f.gun, tag: 'v1' }) },
  {
    name: 'signing.promote',
    method: 'POST',
    path: () => '/api/v1/signing/promote',
    body: (f) => ({ gun: f.gun, from: { tag: 'v1' }, to: { role: 'targets', tag: 'v1-promoted' } }),
  },
  { name: 'signing.verify', method: 'POST', path: () => '/api/v1/signing/verify', body: (f) => ({ image: `${f.gun}:v1` }) },
];

/** The routes fuzzed, by the management route table's action names (signing.*: the signing POST routes). */
export const FUZZED_ROUTES = CASES.map((c) => c.name);

const TOP_LEVEL = [
  '[]',
  '"x"',
  'null',
  '1e400',
  'true',
  '',
  ' ',
  '{',
  '{"a":1,"a":2}',
  '[{}]',
  '{}'.repeat(3),
  `${'['.repeat(20000)}${']'.repeat(20000)}`,
];
const SEGMENTS = [
  '..',
  '%2e%2e',
  '.',
  'Targets',
  'targets%2Freleases',
  'targets%2F..%2Froot',
  'root',
  'timestamp',
  '%00',
  'x'.repeat(300),
  '%ZZ',
  '',
  '__proto__',
  'F'.repeat(64),
  '%C0%AF',
];
const CONTENT_TYPES = [
  'text/plain',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/x-www-form-urlencoded',
  'application/merge-patch+json',
  'application/json; charset=utf-8; charset=utf-8',
  '',
];

export interface ApiFuzzer {
  gun(): string;
  next(rng: Rng): Promise<{ request: FuzzRequest; mutations: string[] }>;
  /** Called after a 2xx: the fixture is made again every so often, as accepted changes pile up. */
  accepted(): Promise<void>;
}

export async function apiFuzzer(t: Target): Promise<ApiFuzzer> {
  let f = await buildFixture(t);
  let acceptedSince = 0;
  return {
    gun: () => f.gun,
    async accepted() {
      if (++acceptedSince >= 25) {
        f = await buildFixture(t);
        acceptedSince = 0;
      }
    },
    async next(rng) {
      const c = rng.pick(CASES);
      const mutations = [`route:${c.name}`];
      let gunSeg = enc(f.gun);
      if (rng.chance(0.05)) {
        gunSeg = rng.pick([
          enc(f.gun.toUpperCase()),
          `${gunSeg}%2F..`,
          enc(`${f.gun}/`),
          '%ZZ',
          enc('x'.repeat(300)),
          enc(`${f.gun}\u0000`),
          '..',
          enc('registry.example.com:5000/fuzzapi/targets'),
        ]);
        mutations.push(`path:${gunSeg.slice(-16)}`);
      }
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      const base = c.body(f);
      let text: Buffer;
      const mode = rng.weighted<string>([
        [60, 'json'],
        [20, 'bytes'],
        [10, 'headers'],
        [10, 'top'],
      ]);
      mutations.push(`mode:${mode}`);
      if (mode === 'json') {
        const tree: Node = toTree(base);
        for (let k = rng.int(1, 3); k > 0; k--) mutations.push(mutateTree(rng, tree));
        text = Buffer.from(serialize(tree), 'utf8');
      } else if (mode === 'bytes') {
        text = Buffer.from(JSON.stringify(base), 'utf8');
        for (let k = rng.int(1, 3); k > 0; k--) {
          const m = mutateBytes(rng, text);
          text = m.bytes;
          mutations.push(m.op);
        }
      } else if (mode === 'headers') {
        text = Buffer.from(JSON.stringify(base), 'utf8');
        const h = rng.pick(['content-type', 'gzip', 'deflate', 'br', 'identity, gzip']);
        mutations.push(`header:${h}`);
        if (h === 'content-type') headers['Content-Type'] = rng.pick(CONTENT_TYPES);
        else headers['Content-Encoding'] = h;
      } else {
        text = Buffer.from(rng.pick(TOP_LEVEL), 'utf8');
      }
      if (headers['Content-Type'] === '') delete headers['Content-Type'];
      let path = c.path(f, gunSeg, rng);
      if (rng.chance(0.05)) {
        // Another path segment after /api/v1 (a role, key ID, pending ID or route word).
        const segs = path.split('/');
        const i = rng.int(3, segs.length - 1);
        segs[i] = rng.pick(SEGMENTS);
        path = segs.join('/');
        mutations.push(`segment:${i}`);
      }
      return { request: { method: c.method, path, headers, body: text }, mutations };
    },
  };
}
