// The input rules shared by the REST routes and the CLI (src/http/signing-input.ts): digests, OCI
// tags, sizes, roles, custom metadata and image references.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkCustom,
  checkDigest,
  checkRole,
  checkSize,
  checkTag,
  parseImageRef,
  SigningInputError,
} from '../../src/http/signing-input.js';
import { defaultUpstreamRepo } from '../../src/trust/tag-signing.js';

const D = 'sha256:' + 'ab'.repeat(32);

test('digests: only sha256 with 64 lower-case hex digits', () => {
  assert.equal(checkDigest(D), D);
  for (const bad of [
    'ab'.repeat(32),
    'sha256:' + 'AB'.repeat(32),
    'sha256:' + 'ab'.repeat(31),
    'sha512:' + 'ab'.repeat(64),
    `${D} `,
    42,
    undefined,
  ]) {
    assert.throws(() => checkDigest(bad), SigningInputError, String(bad));
  }
});

test('tags: the OCI grammar, up to 128 characters', () => {
  for (const ok of ['v1', 'latest', '1.0.0-rc.1', '_x', 'A'.repeat(128), 'a_b-c.d']) assert.equal(checkTag(ok), ok);
  for (const bad of ['', '.x', '-x', 'a/b', 'a:b', 'a'.repeat(129), 'ä', 'a b', null])
    assert.throws(() => checkTag(bad), SigningInputError, String(bad));
});

test('sizes: positive whole numbers', () => {
  assert.equal(checkSize(1), 1);
  for (const bad of [0, -1, 1.5, '10', NaN, Infinity, 2 ** 60]) assert.throws(() => checkSize(bad), SigningInputError, String(bad));
});

test('roles: targets and its delegations only', () => {
  for (const ok of ['targets', 'targets/releases', 'targets/ci-1', 'targets/a/b']) assert.equal(checkRole(ok), ok);
  for (const bad of ['root', 'snapshot', 'timestamp', 'targets/', 'targets/Rel', 'releases', 'targets/*'])
    assert.throws(() => checkRole(bad), SigningInputError, bad);
});

test('custom metadata: a JSON object of whole numbers, bounded', () => {
  assert.deepEqual(checkCustom({ a: [1, 'x', { b: true }] }), { a: [1, 'x', { b: true }] });
  for (const bad of [[1], 'x', { f: 0.5 }, { big: 'x'.repeat(17 * 1024) }]) assert.throws(() => checkCustom(bad), SigningInputError);
});

test('image references: host, path, tag and digest', () => {
  assert.deepEqual(parseImageRef('registry.example.com:5000/team/app:v1'), {
    name: 'registry.example.com:5000/team/app',
    host: 'registry.example.com:5000',
    path: 'team/app',
    tag: 'v1',
  });
  assert.deepEqual(parseImageRef(`localhost/app@${D}`), { name: 'localhost/app', host: 'localhost', path: 'app', digest: D });
  assert.deepEqual(parseImageRef(`r.io/a/b:t@${D}`), { name: 'r.io/a/b', host: 'r.io', path: 'a/b', tag: 't', digest: D });
  assert.deepEqual(parseImageRef('team/app'), { name: 'team/app', path: 'team/app' });
  for (const bad of ['', 'r.io/app@sha256:12', 'r.io/app:bad/tag', 'r.io/../x:v1', 'r.io/app:'])
    assert.throws(() => parseImageRef(bad), SigningInputError, bad);
});

test("a GUN's upstream repository drops the registry host, as docker names it", () => {
  assert.equal(defaultUpstreamRepo('registry.example.com:5000/team/app'), 'team/app');
  assert.equal(defaultUpstreamRepo('localhost/app'), 'app');
  assert.equal(defaultUpstreamRepo('team/app'), 'team/app');
});
