// Refused publishes (spec §2.6, §3, §8.2 step 9): each answers the reference server's exact
// error body and leaves everything stored byte-for-byte as it was.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { type TargetsBody } from '../../src/core/tuf/metadata.js';
import {
  initRepo,
  multipart,
  newRootSigner,
  publish,
  raw,
  rootBody,
  sign,
  signLiteral,
  targetMeta,
  targetsBody,
  tufPath,
  type Files,
  type TufRepo,
} from '../helpers/tuf-builder.js';
import { assertError, fixture, invalidUpdate, newGun, rawRequest, startServer, type Server } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let s: Server;
/** One repository with a client-held snapshot and one with a server-held snapshot, both at targets v2. */
let client: TufRepo;
let server: TufRepo;
before(async () => {
  s = await startServer();
  client = await initRepo(s.agent, newGun('val-client'));
  server = await initRepo(s.agent, newGun('val-server'), { serverSnapshot: true });
  for (const r of [client, server]) assert.equal((await r.addTarget('t1', 'one')).status, 200);
});
after(() => s.stop());

/** Publishes files to `gun` and asserts the exact error answer and that nothing stored changed. */
async function refused(gun: string, files: Files, status: number, body: Buffer | string): Promise<void> {
  await unchanged(s, [gun], async () => {
    assertError(await publish(s.agent, gun, files), status, body);
  });
}
/** Sends a raw body with a content type; same checks. */
async function refusedRaw(
  gun: string,
  contentType: string | undefined,
  body: Buffer | string,
  status: number,
  expected: Buffer | string,
): Promise<void> {
  await unchanged(s, [gun], async () => {
    const res = await rawRequest(s, 'POST', tufPath(gun), { headers: contentType ? { 'Content-Type': contentType } : {}, body });
    assertError(res, status, expected);
  });
}

const NO_SIGS = 'tuf: data has no signatures';
const THRESHOLD = (role: string) => `valid signatures did not meet threshold for ${role}`;

// ---------------------------------------------------------------------------------------------
// The body itself

test('a body that is not multipart/form-data: MALFORMED_UPLOAD (fixtures post_not_multipart, post_empty)', async () => {
  const gun = server.gun;
  const targets = (await server.files([['targets', server.next()]]))[0]![1];
  await refusedRaw(gun, 'application/json', targets, 400, fixture('post_not_multipart'));
  await refusedRaw(gun, undefined, '', 400, fixture('post_empty'));
  await refusedRaw(gun, 'text/plain', 'hello', 400, fixture('post_not_multipart'));
  await refusedRaw(gun, 'multipart/form-data', multipart([['targets', targets]]).body, 400, fixture('post_not_multipart')); // no boundary
  await refusedRaw(gun, 'multipart/mixed; boundary=x', '--x--\r\n', 400, fixture('post_not_multipart'));
});

test('a malformed multipart body: MALFORMED_UPLOAD, and the server survives it', async () => {
  const gun = server.gun;
  const targets = (await server.files([['targets', server.next()]]))[0]![1];
  const { body, contentType } = multipart([['targets', targets]]);
  const truncated = body.subarray(0, body.length - 12); // no close delimiter
  await refusedRaw(gun, contentType, truncated, 400, fixture('post_not_multipart'));
  // the body ends inside a part's content: busboy errored the file stream here and took the process down
  const headerEnd = body.indexOf('\r\n\r\n') + 4;
  await refusedRaw(gun, contentType, body.subarray(0, headerEnd + 20), 400, fixture('post_not_multipart'));
  await refusedRaw(gun, contentType, body.subarray(0, body.lastIndexOf('\r\n--')), 400, fixture('post_not_multipart'));
  await refusedRaw(gun, contentType, body.subarray(0, 40), 400, fixture('post_not_multipart')); // cut inside the part headers
  await refusedRaw(gun, contentType, 'no delimiter anywhere', 400, fixture('post_not_multipart'));
  await refusedRaw(gun, contentType, '', 400, fixture('post_not_multipart'));
  const boundary = contentType.split('boundary=')[1]!;
  await refusedRaw(
    gun,
    contentType,
    `--${boundary}\r\nthis is not a header\r\n\r\n{}\r\n--${boundary}--\r\n`,
    400,
    fixture('post_not_multipart'),
  );
  // still serving, and the same publish, complete, works
  assert.equal((await raw(s.agent.get('/_notary_server/health'))).status, 200);
});

