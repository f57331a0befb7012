// Unit tests of the pure client-side chain verification (src/core/tuf/verify.ts), on real signed
// metadata made with the project's own keys and canonical JSON.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateSigner, type LocalSigner } from '../../src/core/crypto/signer.js';
import type { TargetsBody } from '../../src/core/tuf/metadata.js';
import { resolveTarget, signedDigests, targetsForDigest, verifyRepository, type VerifyInput } from '../../src/core/tuf/verify.js';
import { DAY_MS, newRootSigner, rootBody, sign, snapshotBody, targetMeta, targetsBody, YEAR_MS } from '../helpers/tuf-builder.js';
import { formatRfc3339 } from '../../src/core/tuf/time.js';
import { digestOf } from '../helpers/util.js';

const GUN = 'registry.test:5000/team/app';
const NOW = Date.now();

interface Built {
  input: VerifyInput;
  keys: { root: LocalSigner; targets: LocalSigner; snapshot: LocalSigner; timestamp: LocalSigner; releases: LocalSigner };
  roles: Map<string, Buffer>;
}

interface BuildOptions {
  targets?: (b: TargetsBody) => void;
  releases?: (b: TargetsBody) => void | false;
  releasesPaths?: string[];
  targetsThreshold?: number;
  timestampExpires?: string;
  versions?: { timestamp?: number; snapshot?: number; targets?: number };
}

async function build(opts: BuildOptions = {}): Promise<Built> {
  const keys = {
    root: await newRootSigner(GUN),
    targets: generateSigner('ecdsa'),
    snapshot: generateSigner('ecdsa'),
    timestamp: generateSigner('ed25519'),
    releases: generateSigner('ecdsa'),
  };
  const root = await sign(
    rootBody({
      version: 1,
      root: [keys.root.key],
      targets: [keys.targets.key],
      snapshot: [keys.snapshot.key],
      timestamp: [keys.timestamp.key],
      thresholds: { targets: opts.targetsThreshold ?? 1 },
    }),
    [keys.root],
  );
  const tb = targetsBody({ version: opts.versions?.targets ?? 2, targets: { v1: targetMeta('manifest-v1') } });
  tb.delegations = {
    keys: { [keys.releases.id]: keys.releases.key },
    roles: [{ name: 'targets/releases', keyids: [keys.releases.id], threshold: 1, paths: opts.releasesPaths ?? [''] }],
  };
  opts.targets?.(tb);
  const rb = targetsBody({ version: 1, targets: { v1: targetMeta('manifest-v1'), v2: targetMeta('manifest-v2') } });
  const keepReleases = opts.releases?.(rb) !== false;
  const roles = new Map<string, Buffer>([['targets', await sign(tb, [keys.targets])]]);
  if (keepReleases) roles.set('targets/releases', await sign(rb, [keys.releases]));
  const snapshot = await sign(snapshotBody({ version: opts.versions?.snapshot ?? 3, files: new Map([['root', root], ...roles]) }), [
    keys.snapshot,
  ]);
  const timestamp = await sign(
    {
      _type: 'Timestamp',
      expires: opts.timestampExpires ?? formatRfc3339(NOW + 14 * DAY_MS),
      meta: { snapshot: snapshotBody({ version: 1, files: { snapshot } }).meta.snapshot! },
      version: opts.versions?.timestamp ?? 4,
    },
    [keys.timestamp],
  );
  return { input: { gun: GUN, roots: [root], timestamp, snapshot, roles, nowMs: NOW }, keys, roles };
}

function expectFailure(r: ReturnType<typeof verifyRepository>, reason: string, role?: string) {
  assert.equal(r.ok, false, 'verification should fail');
  if (r.ok) return;
  assert.equal(r.reason, reason, r.message);
  if (role) assert.equal(r.role, role, r.message);
}

