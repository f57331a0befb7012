// The signing REST routes against a real trustgate: sign (single and batch), revoke, promote,
// verify, inspect and the public key, with real tokens; every refused request is shown to have
// published nothing (no role's version moved).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { REQUEST_FIELDS } from '../../src/signing/routes.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import {
  addDelegation,
  bearer,
  fakeDigest,
  initRepo,
  newGun,
  startSigningServer,
  targetsOf,
  versions,
  type SigningServer,
} from './support.js';
import { unchanged } from '../helpers/unchanged.js';

interface SchemaObject {
  properties?: Record<string, SchemaObject>;
  additionalProperties?: boolean;
}

let s: SigningServer;
before(async () => {
  s = await startSigningServer();
});
after(() => s.stop());

const post = (path: string, token: string, body: unknown) =>
  s.agent
    .post(`/api/v1/signing/${path}`)
    .set(bearer(token))
    .send(body as object);
const hexOf = (d: string) => Buffer.from(d.slice(7), 'hex').toString('base64');

describe('sign', () => {
  test('one tag is signed into targets: one new version, readable by the notary CLI, and it verifies', async () => {
    const gun = newGun();
    const { targetsKeyId } = await initRepo(s, gun);
    const before = await versions(s, gun);
    const digest = fakeDigest('manifest v1');
    const res = await post('sign', s.adminToken, { gun, tag: 'v1', digest, size: 1234 });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.status, 'published');
    assert.deepEqual(res.body.published, [{ gun, role: 'targets', version: before.targets! + 1, tags: 1 }]);
    const after = await versions(s, gun);
    assert.equal(after.targets, before.targets! + 1);
    assert.equal(after.snapshot, before.snapshot! + 1);
    const body = await targetsOf(s, gun);
    assert.deepEqual(body!.targets.v1, { hashes: { sha256: hexOf(digest) }, length: 1234 });

    const cli = await notaryCli({ server: s.tg.url, token: s.adminToken });
    try {
      const rows = parseNotaryList((await cli.runOk(['list', gun])).stdout);
      assert.deepEqual(
        rows.map((r) => [r.name, r.digest, r.size]),
        [['v1', digest.slice(7), 1234]],
      );
    } finally {
      await cli.cleanup();
    }

    const v = await s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:v1` })
      .set(bearer(s.adminToken));
    assert.equal(v.status, 200);
    assert.equal(v.body.verdict, 'signed');
    assert.equal(v.body.digest, digest);
    assert.equal(v.body.size, 1234);
    assert.deepEqual(
      v.body.roles.map((r: { role: string; keyIds: string[] }) => [r.role, r.keyIds]),
      [['targets', [targetsKeyId]]],
    );
    assert.equal(v.body.versions.targets, after.targets);
    assert.ok(Date.parse(v.body.expiries.timestamp) > Date.now());
  });

  test('custom metadata is stored inside the signed target, canonically', async () => {
    const gun = newGun();
    await initRepo(s, gun);
    const res = await post('sign', s.adminToken, {
      gun,
      tag: 'v1',
      digest: fakeDigest('c'),
      size: 10,
      custom: { z: 1, a: { build: 'ci-42' } },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const f = await s.tg.app.trust.current(gun, 'targets');
    assert.match(f!.bytes.toString(), /"custom":\{"a":\{"build":"ci-42"\},"z":1\}/);
  });

  test('a batch of 300 tags is one publish: exactly one new targets version holding all of them', async () => {
    const gun = newGun();
    await initRepo(s, gun);
    const before = await versions(s, gun);
    const items = Array.from({ length: 300 }, (_, i) => ({ tag: `build-${i}`, digest: fakeDigest(`m${i}`), size: 100 + i }));
    const res = await post('batch', s.adminToken, { gun, items });
    assert.equal(res.status, 201, JSON.stringify(res.body).slice(0, 500));
    assert.equal(res.body.items.length, 300);
    const after = await versions(s, gun);
    assert.equal(after.targets, before.targets! + 1);
    assert.equal(after.timestamp, before.timestamp! + 1);
    const body = await targetsOf(s, gun);
    assert.equal(Object.keys(body!.targets).length, 300);
    assert.equal(body!.targets['build-299']!.length, 399);
  });

  test('a batch across roles of one GUN publishes every role in one go', async () => {
    const gun = newGun();
    await initRepo(s, gun);
    await addDelegation(s, gun, 'targets/releases');
    const before = await versions(s, gun);
    const res = await post('batch', s.adminToken, {
      gun,
      items: [
        { tag: 'a', digest: fakeDigest('a'), size: 1 },
        { tag: 'b', digest: fakeDigest('b'), size: 2, role: 'targets/releases' },
      ],
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const after = await versions(s, gun);
    assert.equal(after.targets, before.targets! + 1);
    assert.equal(after['targets/releases'], 1);
    assert.equal(after.snapshot, before.snapshot! + 1, 'one snapshot for both roles');
  });

  test('a signer token signs the roles whose keys it may use, with those keys only', async () => {
    const gun = newGun();
    await initRepo(s, gun);
    const ciKey = await addDelegation(s, gun, 'targets/ci');
    const tok = s.token([`signer:${gun}`], [ciKey]);
    const ok = await post('sign', tok, { gun, tag: 'ci-1', digest: fakeDigest('ci'), size: 5, role: 'targets/ci' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    const f = await s.tg.app.trust.current(gun, 'targets/ci');
    assert.deepEqual(
      JSON.parse(f!.bytes.toString()).signatures.map((x: { keyid: string }) => x.keyid),
      [ciKey],
    );
  });
});

describe('bad input is refused with a clear 4xx and nothing is published', () => {
  let gun: string;
  let ciKey: string;
  before(async () => {
    gun = newGun('bad');
    await initRepo(s, gun);
    ciKey = await addDelegation(s, gun, 'targets/ci');
  });
  const good = () => ({ gun, tag: 'v1', digest: fakeDigest('x'), size: 10 });
  const cases: Array<[string, () => Record<string, unknown>, number, string, RegExp]> = [
    ['digest without sha256:', () => ({ ...good(), digest: 'a'.repeat(64) }), 400, 'INVALID_REQUEST', /digest must be sha256:<64/],
    ['digest with upper-case hex', () => ({ ...good(), digest: 'sha256:' + 'A'.repeat(64) }), 400, 'INVALID_REQUEST', /digest/],
    ['short digest', () => ({ ...good(), digest: 'sha256:abc' }), 400, 'INVALID_REQUEST', /digest/],
    ['sha512 digest', () => ({ ...good(), digest: 'sha512:' + 'a'.repeat(128) }), 400, 'INVALID_REQUEST', /digest/],
    ['size 0', () => ({ ...good(), size: 0 }), 400, 'INVALID_REQUEST', /size must be a positive/],
    ['negative size', () => ({ ...good(), size: -5 }), 400, 'INVALID_REQUEST', /size must be a positive/],
    ['fractional size', () => ({ ...good(), size: 1.5 }), 400, 'INVALID_REQUEST', /size/],
    ['size as a string', () => ({ ...good(), size: '10' }), 400, 'INVALID_REQUEST', /size/],
    ['tag starting with a dot', () => ({ ...good(), tag: '.hidden' }), 400, 'INVALID_REQUEST', /not a valid OCI tag/],
    ['tag with a slash', () => ({ ...good(), tag: 'a/b' }), 400, 'INVALID_REQUEST', /not a valid OCI tag/],
    ['tag of 129 characters', () => ({ ...good(), tag: 'a'.repeat(129) }), 400, 'INVALID_REQUEST', /not a valid OCI tag/],
    ['empty tag', () => ({ ...good(), tag: '' }), 400, 'INVALID_REQUEST', /not a valid OCI tag/],
    ['role that is not a targets role', () => ({ ...good(), role: 'snapshot' }), 400, 'INVALID_REQUEST', /not a targets role/],
    ['role that is not delegated', () => ({ ...good(), role: 'targets/nope' }), 400, 'ROLE_NOT_FOUND', /targets\/nope does not exist/],
    ['custom with a float', () => ({ ...good(), custom: { x: 0.5 } }), 400, 'INVALID_REQUEST', /whole numbers/],
    ['missing gun', () => ({ tag: 'v1', digest: fakeDigest('x'), size: 1 }), 400, 'INVALID_REQUEST', /gun/],
    [
      'size absent with no upstream to read it from',
      () => ({ gun, tag: 'v1', digest: fakeDigest('x') }),
      400,
      'SIZE_REQUIRED',
      /size is required/,
    ],
  ];
  for (const [name, make, status, code, msg] of cases) {
    test(name, async () => {
      const res = await unchanged(s, gun, () => post('sign', s.adminToken, make()));
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code);
      assert.match(res.body.error.message, msg);
    });
  }

  test('a tag outside the paths of its delegation (clients would not trust it there)', async () => {
    await addDelegation(s, gun, 'targets/qa', { paths: ['qa-'] });
    const res = await unchanged(s, gun, () => post('sign', s.adminToken, { ...good(), tag: 'v1', role: 'targets/qa' }));
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'INVALID_REQUEST');
    assert.equal(res.body.error.field, 'items[0].tag');
    assert.match(res.body.error.message, /outside its paths/);
    assert.equal((await post('sign', s.adminToken, { ...good(), tag: 'qa-1', role: 'targets/qa' })).status, 201);
  });

  test('one bad item refuses the whole batch', async () => {
    const items = [
      { tag: 'ok-1', digest: fakeDigest('1'), size: 1 },
      { tag: 'ok-2', digest: fakeDigest('2'), size: 0 },
    ];
    const res = await unchanged(s, gun, () => post('batch', s.adminToken, { gun, items }));
    assert.equal(res.status, 400);
    assert.equal(res.body.error.field, 'items[1].size');
  });

  test('a batch naming one tag twice with different digests is refused', async () => {
    const items = [
      { tag: 'dup', digest: fakeDigest('1'), size: 1 },
      { tag: 'dup', digest: fakeDigest('2'), size: 1 },
    ];
    const res = await unchanged(s, gun, () => post('batch', s.adminToken, { gun, items }));
    assert.equal(res.status, 400);
    assert.match(res.body.error.message, /twice/);
  });

  test('no token: 401; a reader token: 403; a signer of another GUN: 403', async () => {
    const none = await unchanged(s, gun, () => s.agent.post('/api/v1/signing/sign').send(good()));
    assert.equal(none.status, 401);
    assert.match(none.headers['www-authenticate'] ?? '', /Bearer/);
    const reader = await unchanged(s, gun, () => post('sign', s.token(['reader']), good()));
    assert.equal(reader.status, 403);
    assert.equal(reader.body.error.code, 'FORBIDDEN');
    const other = await unchanged(s, gun, () =>
      post('sign', s.token(['signer:registry.example.com:5000/other/**'], [ciKey]), { ...good(), role: 'targets/ci' }),
    );
    assert.equal(other.status, 403);
  });

  test('a role the token holds no key of: 403, and a batch with one such role publishes nothing', async () => {
    const tok = s.token([`signer:${gun}`], [ciKey]);
    const res = await unchanged(s, gun, () => post('sign', tok, good()));
    assert.equal(res.status, 403);
    assert.match(res.body.error.message, /may not sign targets/);
    const batch = await unchanged(s, gun, () =>
      post('batch', tok, {
        gun,
        items: [
          { tag: 'a', digest: fakeDigest('a'), size: 1, role: 'targets/ci' },
          { tag: 'b', digest: fakeDigest('b'), size: 1 },
        ],
      }),
    );
    assert.equal(batch.status, 403);
  });

  test('malformed JSON: 400', async () => {
    const res = await unchanged(s, gun, () =>
      s.agent.post('/api/v1/signing/sign').set(bearer(s.adminToken)).set('Content-Type', 'application/json').send('{"tag":'),
    );
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'INVALID_JSON');
  });

  test('a body the JSON parser cannot read (corrupt gzip, unknown encoding or charset): 400 as in the management API, never 500', async () => {
    const body = JSON.stringify(good());
    for (const headers of [
      { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
      { 'Content-Type': 'application/json', 'Content-Encoding': 'x-unknown' },
      { 'Content-Type': 'application/json; charset=latin1' },
    ]) {
      const res = await unchanged(s, gun, () => s.agent.post('/api/v1/signing/sign').set(bearer(s.adminToken)).set(headers).send(body));
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'INVALID_REQUEST');
    }
  });

  test('an unknown field (a typo such as "rol" or "cosgin") is refused, never ignored: api/signing.json has additionalProperties false', async () => {
    const d = fakeDigest('typo');
    const refusals: Array<[string, Record<string, unknown>, string]> = [
      ['sign', { ...good(), cosgin: true }, 'cosgin'],
      ['batch', { gun, items: [{ tag: 'b1', digest: d, size: 1 }], rol: 'targets/ci' }, 'rol'],
      ['batch', { gun, items: [{ tag: 'b1', digest: d, size: 1, rol: 'targets/ci' }] }, 'items[0].rol'],
      ['revoke', { gun, tag: 'v1', rol: 'targets/ci' }, 'rol'],
      ['promote', { gun, from: { tag: 'v1', rol: 'targets/ci' }, to: { role: 'targets' } }, 'from.rol'],
      ['promote', { gun, from: { tag: 'v1' }, to: { role: 'targets', tga: 'v2' } }, 'to.tga'],
      ['verify', { image: `${gun}:v1`, role: ['targets/ci'] }, 'role'],
    ];
    for (const [path, body, field] of refusals) {
      const res = await unchanged(s, gun, () => post(path, s.adminToken, body));
      assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'INVALID_REQUEST');
      assert.equal(res.body.error.field, field);
    }
    // GET /signing/verify's query alike: `?role=` was ignored and the verdict counted every role.
    const q = await s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:v1`, role: 'targets/ci' })
      .set(bearer(s.adminToken));
    assert.equal(q.status, 400, JSON.stringify(q.body));
    assert.equal(q.body.error.code, 'INVALID_REQUEST');
    assert.equal(q.body.error.field, 'role');
  });

  test('the fields accepted for each request are the ones api/signing.json lists', () => {
    const defs = (
      JSON.parse(readFileSync(new URL('../../api/signing.json', import.meta.url), 'utf8')) as { $defs: Record<string, SchemaObject> }
    ).$defs;
    for (const [name, accepted] of Object.entries(REQUEST_FIELDS)) {
      const [def, prop] = name.split('.');
      let schema = defs[def!]!;
      if (prop) schema = schema.properties![prop]!;
      assert.equal(schema.additionalProperties, false, `${name}: the schema closes its fields`);
      assert.deepEqual([...accepted].sort(), Object.keys(schema.properties!).sort(), name);
    }
    // Every request schema is covered.
    for (const def of Object.keys(defs).filter((d) => d.endsWith('Request') || d === 'BatchItem')) assert.ok(REQUEST_FIELDS[def], def);
  });

  test('a repository without trust data: 404', async () => {
    const res = await post('sign', s.adminToken, { ...good(), gun: newGun('none') });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'REPOSITORY_NOT_FOUND');
  });
});