test('a part without a filename: NO_FILENAME (fixture post_no_filename), even after a valid part', async () => {
  const gun = server.gun;
  const targets = (await server.files([['targets', server.next()]]))[0]![1];
  const b = 'tgboundary';
  const part = (disposition: string | undefined, content: Buffer | string) =>
    `--${b}\r\n${disposition === undefined ? '' : `Content-Disposition: ${disposition}\r\n`}Content-Type: application/octet-stream\r\n\r\n${content}\r\n`;
  const ct = `multipart/form-data; boundary=${b}`;
  for (const bad of [
    part('form-data; name="files"', targets),
    part('form-data; name="files"; filename=""', targets),
    part(undefined, targets),
    part('form-data; name="files"; filename="targets"; filename="root"', targets), // duplicate parameter: unparseable
    part('form-data; name="files"; filename="targets', targets), // unterminated quote
  ]) {
    await refusedRaw(gun, ct, `${bad}--${b}--\r\n`, 400, fixture('post_no_filename'));
    await refusedRaw(
      gun,
      ct,
      `${part('form-data; name="files"; filename="targets"', targets)}${bad}--${b}--\r\n`,
      400,
      fixture('post_no_filename'),
    );
  }
});

test('an invalid role name: INVALID_ROLE with the role as detail (fixtures post_bad_role, post_bad_role2)', async () => {
  const gun = server.gun;
  const targets = (await server.files([['targets', server.next()]]))[0]![1];
  await refused(gun, [['foobar', targets]], 400, fixture('post_bad_role'));
  await refused(gun, [['targets/../root', targets]], 400, fixture('post_bad_role2'));
  await refused(
    gun,
    [
      ['targets', targets],
      ['foobar.json', targets],
    ],
    400,
    fixture('post_bad_role'),
  );
  for (const role of [
    'foo',
    'Targets',
    'targets/',
    'targets//x',
    'targets/X',
    'targets/x/*',
    'targets/./x',
    'root.json.json',
    `targets/${'a'.repeat(250)}`,
    'targets/é',
  ]) {
    const detail = role.replace(/\.json$/, '');
    await refused(
      gun,
      [[role, targets]],
      400,
      `{"errors":[{"code":"INVALID_ROLE","message":"The role you are attempting to operate on is invalid.","detail":${JSON.stringify(detail)}}]}\n`,
    );
  }
});

test('a part that is not a {signed, signatures} JSON document: MALFORMED_JSON (fixture post_malformed_json)', async () => {
  const gun = server.gun;
  const good = (await server.files([['targets', server.next()]]))[0]![1];
  const doc = JSON.parse(good.toString());
  for (const bad of [
    'not json',
    '{"signed":',
    '[]',
    '"text"',
    '{"signed":1,"signatures":[]}',
    '{"signatures":[]}',
    '{"signed":{},"signatures":{}}',
    '{"signed":{},"signatures":[{"keyid":1}]}',
    '',
    JSON.stringify({ ...doc, extra: 'unsigned data outside signed' }), // refused: nothing vouches for it
  ]) {
    await refused(gun, [['targets', Buffer.from(bad)]], 400, fixture('post_malformed_json'));
  }
  // a malformed timestamp part is refused too: its name is valid, so its JSON is checked before it is ignored
  await refused(gun, [['timestamp', Buffer.from('nope')]], 400, fixture('post_malformed_json'));
});

// ---------------------------------------------------------------------------------------------
// Versions

test('re-POSTing the current targets: VERSION (fixtures post_replay, post_replay_json_suffix)', async () => {
  await refused(server.gun, [['targets', server.targets.bytes]], 400, fixture('post_replay'));
  await refused(server.gun, [['targets.json', server.targets.bytes]], 400, fixture('post_replay_json_suffix'));
  // the client-held repository replays its snapshot with it (alone, the server could not make one)
  await refused(
    client.gun,
    [
      ['targets', client.targets.bytes],
      ['snapshot', client.snapshot!.bytes],
    ],
    400,
    fixture('post_replay'),
  );
  await refused(
    client.gun,
    [
      ['targets.json', client.targets.bytes],
      ['snapshot.json', client.snapshot!.bytes],
    ],
    400,
    fixture('post_replay_json_suffix'),
  );
  // a client snapshot at the current version is a replay as well
  const snap = await client.clientSnapshot([], (b) => (b.version = client.snapshot!.body.version));
  await refused(client.gun, [['snapshot', snap]], 400, fixture('post_replay'));
});

