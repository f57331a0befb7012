// The readable diff of a role's new version (core/tuf/role-diff.ts) that pending changes carry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { delegatedRoles, diffRoles, diffTargets, rootRoles } from '../../src/core/tuf/role-diff.js';
import type { RootBody, TargetsBody } from '../../src/core/tuf/metadata.js';

const fm = (c: string, length: number) => ({ length, hashes: { sha256: Buffer.from(c.repeat(64), 'hex').toString('base64') } });
const d = (c: string) => `sha256:${c.repeat(64)}`;

test('targets: added, removed and changed tags in natural order; unchanged ones are left out', () => {
  const before = { v1: fm('a', 1), v2: fm('b', 2), v10: fm('c', 3), gone: fm('d', 4) };
  const after = { v1: fm('a', 1), v2: fm('e', 2), v10: fm('c', 30), v9: fm('f', 5), __proto__x: fm('0', 6) };
  assert.deepEqual(diffTargets(before, after), {
    added: [
      { tag: '__proto__x', digest: d('0'), size: 6 },
      { tag: 'v9', digest: d('f'), size: 5 },
    ],
    removed: [{ tag: 'gone', digest: d('d'), size: 4 }],
    changed: [
      { tag: 'v2', from: { tag: 'v2', digest: d('b'), size: 2 }, to: { tag: 'v2', digest: d('e'), size: 2 } },
      { tag: 'v10', from: { tag: 'v10', digest: d('c'), size: 3 }, to: { tag: 'v10', digest: d('c'), size: 30 } },
    ],
  });
  assert.deepEqual(diffTargets(undefined, { v1: fm('a', 1) }).added, [{ tag: 'v1', digest: d('a'), size: 1 }]);
  // A tag named like an Object.prototype member is a tag like any other.
  assert.deepEqual(diffTargets({}, { constructor: fm('a', 1) }).added.length, 1);
});

test('roles: keys, threshold and paths of root roles and delegations', () => {
  const root = (targets: string[], threshold: number) =>
    ({ roles: { root: { keyids: ['r'], threshold: 1 }, targets: { keyids: targets, threshold } } }) as unknown as RootBody;
  assert.deepEqual(diffRoles(rootRoles(root(['t1'], 1)), rootRoles(root(['t1', 't2'], 2))), [
    { role: 'targets', change: 'changed', keyIdsAdded: ['t2'], keyIdsRemoved: [], threshold: { from: 1, to: 2 } },
  ]);
  assert.deepEqual(diffRoles(rootRoles(root(['t1'], 1)), rootRoles(root(['t1'], 1))), []);
  const targets = (roles: Array<{ name: string; keyids: string[]; threshold: number; paths?: string[] }>) =>
    ({ delegations: { keys: {}, roles } }) as unknown as TargetsBody;
  assert.deepEqual(
    diffRoles(
      delegatedRoles(
        targets([
          { name: 'targets/a', keyids: ['k'], threshold: 1, paths: [''] },
          { name: 'targets/b', keyids: ['k'], threshold: 1 },
        ]),
      ),
      delegatedRoles(
        targets([
          { name: 'targets/a', keyids: ['k'], threshold: 1, paths: ['qa-'] },
          { name: 'targets/c', keyids: ['m'], threshold: 1 },
        ]),
      ),
    ),
    [
      { role: 'targets/a', change: 'changed', keyIdsAdded: [], keyIdsRemoved: [], paths: { from: [''], to: ['qa-'] } },
      { role: 'targets/b', change: 'removed', keyIdsAdded: [], keyIdsRemoved: ['k'], threshold: { from: 1, to: null } },
      { role: 'targets/c', change: 'added', keyIdsAdded: ['m'], keyIdsRemoved: [], threshold: { from: null, to: 1 } },
    ],
  );
});