test('a valid chain resolves a tag to the digest and length the accepted role signs', async () => {
  const b = await build();
  const repo = verifyRepository(b.input);
  assert.ok(repo.ok, !repo.ok ? repo.message : '');
  assert.deepEqual(repo.versions, { root: 1, timestamp: 4, snapshot: 3, targets: 2, 'targets/releases': 1 });
  const t = resolveTarget(repo, 'v2');
  assert.ok(t.ok);
  assert.equal(t.digest, digestOf('manifest-v2'));
  assert.equal(t.length, 'manifest-v2'.length);
  assert.equal(t.role, 'targets/releases');
  assert.deepEqual(t.signers, [b.keys.releases.id]);
  // targets/releases comes first for docker; both list v1 with the same digest.
  const v1 = resolveTarget(repo, 'v1');
  assert.ok(v1.ok);
  assert.deepEqual(v1.roles, ['targets/releases', 'targets']);
  assert.equal(resolveTarget(repo, 'v1', { roles: ['targets/releases', 'targets'], threshold: 2 }).ok, true);
  const missing = resolveTarget(repo, 'v3');
  assert.equal(missing.ok, false);
  assert.equal(!missing.ok && missing.reason, 'not-signed');
  assert.deepEqual(
    targetsForDigest(repo, digestOf('manifest-v1')).map((r) => r.name),
    ['v1'],
  );
  assert.deepEqual([...signedDigests(repo).keys()].sort(), [digestOf('manifest-v1'), digestOf('manifest-v2')].sort());
});

test('a snapshot whose bytes differ from the timestamp meta is refused (mix-and-match)', async () => {
  const b = await build();
  const tampered = Buffer.from(b.input.snapshot.toString('utf8').replace('"version":3', '"version":3 '));
  expectFailure(verifyRepository({ ...b.input, snapshot: tampered }), 'hash-mismatch', 'snapshot');
  // A snapshot validly signed but not the one the timestamp names is refused too.
  const other = await sign(snapshotBody({ version: 5, files: new Map([['root', b.input.roots[0]!], ...b.roles]) }), [b.keys.snapshot]);
  expectFailure(verifyRepository({ ...b.input, snapshot: other }), 'hash-mismatch', 'snapshot');
});

test('targets whose bytes differ from the snapshot meta are refused', async () => {
  const b = await build();
  const forged = await sign(targetsBody({ version: 2, targets: { v1: targetMeta('evil') } }), [b.keys.targets]);
  expectFailure(verifyRepository({ ...b.input, roles: new Map([...b.roles, ['targets', forged]]) }), 'hash-mismatch', 'targets');
});

test('versions older than the last verified ones are a rollback', async () => {
  const b = await build();
  const ok = verifyRepository({ ...b.input, lastVersions: { timestamp: 4, snapshot: 3, targets: 2 } });
  assert.ok(ok.ok);
  expectFailure(verifyRepository({ ...b.input, lastVersions: { timestamp: 5 } }), 'rollback', 'timestamp');
  expectFailure(verifyRepository({ ...b.input, lastVersions: { snapshot: 9 } }), 'rollback', 'snapshot');
  expectFailure(verifyRepository({ ...b.input, lastVersions: { targets: 3 } }), 'rollback', 'targets');
});

test('an expired timestamp is refused (freeze attack)', async () => {
  const b = await build({ timestampExpires: formatRfc3339(NOW - 1000) });
  expectFailure(verifyRepository(b.input), 'expired', 'timestamp');
  // and the same data is fine for a clock before the expiry
  assert.ok(verifyRepository({ ...b.input, nowMs: NOW - 60_000 }).ok);
  // targets expire too (3 years by default)
  const later = await build();
  expectFailure(verifyRepository({ ...later.input, nowMs: NOW + 4 * YEAR_MS, timestamp: later.input.timestamp }), 'expired');
});

test('targets signed below the root threshold are refused', async () => {
  const b = await build({ targetsThreshold: 1 });
  assert.ok(verifyRepository(b.input).ok);
  const two = await build({ targetsThreshold: 2 });
  // The root lists one targets key with threshold 2: one signature cannot meet it. Root keeps its signature valid
  // only if threshold <= keys, so the check here is the verifier's, not the shape rule's.
  expectFailure(verifyRepository(two.input), 'threshold-not-met', 'targets');
});