describe('revoke', () => {
  test('from one role, then from every role; unknown tags are 404 and publish nothing', async () => {
    const gun = newGun('rev');
    await initRepo(s, gun);
    await addDelegation(s, gun, 'targets/releases');
    const d = fakeDigest('r');
    await post('batch', s.adminToken, {
      gun,
      items: [
        { tag: 'v1', digest: d, size: 3 },
        { tag: 'v1', digest: d, size: 3, role: 'targets/releases' },
        { tag: 'v2', digest: d, size: 3 },
      ],
    });
    const v0 = await versions(s, gun);
    const one = await post('revoke', s.adminToken, { gun, tag: 'v1', role: 'targets/releases' });
    assert.equal(one.status, 200, JSON.stringify(one.body));
    assert.deepEqual(one.body.removed, [{ role: 'targets/releases', digest: d }]);
    const v1 = await versions(s, gun);
    assert.equal(v1['targets/releases'], v0['targets/releases']! + 1);
    assert.equal(v1.targets, v0.targets);
    assert.equal((await targetsOf(s, gun, 'targets/releases'))!.targets.v1, undefined);
    assert.ok((await targetsOf(s, gun))!.targets.v1);

    const all = await post('revoke', s.adminToken, { gun, tag: 'v1' });
    assert.equal(all.status, 200);
    assert.deepEqual(
      all.body.removed.map((r: { role: string }) => r.role),
      ['targets'],
    );
    assert.equal((await targetsOf(s, gun))!.targets.v1, undefined);
    assert.ok((await targetsOf(s, gun))!.targets.v2);

    const gone = await unchanged(s, gun, () => post('revoke', s.adminToken, { gun, tag: 'v1' }));
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'TAG_NOT_FOUND');
    const bad = await unchanged(s, gun, () => post('revoke', s.adminToken, { gun, tag: 'v/1' }));
    assert.equal(bad.status, 400);
    const v = await s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:v1` })
      .set(bearer(s.adminToken));
    assert.equal(v.body.verdict, 'denied');
    assert.equal(v.body.reason, 'not-signed');
  });
});

describe('promote', () => {
  test('a digest signed in targets/ci is signed into targets/releases under a release tag', async () => {
    const gun = newGun('promo');
    await initRepo(s, gun);
    await addDelegation(s, gun, 'targets/ci');
    const relKey = await addDelegation(s, gun, 'targets/releases');
    const d = fakeDigest('promote me');
    assert.equal((await post('sign', s.adminToken, { gun, tag: 'build-7', digest: d, size: 77, role: 'targets/ci' })).status, 201);
    const res = await post('promote', s.adminToken, {
      gun,
      from: { tag: 'build-7', role: 'targets/ci' },
      to: { tag: '1.0.0', role: 'targets/releases' },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.source.digest, d);
    assert.deepEqual((await targetsOf(s, gun, 'targets/releases'))!.targets['1.0.0'], { hashes: { sha256: hexOf(d) }, length: 77 });
    const v = await s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:1.0.0` })
      .set(bearer(s.adminToken));
    assert.equal(v.body.verdict, 'signed');
    assert.deepEqual(
      v.body.roles.map((r: { role: string; keyIds: string[] }) => [r.role, r.keyIds]),
      [['targets/releases', [relKey]]],
    );
  });

  test('an unsigned or revoked source is refused and nothing is published', async () => {
    const gun = newGun('promo-bad');
    await initRepo(s, gun);
    await addDelegation(s, gun, 'targets/releases');
    const none = await unchanged(s, gun, () =>
      post('promote', s.adminToken, { gun, from: { tag: 'nope' }, to: { tag: '1.0', role: 'targets/releases' } }),
    );
    assert.equal(none.status, 409);
    assert.equal(none.body.error.code, 'SOURCE_NOT_VERIFIED');
    assert.equal(none.body.error.reason, 'not-signed');
    // Signed in targets, but the source must be in targets/ci: not there.
    await post('sign', s.adminToken, { gun, tag: 'b1', digest: fakeDigest('b1'), size: 1 });
    const wrongRole = await unchanged(s, gun, () =>
      post('promote', s.adminToken, { gun, from: { tag: 'b1', role: 'targets/releases' }, to: { tag: '1.0', role: 'targets' } }),
    );
    assert.equal(wrongRole.status, 409);
  });

  test('into another repository without an upstream registry to copy the image: 400 before anything is signed', async () => {
    const gun = newGun('promo-from');
    const to = newGun('promo-to');
    await initRepo(s, gun);
    await initRepo(s, to);
    assert.equal((await post('sign', s.adminToken, { gun, tag: 'rc1', digest: fakeDigest('rc1'), size: 5 })).status, 201);
    const res = await unchanged(s, to, () =>
      post('promote', s.adminToken, { gun, from: { tag: 'rc1' }, to: { gun: to, tag: '1.0', role: 'targets' } }),
    );
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'UPSTREAM_REQUIRED');
    assert.match(res.body.error.message, /copies the image/);
  });
});