test('rollback to a lower version, validly signed: VERSION (fixture post_rollback)', async () => {
  for (const repo of [client, server]) {
    const old = repo.next('targets', (b) => {
      b.version = 1;
      b.targets.rolled = targetMeta('back');
    });
    await refused(repo.gun, await repo.files([['targets', old]]), 400, fixture('post_rollback'));
  }
});

test('the same root version again: VERSION', async () => {
  await refused(server.gun, [['root', server.root.bytes]], 400, fixture('post_replay'));
});

test('version numbers: 2^31-1 and 2^31 jump too far from 2; 2^53+1 and 2^63 cannot be represented; all clean 400s', async () => {
  for (const [version, msg] of [
    ['2147483647', 'targets version 2147483647 jumps too far ahead of 2'],
    ['2147483648', 'targets version 2147483648 jumps too far ahead of 2'],
    ['9007199254740993', 'targets: version must be an integer of at least 1'],
    ['9223372036854775808', 'targets: version must be an integer of at least 1'],
    ['18446744073709551617', 'targets: version must be an integer of at least 1'],
    ['0', 'targets: version must be an integer of at least 1'],
    ['-1', 'targets: version must be an integer of at least 1'],
    ['2.5', 'targets: version must be an integer of at least 1'],
    ['"3"', 'targets: version must be an integer of at least 1'],
  ] as const) {
    // the version as literal text, validly signed over that text as a Go client would
    const body = server.next('targets', (b) => ((b as { version: unknown }).version = '__V__'));
    const bytes = await signLiteral(body, { __V__: version }, [server.targetsKey]);
    await refused(server.gun, [['targets', bytes]], 400, invalidUpdate('ErrBadTargets', msg));
  }
  const root = server.rootBodyFor(2);
  (root as { version: unknown }).version = '__V__';
  const bytes = await signLiteral(root, { __V__: '9223372036854775808' }, server.rootSigners);
  await refused(server.gun, [['root', bytes]], 400, invalidUpdate('ErrBadRoot', 'root: version must be an integer of at least 1'));
});

test('versions above 2^31 are stored and served once reached in allowed steps', async () => {
  const repo = await initRepo(s.agent, newGun('bigver'), { serverSnapshot: true });
  // Seed a stray row so the next allowed step reaches 2^31-1 (the chain still names targets v1).
  await s.tg.app.store.commit(repo.gun, [{ role: 'targets', version: 2 ** 31 - 2, bytes: Buffer.from('{}') }], new Date());
  for (const v of [2 ** 31 - 1, 2 ** 31]) {
    const body = repo.next('targets', (b) => (b.version = v));
    const res = await repo.publish(await repo.files([['targets', body]]));
    assert.equal(res.status, 200, res.body.toString());
    const got = await raw(s.agent.get(tufPath(repo.gun, `${v}.targets.json`)));
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(repo.targets.bytes));
  }
});

