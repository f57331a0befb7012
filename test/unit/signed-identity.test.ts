// signedIdentity as containers-policy.json(5) defines it: a table of (mode, image as pulled,
// identity the signature claims) with containers/image's answer, checked against trustgate's
// matcher (src/core/signed-identity.ts) and the independent one in test/helpers/strict-cosign.ts;
// the docker reference grammar; and the policy file's signedIdentity (schema and load checks).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNormalizedNamed, referenceString } from '../../src/core/docker-reference.js';
import { identityMatcher, type SignedIdentity } from '../../src/core/signed-identity.js';
import { parsePolicy, PolicyError, ruleFor } from '../../src/proxy/policy.js';
import { identityAccepts, parseNormalized } from '../helpers/strict-cosign.js';

const D = 'sha256:' + '1f'.repeat(32);
const E = 'sha256:' + '2e'.repeat(32);
const R = 'reg.example:5000/team/app';

// [identity, intended, claimed, containers/image accepts]
const TABLE: Array<[SignedIdentity, string, string, boolean]> = [
  // matchRepoDigestOrExact: a tag exactly; a digest by repository; never a bare repository.
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, `${R}:v1`, true],
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, `${R}:v2`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, `${R}@${D}`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `${R}@${D}`, true],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `${R}@${E}`, true], // the digest itself is checked apart
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `${R}:v1`, true],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, R, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, R, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `${R}-x:v1`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `reg.example:5000/team/ap:v1`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `${R}/sub:v1`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}@${D}`, `reg.example:5001/team/app:v1`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, `REG.example:5000/team/app:v1`, false],
  [{ type: 'matchRepoDigestOrExact' }, `${R}:v1`, `${R}:v1 `, false],
  // matchExact: the same reference, tag or digest.
  [{ type: 'matchExact' }, `${R}:v1`, `${R}:v1`, true],
  [{ type: 'matchExact' }, `${R}@${D}`, `${R}:v1`, false],
  [{ type: 'matchExact' }, `${R}@${D}`, `${R}@${D}`, true],
  [{ type: 'matchExact' }, `${R}:v1`, R, false],
  // matchRepository: any reference in the repository, a bare one too.
  [{ type: 'matchRepository' }, `${R}:v1`, `${R}:v9`, true],
  [{ type: 'matchRepository' }, `${R}:v1`, R, true],
  [{ type: 'matchRepository' }, `${R}@${D}`, `${R}@${E}`, true],
  [{ type: 'matchRepository' }, `${R}:v1`, `${R}/x:v1`, false],
  [{ type: 'matchRepository' }, `${R}:v1`, 'reg.example:5000/team:v1', false],
  // Docker Hub names normalize: busybox is docker.io/library/busybox.
  [{ type: 'matchRepository' }, 'docker.io/library/busybox:1', 'busybox:2', true],
  [{ type: 'matchRepository' }, 'docker.io/library/busybox:1', 'index.docker.io/library/busybox', true],
  // exactReference: the fixed reference, whatever is pulled.
  [{ type: 'exactReference', dockerReference: 'mirror.example/team/app:1.0' }, `${R}:v1`, 'mirror.example/team/app:1.0', true],
  [{ type: 'exactReference', dockerReference: 'mirror.example/team/app:1.0' }, `${R}:v1`, 'mirror.example/team/app:1.1', false],
  [{ type: 'exactReference', dockerReference: 'mirror.example/team/app:1.0' }, `${R}:v1`, 'mirror.example/team/app', false],
  [{ type: 'exactReference', dockerReference: `mirror.example/team/app@${D}` }, `${R}:v1`, `mirror.example/team/app@${D}`, true],
  // exactRepository: any reference in the fixed repository.
  [{ type: 'exactRepository', dockerRepository: 'mirror.example/team/app' }, `${R}:v1`, 'mirror.example/team/app:x', true],
  [{ type: 'exactRepository', dockerRepository: 'mirror.example/team/app' }, `${R}:v1`, 'mirror.example/team/app', true],
  [{ type: 'exactRepository', dockerRepository: 'mirror.example/team/app' }, `${R}:v1`, 'mirror.example/team/app2:x', false],
  [{ type: 'exactRepository', dockerRepository: 'mirror.example/team/app' }, `${R}:v1`, `${R}:v1`, false],
  // remapIdentity: the pulled name's prefix is replaced, then matchRepoDigestOrExact.
  [{ type: 'remapIdentity', prefix: 'reg.example:5000/team', signedPrefix: 'up.example/prod' }, `${R}:v1`, 'up.example/prod/app:v1', true],
  [{ type: 'remapIdentity', prefix: 'reg.example:5000/team', signedPrefix: 'up.example/prod' }, `${R}:v1`, `${R}:v1`, false],
  [{ type: 'remapIdentity', prefix: 'reg.example:5000/team', signedPrefix: 'up.example/prod' }, `${R}:v1`, 'up.example/prod/app:v2', false],
  [
    { type: 'remapIdentity', prefix: 'reg.example:5000/team', signedPrefix: 'up.example/prod' },
    `${R}@${D}`,
    'up.example/prod/app:v2',
    true,
  ],
  [
    { type: 'remapIdentity', prefix: 'reg.example:5000/team', signedPrefix: 'up.example/prod' },
    `${R}@${D}`,
    'up.example/prod/app2:v2',
    false,
  ],
  // A prefix matches whole segments only: team does not match teams/app.
  [{ type: 'remapIdentity', prefix: 'reg.example:5000/tea', signedPrefix: 'up.example/prod' }, `${R}:v1`, 'up.example/prodm/app:v1', false],
  [{ type: 'remapIdentity', prefix: 'reg.example:5000/tea', signedPrefix: 'up.example/prod' }, `${R}:v1`, `${R}:v1`, true],
  // A host prefix.
  [{ type: 'remapIdentity', prefix: 'reg.example:5000', signedPrefix: 'up.example' }, `${R}:v1`, 'up.example/team/app:v1', true],
];

test('each signedIdentity mode accepts and refuses as containers/image does, in both matchers', () => {
  for (const [identity, intended, claimed, want] of TABLE) {
    const what = `${JSON.stringify(identity)} pulling ${intended}, signed ${claimed}`;
    assert.equal(identityAccepts(identity, intended, claimed), want, `strict verifier: ${what}`);
    assert.equal(identityMatcher(identity, intended)(claimed), want, `trustgate: ${what}`);
  }
});

test('the default accepts matchRepoDigestOrExact and the bare repository cosign and trustgate write, nothing else', () => {
  const pulled = [`${R}:v1`, `${R}@${D}`];
  for (const intended of pulled) {
    const m = identityMatcher(undefined, intended);
    assert.equal(m(R), true, `bare repository for ${intended}`);
    assert.equal(m('reg.example:5000/team/app2'), false);
    assert.equal(m('reg.example:5000/team'), false);
    assert.equal(m(`${R}/x`), false);
    assert.equal(m(`${R}@${D}`), intended.includes('@'));
    assert.equal(m(`${R}:v1`), true);
    assert.equal(m(`${R}:v2`), intended.includes('@'));
    assert.equal(m('not a reference!'), false);
  }
});

test('docker references parse and normalize as containers/image does', () => {
  const cases: Array<[string, string | undefined]> = [
    ['busybox', 'docker.io/library/busybox'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['index.docker.io/foo/bar', 'docker.io/foo/bar'],
    ['localhost/app:v1', 'localhost/app:v1'],
    ['localhost:5000/a/b@' + D, 'localhost:5000/a/b@' + D],
    ['reg.example:5000/team/app:v1@' + D, 'reg.example:5000/team/app:v1@' + D],
    ['my-registry/app', 'docker.io/my-registry/app'], // no dot, colon or localhost: a path under docker.io
    ['a__b/c--d/e.f_g', 'docker.io/a__b/c--d/e.f_g'],
    ['Reg.Example/app', 'Reg.Example/app'],
    ['reg.example/App', undefined],
    ['reg.example/app:', undefined],
    ['reg.example/app@sha256:abc', undefined],
    ['reg.example/app@md5:' + 'a'.repeat(32), undefined],
    ['reg.example/app@sha256:' + 'A'.repeat(64), undefined],
    ['reg.example/-app', undefined],
    ['reg.example/app_', undefined],
    ['reg.example//app', undefined],
    ['1f'.repeat(32), undefined],
    ['reg.example/' + 'a'.repeat(250), undefined],
    ['reg.example/app:' + 't'.repeat(129), undefined],
    ['', undefined],
  ];
  for (const [input, want] of cases) {
    let got: string | undefined;
    try {
      got = referenceString(parseNormalizedNamed(input));
    } catch {
      got = undefined;
    }
    assert.equal(got, want, `trustgate parses ${JSON.stringify(input)}`);
    let strict: string | undefined;
    try {
      const r = parseNormalized(input);
      strict = r.name + (r.tag ? `:${r.tag}` : '') + (r.digest ? `@${r.digest}` : '');
    } catch {
      strict = undefined;
    }
    assert.equal(strict, want, `the strict verifier parses ${JSON.stringify(input)}`);
  }
  // A long hostile name is refused quickly (no catastrophic backtracking).
  const t0 = Date.now();
  assert.throws(() => parseNormalizedNamed('reg.example/' + 'a'.repeat(200) + '-'.repeat(200) + '!'));
  assert.throws(() => parseNormalizedNamed('reg.example/' + 'a-'.repeat(400) + '!'));
  assert.ok(Date.now() - t0 < 500);
});

test('a policy rule takes signedIdentity in containers-policy.json shape; a bad one is refused at load', () => {
  const p = parsePolicy(
    [
      'version: 1',
      'repositories:',
      '  - pattern: "a/**"',
      '    signatures: cosign',
      '    signedIdentity: {type: matchRepository}',
      '  - pattern: "b/**"',
      '    signatures: cosign',
      '    signedIdentity: {type: remapIdentity, prefix: "reg.example:5000/b", signedPrefix: "up.example/b"}',
      '  - pattern: "c/**"',
      '    signatures: cosign',
      '',
    ].join('\n'),
    'test',
  );
  assert.deepEqual(ruleFor(p, 'a/x').signedIdentity, { type: 'matchRepository' });
  assert.deepEqual(ruleFor(p, 'b/x').signedIdentity, { type: 'remapIdentity', prefix: 'reg.example:5000/b', signedPrefix: 'up.example/b' });
  assert.equal(ruleFor(p, 'c/x').signedIdentity, undefined);
  const bad = (identity: string, why: RegExp) =>
    assert.throws(
      () => parsePolicy(`version: 1\nrepositories:\n  - pattern: "a/**"\n    signedIdentity: ${identity}\n`, 'test'),
      (e: Error) => e instanceof PolicyError && why.test(e.message),
      identity,
    );
  bad('{type: matchSomething}', /signedIdentity/);
  bad('{type: matchRepository, extra: 1}', /signedIdentity/);
  bad('{type: exactReference}', /signedIdentity/);
  bad('{type: exactReference, dockerReference: "reg.example/app"}', /neither a tag nor a digest/);
  bad('{type: exactReference, dockerReference: "reg.example/App:v1"}', /not a docker reference/);
  bad('{type: exactRepository, dockerRepository: "not a ref"}', /not a docker reference/);
  bad('{type: remapIdentity, prefix: "reg.example/app:v1", signedPrefix: "up.example"}', /prefix/);
  bad('{type: remapIdentity, prefix: "-bad", signedPrefix: "up.example"}', /prefix/);
});