test('a timestamp signed by a key the root does not list is refused', async () => {
  const b = await build();
  const stranger = generateSigner('ecdsa');
  const body = JSON.parse(b.input.timestamp.toString('utf8')).signed;
  expectFailure(verifyRepository({ ...b.input, timestamp: await sign(body, [stranger]) }), 'threshold-not-met', 'timestamp');
});

test('a delegation listing a tag outside its paths is ignored, and the reason is named', async () => {
  const b = await build({ releasesPaths: ['prod-'], releases: (rb) => void (rb.targets['prod-1'] = targetMeta('p1')) });
  const repo = verifyRepository(b.input);
  assert.ok(repo.ok);
  const r = resolveTarget(repo, 'v2');
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.reason, 'delegation-path');
  const p = resolveTarget(repo, 'prod-1');
  assert.ok(p.ok && p.role === 'targets/releases');
  // v1 still resolves, from targets, which covers every path.
  const v1 = resolveTarget(repo, 'v1');
  assert.ok(v1.ok && v1.role === 'targets');
});

test('a broken delegation is skipped; the tag falls back to targets or is reported unsigned with the cause', async () => {
  const b = await build();
  const wrongKey = await sign(targetsBody({ version: 1, targets: { v2: targetMeta('manifest-v2') } }), [generateSigner('ecdsa')]);
  const roles = new Map([...b.roles, ['targets/releases', wrongKey]]);
  // keep the snapshot/timestamp consistent with the tampered delegation, signed by the real keys
  const snapshot = await sign(snapshotBody({ version: 3, files: new Map([['root', b.input.roots[0]!], ...roles]) }), [b.keys.snapshot]);
  const timestamp = await sign(
    {
      _type: 'Timestamp',
      expires: formatRfc3339(NOW + DAY_MS),
      meta: { snapshot: snapshotBody({ version: 1, files: { snapshot } }).meta.snapshot! },
      version: 4,
    },
    [b.keys.timestamp],
  );
  const repo = verifyRepository({ ...b.input, roles, snapshot, timestamp });
  assert.ok(repo.ok);
  assert.deepEqual(
    repo.skipped.map((s) => [s.role, s.reason]),
    [['targets/releases', 'threshold-not-met']],
  );
  assert.ok((resolveTarget(repo, 'v1') as { role: string }).role === 'targets');
  const v2 = resolveTarget(repo, 'v2');
  assert.equal(!v2.ok && v2.reason, 'threshold-not-met');
});

test('required signers and thresholds are enforced', async () => {
  const b = await build();
  const repo = verifyRepository(b.input);
  assert.ok(repo.ok);
  assert.ok(resolveTarget(repo, 'v2', { signers: [b.keys.releases.id] }).ok);
  const r = resolveTarget(repo, 'v2', { signers: [b.keys.targets.id] });
  assert.equal(!r.ok && r.reason, 'policy-unmet');
  const two = resolveTarget(repo, 'v2', { threshold: 2 });
  assert.equal(!two.ok && two.reason, 'policy-unmet');
  const only = resolveTarget(repo, 'v2', { roles: ['targets'] });
  assert.equal(!only.ok && only.reason, 'not-signed');
});