test('a number canonical JSON cannot encode anywhere in `signed` (2^63, a fraction, 1e400 in custom): clean 400, never 500', async () => {
  for (const lit of ['9223372036854775808', '1.5', '1e400']) {
    const body = server.next('targets', (b) => (b.targets.x = targetMeta('x', '__C__')));
    const bytes = await signLiteral(body, { __C__: lit }, [server.targetsKey]);
    await unchanged(s, [server.gun], async () => {
      const res = await publish(s.agent, server.gun, [['targets', bytes]]);
      assert.equal(res.status, 400, res.body.toString());
      assert.equal(JSON.parse(res.body.toString()).errors[0].detail.Name, 'ErrBadTargets');
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Root

test('targets only on a new GUN: ErrValidation (fixture post_no_root)', async () => {
  const gun = newGun('noroot');
  const t = await sign(targetsBody({ version: 1 }), [generateSigner('ecdsa')]);
  await refused(gun, [['targets', t]], 400, fixture('post_no_root'));
  await refused(gun, [], 400, fixture('post_no_root'));
});

test('a root for another GUN (cert CN mismatch): ErrBadRoot (fixture post_cross_gun_root)', async () => {
  const gun = newGun('xgun');
  const repo = await initRepo(s.agent, gun, { publish: false });
  const foreign = await newRootSigner('localhost:5000/library/other');
  const body = rootBody({
    version: 1,
    root: [foreign.key],
    targets: [repo.targetsKey.key],
    snapshot: [repo.snapshotKey!.key],
    timestamp: [repo.timestampKey],
  });
  const files = repo.pending.map(([r, b]) => [r, r === 'root' ? undefined : b] as const);
  const rootBytes = await sign(body, [foreign]);
  await refused(
    gun,
    [['root', rootBytes], ...files.filter(([r]) => r !== 'root' && r !== 'snapshot').map(([r, b]) => [r, b!] as [string, Buffer])],
    400,
    fixture('post_cross_gun_root'),
  );
  assertError(await raw(s.agent.get(tufPath(gun, 'root.json'))), 404, fixture('xgun_after'));
});

test('root keys that are not valid certificates: ErrBadRoot', async () => {
  const gun = newGun('rootkeys');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true, publish: false });
  const plain = generateSigner('ecdsa'); // a bare key, not a certificate
  const expired = await newRootSigner(gun, { notBefore: new Date(Date.now() - 3 * 365 * 86400e3), years: 1 });
  for (const signer of [plain, expired]) {
    const body = rootBody({
      version: 1,
      root: [signer.key],
      targets: [repo.targetsKey.key],
      snapshot: [repo.serverSnapshotKey!],
      timestamp: [repo.timestampKey],
    });
    await refused(
      gun,
      [['root', await sign(body, [signer])], repo.pending[1]!],
      400,
      invalidUpdate('ErrBadRoot', 'could not validate the path to a trusted root: unable to retrieve valid leaf certificates'),
    );
  }
});

test('a root more than one version ahead, or behind: ErrBadRoot "Root modifications must increment the version"', async () => {
  // a new GUN accepts v1 or v2, not v3
  const gun = newGun('rootv');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true, publish: false });
  const v3 = await sign(repo.rootBodyFor(3), repo.rootSigners);
  await refused(
    gun,
    [['root', v3], repo.pending[1]!],
    400,
    invalidUpdate('ErrBadRoot', 'Root modifications must increment the version. Current 1, new 3'),
  );
  // an existing repo at root v1: v3 is refused, as is going back from v2 to v1 (fixture post_root_rollback shape)
  const two = server.rootBodyFor(server.root.body.version + 2);
  await refused(
    server.gun,
    [['root', await sign(two, server.rootSigners)]],
    400,
    invalidUpdate('ErrBadRoot', 'Root modifications must increment the version. Current 1, new 3'),
  );
  const r = await initRepo(s.agent, newGun('rootback'), { serverSnapshot: true });
  assert.equal((await r.rotateRoot()).status, 200);
  assert.equal((await r.rotateRoot()).status, 200);
  const v1 = r.rootBodyFor(1);
  await refused(
    r.gun,
    [['root', await sign(v1, r.rootSigners)]],
    400,
    invalidUpdate('ErrBadRoot', 'Root modifications must increment the version. Current 3, new 1'),
  );
  assert.match(fixture('post_root_rollback').toString(), /Root modifications must increment the version\. Current 6, new 1/);
});

test('a root rotation not signed by the old root: ErrBadRoot "could not rotate trust..."', async () => {
  const repo = await initRepo(s.agent, newGun('rot'), { serverSnapshot: true });
  await unchanged(s, [repo.gun], async () => {
    const res = await repo.rotateRoot({ signOld: false });
    assertError(
      res,
      400,
      invalidUpdate(
        'ErrBadRoot',
        'could not rotate trust to a new trusted root: failed to validate data with current trusted certificates',
      ),
    );
  });
});

test('a root whose role threshold is larger than its keys: refused', async () => {
  const repo = await initRepo(s.agent, newGun('thresh'), { serverSnapshot: true });
  const body = repo.rootBodyFor(2, { thresholds: { targets: 2 } });
  await refused(
    repo.gun,
    [['root', await sign(body, repo.rootSigners)]],
    400,
    invalidUpdate('ErrBadRoot', 'role targets threshold 2 is larger than its 1 keys'),
  );
});

test('a role listing one key twice is refused: [k, k] with threshold 2 passed the threshold check but can never be met', async () => {
  const repo = await initRepo(s.agent, newGun('dup-keyid'), { serverSnapshot: true });
  const body = repo.rootBodyFor(2, { thresholds: { targets: 2 } });
  const id = body.roles.targets.keyids[0]!;
  body.roles.targets.keyids = [id, id];
  await refused(
    repo.gun,
    [['root', await sign(body, repo.rootSigners)]],
    400,
    invalidUpdate('ErrBadRoot', `role targets lists key ${id} more than once`),
  );
});

test('key IDs named like Object.prototype members (constructor, __proto__) are unknown keys: ErrBadRoot, never a 500', async () => {
  const repo = await initRepo(s.agent, newGun('proto-keyid'), { serverSnapshot: true });
  for (const id of ['constructor', '__proto__', 'toString']) {
    const body = repo.rootBodyFor(2);
    body.roles.targets.keyids = [id];
    await refused(
      repo.gun,
      [['root', await sign(body, repo.rootSigners)]],
      400,
      invalidUpdate('ErrBadRoot', `key ${id} of role targets is not in root keys`),
    );
  }
});

test('a root that drops the server timestamp key: ErrBadRoot "no  timestamp keys exist on the server"', async () => {
  const repo = await initRepo(s.agent, newGun('nots'), { serverSnapshot: true });
  const body = repo.rootBodyFor(2, { timestamp: [generateSigner('ecdsa').key] });
  await refused(
    repo.gun,
    [['root', await sign(body, repo.rootSigners)]],
    400,
    invalidUpdate('ErrBadRoot', 'no  timestamp keys exist on the server'),
  );
});

// ---------------------------------------------------------------------------------------------
// Targets and delegations

test('targets signed by the wrong key, tampered, unsigned or expired: ErrBadTargets (fixtures post_wrong_key, post_bad_signature, post_unsigned, post_expired)', async () => {
  for (const repo of [client, server]) {
    const body = repo.next('targets', (b) => (b.targets.bad = targetMeta('bad')));
    const wrong = await sign(body, [generateSigner('ecdsa')]);
    await refused(repo.gun, [['targets', wrong]], 400, fixture('post_wrong_key'));

    const good = JSON.parse((await sign(body, [repo.targetsKey])).toString());
    good.signed.targets.bad.length += 1;
    await refused(repo.gun, [['targets', Buffer.from(JSON.stringify(good))]], 400, fixture('post_bad_signature'));

    for (const signatures of [[], null]) {
      const unsigned = Buffer.from(JSON.stringify({ signed: body, signatures }));
      await refused(repo.gun, [['targets', unsigned]], 400, fixture('post_unsigned'));
    }

    const expired = repo.next('targets', (b) => (b.expires = '2020-01-01T00:00:00Z'));
    await refused(repo.gun, [['targets', await sign(expired, [repo.targetsKey])]], 400, fixture('post_expired'));
  }
  assert.match(fixture('post_unsigned').toString(), new RegExp(NO_SIGS));
  assert.match(fixture('post_wrong_key').toString(), new RegExp(THRESHOLD('targets')));
});

test('a signature labelled with the right key id but made by another key, or over DER instead of r||s: threshold failure', async () => {
  const body = server.next('targets');
  const env = JSON.parse((await sign(body, [generateSigner('ecdsa')])).toString());
  env.signatures[0].keyid = server.targetsKey.id;
  await refused(server.gun, [['targets', Buffer.from(JSON.stringify(env))]], 400, invalidUpdate('ErrBadTargets', THRESHOLD('targets')));
});

test('a non-canonical `custom` (as a Go client signs it): the signature fails, ErrBadTargets threshold', async () => {
  const body = server.next('targets', (b) => (b.targets.c = targetMeta('c', '__CUSTOM__')));
  // Go compacts an embedded raw custom value without sorting it and escapes <, > and &.
  const bytes = await signLiteral(body, { __CUSTOM__: '{"b":1,"a":"\\u003cx\\u003e"}' }, [server.targetsKey]);
  await refused(server.gun, [['targets', bytes]], 400, invalidUpdate('ErrBadTargets', THRESHOLD('targets')));
  // the same custom value, sorted and unescaped (canonical), is accepted
  const ok = await signLiteral(body, { __CUSTOM__: '{"a":"<x>","b":1}' }, [server.targetsKey]);
  const res = await server.publish([['targets', ok]]);
  assert.equal(res.status, 200, res.body.toString());
});

test('a targets body of the wrong type: ErrBadTargets', async () => {
  const snapLike = { _type: 'Snapshot', expires: '2099-01-01T00:00:00Z', meta: {}, version: 3 };
  await refused(
    server.gun,
    [['targets', await sign(snapLike, [server.targetsKey])]],
    400,
    invalidUpdate('ErrBadTargets', 'targets: expected _type Targets, found "Snapshot"'),
  );
});

test('a delegation its parent does not list: "tuf: invalid role targets/x. delegation does not exist"', async () => {
  const key = generateSigner('ecdsa');
  const x = await sign(targetsBody({ version: 1 }), [key]);
  await refused(
    server.gun,
    [['targets/x', x]],
    400,
    invalidUpdate('ErrBadTargets', 'tuf: invalid role targets/x. delegation does not exist'),
  );
  // a grandchild whose parent does not exist at all
  await refused(
    server.gun,
    [['targets/x/y', x]],
    400,
    invalidUpdate('ErrBadTargets', 'tuf: invalid role targets/x/y. delegation does not exist'),
  );
});

test('a delegation signed by a key its parent does not delegate to: ErrBadTargets threshold for that role', async () => {
  const repo = await initRepo(s.agent, newGun('deleg-key'), { serverSnapshot: true });
  assert.equal((await repo.addDelegation('targets/qa')).status, 200);
  const wrong = await sign(targetsBody({ version: 1 }), [generateSigner('ecdsa')]);
  await refused(repo.gun, [['targets/qa', wrong]], 400, invalidUpdate('ErrBadTargets', THRESHOLD('targets/qa')));
});

test('delegation entries that are not direct children, or whose threshold exceeds their keys: ErrBadTargets', async () => {
  const key = generateSigner('ecdsa');
  for (const [entry, msg] of [
    [
      { keyids: [key.id], name: 'targets/a/b', paths: [''], threshold: 1 },
      'invalid delegation targets/a/b: must be a direct child of targets',
    ],
    [
      { keyids: [key.id], name: 'targets/a/*', paths: [''], threshold: 1 },
      'invalid delegation targets/a/*: must be a direct child of targets',
    ],
    [{ keyids: [key.id], name: 'targets/a', paths: [''], threshold: 2 }, 'delegation targets/a: threshold 2 is larger than its 1 keys'],
    [
      { keyids: ['0'.repeat(64)], name: 'targets/a', paths: [''], threshold: 1 },
      `delegation targets/a: key ${'0'.repeat(64)} is not in delegations.keys`,
    ],
    [
      { keyids: ['constructor'], name: 'targets/a', paths: [''], threshold: 1 },
      'delegation targets/a: key constructor is not in delegations.keys',
    ],
    [
      { keyids: [key.id, key.id], name: 'targets/a', paths: [''], threshold: 2 },
      `delegation targets/a: key ${key.id} is listed more than once`,
    ],
  ] as const) {
    const body = server.next('targets', (b: TargetsBody) => {
      b.delegations = { keys: { [key.id]: key.key }, roles: [{ ...entry, paths: [...entry.paths], keyids: [...entry.keyids] }] };
    });
    await refused(server.gun, [['targets', await sign(body, [server.targetsKey])]], 400, invalidUpdate('ErrBadTargets', msg));
  }
});

test('delegations with keys null or absent: a role naming key constructor/toString/__proto__ is refused (not found on Object.prototype)', async () => {
  for (const keys of [null, undefined]) {
    for (const id of ['constructor', 'toString', '__proto__']) {
      const body = server.next('targets', (b: TargetsBody) => {
        const d: Record<string, unknown> = { roles: [{ keyids: [id], name: 'targets/a', paths: [''], threshold: 1 }] };
        if (keys === null) d.keys = null;
        (b as unknown as { delegations: unknown }).delegations = d;
      });
      await refused(
        server.gun,
        [['targets', await sign(body, [server.targetsKey])]],
        400,
        invalidUpdate('ErrBadTargets', `delegation targets/a: key ${id} is not in delegations.keys`),
      );
    }
  }
});

test('one bad file refuses the whole publish: a valid targets with an invalid delegation stores nothing', async () => {
  const repo = await initRepo(s.agent, newGun('atomic'), { serverSnapshot: true });
  const key = generateSigner('ecdsa');
  const parent = repo.next('targets', (b) => {
    b.delegations = { keys: { [key.id]: key.key }, roles: [{ keyids: [key.id], name: 'targets/qa', paths: [''], threshold: 1 }] };
  });
  const child = await sign(targetsBody({ version: 1 }), [generateSigner('ecdsa')]);
  await refused(
    repo.gun,
    [
      ['targets', await sign(parent, [repo.targetsKey])],
      ['targets/qa', child],
    ],
    400,
    invalidUpdate('ErrBadTargets', THRESHOLD('targets/qa')),
  );
});

// ---------------------------------------------------------------------------------------------
// Snapshot

test('no snapshot while the server does not hold the snapshot key: ErrBadHierarchy Missing:"snapshot" (fixture post_missing_snapshot)', async () => {
  const files = await client.files([['targets', client.next('targets', (b) => (b.targets.n = targetMeta('n')))]], { snapshot: false });
  assert.deepEqual(
    files.map(([r]) => r),
    ['targets'],
  );
  await refused(client.gun, files, 400, fixture('post_missing_snapshot'));
  await refused(client.gun, [], 400, fixture('post_missing_snapshot'));
});

test('a client snapshot with wrong hashes, no entry, or a bad signature: ErrBadSnapshot', async () => {
  const targets = await sign(
    client.next('targets', (b) => (b.targets.w = targetMeta('w'))),
    [client.targetsKey],
  );
  const wrong = Buffer.alloc(32, 7);
  const snap = await client.clientSnapshot([['targets', targets]], (b) => {
    b.meta.targets!.hashes.sha256 = wrong.toString('base64');
    delete b.meta.targets!.hashes.sha512;
  });
  await refused(
    client.gun,
    [
      ['targets', targets],
      ['snapshot', snap],
    ],
    400,
    invalidUpdate('ErrBadSnapshot', `sha256 checksum for targets did not match: expected ${wrong.toString('hex')}`),
  );
  // a snapshot that still names the previous targets
  const stale = await client.clientSnapshot([]);
  const res = await unchanged(s, [client.gun], () =>
    publish(s.agent, client.gun, [
      ['targets', targets],
      ['snapshot', stale],
    ]),
  );
  assert.equal(res.status, 400);
  assert.match(
    JSON.parse(res.body.toString()).errors[0].detail.Error.Msg,
    /^(sha256 checksum|length) for targets did not match: expected [0-9a-f]+$/,
  );
  // signed by the wrong key
  const body = JSON.parse((await client.clientSnapshot([['targets', targets]])).toString()).signed;
  await refused(
    client.gun,
    [
      ['targets', targets],
      ['snapshot', await sign(body, [generateSigner('ecdsa')])],
    ],
    400,
    invalidUpdate('ErrBadSnapshot', THRESHOLD('snapshot')),
  );
  // no hashes for root
  const noRoot = await client.clientSnapshot([['targets', targets]], (b) => {
    b.meta.root!.hashes = {};
  });
  await refused(
    client.gun,
    [
      ['targets', targets],
      ['snapshot', noRoot],
    ],
    400,
    invalidUpdate('ErrBadSnapshot', 'snapshot is missing the sha256 of root'),
  );
});

test('concurrent identical publishes: one succeeds, the other gets VERSION', async () => {
  for (const repo of [await initRepo(s.agent, newGun('race-s'), { serverSnapshot: true }), await initRepo(s.agent, newGun('race-c'))]) {
    const files = await repo.files([['targets', repo.next('targets', (b) => (b.targets.r = targetMeta('r')))]]);
    const results = await Promise.all([
      publish(s.agent, repo.gun, files),
      publish(s.agent, repo.gun, files),
      publish(s.agent, repo.gun, files),
    ]);
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 400, 400]);
    for (const r of results.filter((x) => x.status === 400)) assertError(r, 400, fixture('post_replay'));
    const ts = JSON.parse((await raw(s.agent.get(tufPath(repo.gun, 'timestamp.json')))).body.toString());
    assert.equal(ts.signed.version, 2);
  }
});

test('concurrent different publishes of the same version: exactly one wins', async () => {
  const repo = await initRepo(s.agent, newGun('race2'), { serverSnapshot: true });
  const a = await repo.files([['targets', repo.next('targets', (b) => (b.targets.a = targetMeta('a')))]]);
  const b = await repo.files([['targets', repo.next('targets', (b) => (b.targets.b = targetMeta('b')))]]);
  const [ra, rb] = await Promise.all([publish(s.agent, repo.gun, a), publish(s.agent, repo.gun, b)]);
  assert.deepEqual([ra.status, rb.status].sort(), [200, 400]);
  const winner = ra.status === 200 ? a : b;
  assert.ok((await raw(s.agent.get(tufPath(repo.gun, 'targets.json')))).body.equals(winner[0]![1]));
});