describe('verify', () => {
  test('by digest: the tags it is signed for; a wrong digest for a tag: denied with digest-mismatch; unknown repo: no-trust-data', async () => {
    const gun = newGun('ver');
    await initRepo(s, gun);
    const d = fakeDigest('vd');
    await post('batch', s.adminToken, {
      gun,
      items: [
        { tag: 'a', digest: d, size: 9 },
        { tag: 'b', digest: d, size: 9 },
        { tag: 'c', digest: fakeDigest('other'), size: 9 },
      ],
    });
    const byDigest = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${gun}@${d}` });
    assert.equal(byDigest.body.verdict, 'signed');
    assert.deepEqual([...byDigest.body.tags].sort(), ['a', 'b']);
    const mismatch = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${gun}:c@${d}` });
    assert.equal(mismatch.body.verdict, 'denied');
    assert.equal(mismatch.body.reason, 'digest-mismatch');
    const unknown = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${newGun('nothing')}:v1` });
    assert.equal(unknown.body.verdict, 'denied');
    assert.equal(unknown.body.reason, 'no-trust-data');
    const unsignedDigest = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${gun}@${fakeDigest('never')}` });
    assert.equal(unsignedDigest.body.verdict, 'denied');
    assert.equal(unsignedDigest.body.reason, 'not-signed');
    const bad = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${gun}` });
    assert.equal(bad.status, 400);
    const reader = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.token([`reader:${gun}`])))
      .send({ image: `${gun}:a` });
    assert.equal(reader.body.verdict, 'signed');
    const stranger = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.token(['reader:other/**'])))
      .send({ image: `${gun}:a` });
    assert.equal(stranger.status, 403);
  });

  test('a POST roles that is not a non-empty list (api/signing.json: array, minItems 1) is a 400, not a verdict (an empty list answered denied)', async () => {
    const gun = newGun('ver-roles');
    await initRepo(s, gun);
    await post('sign', s.adminToken, { gun, tag: 'a', digest: fakeDigest('r'), size: 9 });
    for (const roles of [[], 'targets', { 0: 'targets' }, null]) {
      const res = await s.agent
        .post('/api/v1/signing/verify')
        .set(bearer(s.adminToken))
        .send({ image: `${gun}:a`, roles });
      assert.equal(res.status, 400, `${JSON.stringify(roles)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.field, 'roles');
    }
    const ok = await s.agent
      .post('/api/v1/signing/verify')
      .set(bearer(s.adminToken))
      .send({ image: `${gun}:a`, roles: ['targets'] });
    assert.equal(ok.body.verdict, 'signed');
    const get = await s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:a`, roles: 'targets' })
      .set(bearer(s.adminToken));
    assert.equal(get.body.verdict, 'signed');
  });
});

describe('inspect and public key', () => {
  test('inspect lists signed tags with signer names, signers with keys, and the administrative keys', async () => {
    const gun = newGun('insp');
    const { targetsKeyId } = await initRepo(s, gun);
    await addDelegation(s, gun, 'targets/releases');
    const alice = await addDelegation(s, gun, 'targets/alice');
    const [d, e, u] = [fakeDigest('i'), fakeDigest('j'), fakeDigest('u')];
    await post('batch', s.adminToken, {
      gun,
      items: [
        { tag: 'v1', digest: d, size: 4 },
        { tag: 'v1', digest: d, size: 4, role: 'targets/releases' },
        { tag: 'v2', digest: e, size: 5, role: 'targets/releases' },
        { tag: 'v2', digest: e, size: 5, role: 'targets/alice' },
        { tag: 'wip', digest: u, size: 6, role: 'targets/alice' },
      ],
    });
    const res = await s.agent.get('/api/v1/signing/inspect').query({ gun }).set(bearer(s.adminToken));
    assert.equal(res.status, 200);
    // As docker shows them: only released tags (targets, targets/releases); targets/releases is
    // never a signer, and a tag no delegation signs is the repository admin's.
    assert.deepEqual(res.body.signedTags, [
      { tag: 'v1', digest: d, size: 4, signers: ['Repo Admin'] },
      { tag: 'v2', digest: e, size: 5, signers: ['alice'] },
    ]);
    assert.deepEqual(res.body.signers, [{ name: 'alice', keys: [{ id: alice }], threshold: 1 }]);
    assert.deepEqual(res.body.administrativeKeys[1], { name: 'Repository', keys: [{ id: targetsKeyId }] });
  });

  test('the public key of a role is a PEM of the held ECDSA key', async () => {
    const gun = newGun('pk');
    const { targetsKeyId } = await initRepo(s, gun);
    const res = await s.agent
      .get('/api/v1/signing/public-key')
      .query({ gun })
      .set(bearer(s.adminToken))
      .buffer(true)
      .parse((r, cb) => {
        let t = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (t += c));
        r.on('end', () => cb(null, t));
      });
    assert.equal(res.status, 200);
    assert.match(res.body as unknown as string, /^-----BEGIN PUBLIC KEY-----/);
    assert.equal(res.headers['x-trustgate-key-id'], targetsKeyId);
  });
});

describe('tags named like Object.prototype members ("__proto__", "constructor", "toString" are valid OCI tags)', () => {
  const targetsJson = async (gun: string) => {
    const r = await s.agent.get(`/v2/${gun}/_trust/tuf/targets.json`);
    assert.equal(r.status, 200);
    return (JSON.parse(r.text) as { signed: { targets: Record<string, { hashes: { sha256: string }; length: number }> } }).signed.targets;
  };
  const verify = (gun: string, tag: string) =>
    s.agent
      .get('/api/v1/signing/verify')
      .query({ image: `${gun}:${tag}` })
      .set(bearer(s.adminToken));

  test('are signed into targets.json as their own entries, verify, and are revoked; unsigned ones are 404', async () => {
    const gun = newGun('proto');
    await initRepo(s, gun);
    const dp = fakeDigest('proto');
    const dc = fakeDigest('ctor');
    const p = await post('sign', s.adminToken, { gun, tag: '__proto__', digest: dp, size: 11 });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    assert.equal(p.body.published[0].tags, 1);
    const c = await post('sign', s.adminToken, { gun, tag: 'constructor', digest: dc, size: 22 });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.published[0].tags, 2);

    const t = await targetsJson(gun);
    assert.deepEqual(Object.keys(t), ['__proto__', 'constructor']);
    assert.ok(Object.hasOwn(t, '__proto__'));
    assert.deepEqual({ ...t['__proto__'] }, { hashes: { sha256: hexOf(dp) }, length: 11 });
    assert.deepEqual({ ...t['constructor'] }, { hashes: { sha256: hexOf(dc) }, length: 22 });

    const vp = await verify(gun, '__proto__');
    assert.equal(vp.body.verdict, 'signed', JSON.stringify(vp.body));
    assert.equal(vp.body.digest, dp);
    assert.equal((await verify(gun, 'constructor')).body.digest, dc);
    for (const tag of ['toString', 'hasOwnProperty', 'valueOf', 'length', 'hashes']) {
      const v = await verify(gun, tag);
      assert.equal(v.body.verdict, 'denied', tag);
      assert.equal(v.body.reason, 'not-signed', `${tag}: ${JSON.stringify(v.body)}`);
    }

    for (const tag of ['toString', 'hasOwnProperty']) {
      const gone = await unchanged(s, gun, () => post('revoke', s.adminToken, { gun, tag }));
      assert.equal(gone.status, 404, `${tag}: ${JSON.stringify(gone.body)}`);
      assert.equal(gone.body.error.code, 'TAG_NOT_FOUND');
    }
    const r = await post('revoke', s.adminToken, { gun, tag: '__proto__' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.removed, [{ role: 'targets', digest: dp }]);
    assert.deepEqual(Object.keys(await targetsJson(gun)), ['constructor']);
    assert.equal((await verify(gun, '__proto__')).body.reason, 'not-signed');
    const again = await unchanged(s, gun, () => post('revoke', s.adminToken, { gun, tag: '__proto__' }));
    assert.equal(again.status, 404);
  });
});