test('root rotation: a new root must chain from the trusted one through every version', async () => {
  const b = await build();
  const v1 = b.input.roots[0]!;
  const r2 = await newRootSigner(GUN);
  const r3 = await newRootSigner(GUN);
  const body = (version: number, rootKey: LocalSigner) =>
    rootBody({
      version,
      root: [rootKey.key],
      targets: [b.keys.targets.key],
      snapshot: [b.keys.snapshot.key],
      timestamp: [b.keys.timestamp.key],
    });
  const v2 = await sign(body(2, r2), [b.keys.root, r2]);
  const v3 = await sign(body(3, r3), [r2, r3]);
  // The snapshot names the current root; rebuild snapshot and timestamp over v3.
  const rebuild = async (cur: Buffer) => {
    const snapshot = await sign(snapshotBody({ version: 3, files: new Map([['root', cur], ...b.roles]) }), [b.keys.snapshot]);
    const timestamp = await sign(
      {
        _type: 'Timestamp',
        expires: formatRfc3339(NOW + DAY_MS),
        meta: { snapshot: snapshotBody({ version: 1, files: { snapshot } }).meta.snapshot! },
        version: 4,
      },
      [b.keys.timestamp],
    );
    return { snapshot, timestamp };
  };
  const at3 = await rebuild(v3);
  const good = verifyRepository({ ...b.input, ...at3, trustedRoot: v1, roots: [v2, v3] });
  assert.ok(good.ok, !good.ok ? good.message : '');
  assert.equal(good.versions.root, 3);
  // Skipping v2 breaks the chain.
  expectFailure(verifyRepository({ ...b.input, ...at3, trustedRoot: v1, roots: [v3] }), 'untrusted-root', 'root');
  // A v2 not signed by the v1 root key is refused.
  const rogue = await sign(body(2, r2), [r2]);
  expectFailure(verifyRepository({ ...b.input, ...(await rebuild(rogue)), trustedRoot: v1, roots: [rogue] }), 'untrusted-root', 'root');
  // The current root older than the trusted one is a rollback.
  expectFailure(verifyRepository({ ...b.input, trustedRoot: v2, roots: [v1] }), 'rollback', 'root');
  // A snapshot recording another root than the current one is refused.
  expectFailure(verifyRepository({ ...b.input, trustedRoot: v1, roots: [v2, v3] }), 'hash-mismatch', 'root');
});

test('a root whose certificate is not for this GUN is not trusted on first use', async () => {
  const b = await build();
  expectFailure(verifyRepository({ ...b.input, gun: 'registry.test:5000/other' }), 'untrusted-root', 'root');
  expectFailure(verifyRepository({ ...b.input, roots: [] }), 'no-trust-data');
  expectFailure(verifyRepository({ ...b.input, timestamp: Buffer.from('not json') }), 'malformed', 'timestamp');
});

// Tags are untrusted names, and "__proto__", "constructor", "toString"... are valid OCI tags.
const OBJECT_MEMBER_TAGS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'length', 'hashes'];
/** An own "__proto__" member, as JSON.parse makes it (plain assignment would set the prototype). */
const putOwn = (o: object, k: string, v: unknown) =>
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });

test('tags named like Object.prototype members are unsigned unless listed, like any other tag', async () => {
  const repo = verifyRepository((await build()).input);
  assert.ok(repo.ok, !repo.ok ? repo.message : '');
  for (const tag of [...OBJECT_MEMBER_TAGS, 'v3']) {
    const r = resolveTarget(repo, tag);
    assert.equal(r.ok, false, tag);
    assert.equal(!r.ok && r.reason, 'not-signed', `${tag}: ${!r.ok && r.message}`);
  }
});

test('a signed "__proto__" tag resolves to its digest, and other member names stay unsigned', async () => {
  const b = await build({ targets: (t) => void putOwn(t.targets, '__proto__', targetMeta('manifest-proto')) });
  assert.match(b.roles.get('targets')!.toString(), /"__proto__":\{"hashes"/);
  const repo = verifyRepository(b.input);
  assert.ok(repo.ok, !repo.ok ? repo.message : '');
  const t = resolveTarget(repo, '__proto__');
  assert.ok(t.ok, !t.ok ? `${t.reason}: ${t.message}` : '');
  assert.equal(t.digest, digestOf('manifest-proto'));
  assert.equal(t.length, 'manifest-proto'.length);
  assert.equal(t.role, 'targets');
  assert.deepEqual(
    targetsForDigest(repo, digestOf('manifest-proto')).map((r) => r.name),
    ['__proto__'],
  );
  assert.ok(signedDigests(repo).has(digestOf('manifest-proto')));
  for (const tag of OBJECT_MEMBER_TAGS.filter((x) => x !== '__proto__')) {
    const r = resolveTarget(repo, tag);
    assert.equal(!r.ok && r.reason, 'not-signed', tag);
  }
  assert.equal((resolveTarget(repo, 'v1') as { digest: string }).digest, digestOf('manifest-v1'));
});
