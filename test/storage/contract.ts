// The MetadataStore contract, run against every adapter (SQLite, PostgreSQL). `open` must return
// a store over EMPTY, isolated storage each time (a fresh file, a fresh database), so global
// queries such as the unfiltered changefeed see only what the test itself wrote.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { VersionConflictError, type Change, type MetadataStore, type NewFile } from '../../src/storage/types.js';

export const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
export const file = (role: string, version: number, content?: string | Buffer): NewFile => ({
  role,
  version,
  bytes: Buffer.isBuffer(content)
    ? content
    : Buffer.from(content ?? `{"signed":{"_type":"${role}","version":${version}},"r":"${randomBytes(4).toString('hex')}"}`),
});
const T0 = new Date('2024-03-01T12:00:00.123Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);

/** Opens a store, runs fn, always closes it. */
async function withStore(open: () => Promise<MetadataStore>, fn: (s: MetadataStore) => Promise<void>): Promise<void> {
  const s = await open();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Asserts that `p` rejects with a VersionConflictError (optionally for this role/version). */
export async function rejectsConflict(p: Promise<unknown>, role?: string, version?: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof VersionConflictError, `expected VersionConflictError, got ${String((e as Error)?.stack ?? e)}`);
    if (role !== undefined) assert.equal(e.role, role);
    if (version !== undefined) assert.equal(e.version, version);
    return true;
  });
}

/** Everything observable about a GUN, to compare before and after a failed commit. */
async function snapshotOf(s: MetadataStore, gun: string, roles: string[]) {
  const latest: Record<string, { version: number; sha256: string; hex: string } | null> = {};
  for (const r of roles) {
    const f = await s.latest(gun, r);
    latest[r] = f ? { version: f.version, sha256: f.sha256, hex: f.bytes.toString('hex') } : null;
  }
  return {
    latest,
    versions: [...(await s.latestVersions(gun))].sort(),
    changes: await s.changes({ changeId: 0, records: 1000 }),
    guns: await s.listGuns(),
  };
}

const ids = (cs: Change[]) => cs.map((c) => c.id);

export function storeContract(name: string, open: () => Promise<MetadataStore>): void {
  describe(`${name}: MetadataStore contract`, () => {
    test('stores and returns the exact bytes, sha256, version and time', () =>
      withStore(open, async (s) => {
        const odd = Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a, 0x0d, 0x09, 0x00]), Buffer.from('  {"x": "é\\u0000"}  \n')]);
        const big = randomBytes(3 * 1024 * 1024 + 7); // 3 MiB of binary noise
        const pretty = Buffer.from('{\n  "signed": {"b": 1,   "a": 2}\n}\n');
        const empty = Buffer.alloc(0);
        await s.commit(
          'ex/bytes',
          [file('root', 1, odd), file('targets', 1, big), file('targets/x', 1, pretty), file('targets/empty', 1, empty)],
          T0,
        );
        for (const [role, bytes] of [
          ['root', odd],
          ['targets', big],
          ['targets/x', pretty],
          ['targets/empty', empty],
        ] as const) {
          for (const f of [
            await s.latest('ex/bytes', role),
            await s.byVersion('ex/bytes', role, 1),
            await s.byChecksum('ex/bytes', role, sha(bytes)),
          ]) {
            assert.ok(f, `${role} not found`);
            assert.ok(Buffer.isBuffer(f.bytes), 'bytes must be a Buffer');
            assert.equal(f.bytes.length, bytes.length);
            assert.ok(f.bytes.equals(bytes), `${role} bytes differ`);
            assert.equal(f.sha256, sha(bytes));
            assert.equal(f.gun, 'ex/bytes');
            assert.equal(f.role, role);
            assert.equal(f.version, 1);
            assert.equal(typeof f.version, 'number');
            assert.equal(f.createdAt.getTime(), T0.getTime());
          }
        }
      }));

    test('latest, byVersion and byChecksum', () =>
      withStore(open, async (s) => {
        const g = 'ex/lookup';
        const t1 = file('targets', 1),
          t2 = file('targets', 2),
          t3 = file('targets', 3);
        await s.commit(g, [t1], at(1));
        await s.commit(g, [t2], at(2));
        await s.commit(g, [t3], at(3));
        assert.equal((await s.latest(g, 'targets'))?.version, 3);
        assert.ok((await s.latest(g, 'targets'))?.bytes.equals(t3.bytes));
        assert.equal((await s.latest(g, 'targets'))?.createdAt.getTime(), at(3).getTime());
        for (const f of [t1, t2, t3]) {
          assert.ok((await s.byVersion(g, 'targets', f.version))?.bytes.equals(f.bytes));
          const c = await s.byChecksum(g, 'targets', sha(f.bytes));
          assert.equal(c?.version, f.version);
          assert.ok(c?.bytes.equals(f.bytes));
        }
        assert.equal(await s.byVersion(g, 'targets', 4), undefined);
        assert.equal(await s.byVersion(g, 'targets', 0), undefined);
        assert.equal(await s.byVersion(g, 'snapshot', 1), undefined);
        assert.equal(await s.latest(g, 'snapshot'), undefined);
        assert.equal(await s.latest('ex/other', 'targets'), undefined);
        assert.equal(await s.byChecksum(g, 'targets', sha('nothing')), undefined);
        assert.equal(await s.byChecksum(g, 'targets', sha(t1.bytes).toUpperCase().slice(0, 63)), undefined);

        // The checksum lookup filters by role and by GUN: the same bytes stored under another
        // role or GUN are not returned for this one.
        const shared = Buffer.from('{"same":"bytes"}');
        await s.commit(g, [file('targets/a', 1, shared)], at(4));
        await s.commit('ex/lookup2', [file('targets/b', 7, shared)], at(5));
        assert.equal((await s.byChecksum(g, 'targets/a', sha(shared)))?.role, 'targets/a');
        assert.equal(await s.byChecksum(g, 'targets/b', sha(shared)), undefined);
        assert.equal(await s.byChecksum(g, 'targets', sha(shared)), undefined);
        assert.equal(await s.byChecksum(g, 'snapshot', sha(t1.bytes)), undefined);
        const other = await s.byChecksum('ex/lookup2', 'targets/b', sha(shared));
        assert.equal(other?.gun, 'ex/lookup2');
        assert.equal(other?.version, 7);
        assert.equal(await s.byChecksum('ex/lookup2', 'targets/a', sha(shared)), undefined);
      }));

    test('latestVersions: highest version per role of exactly this GUN', () =>
      withStore(open, async (s) => {
        assert.deepEqual(await s.latestVersions('ex/v'), new Map());
        await s.commit('ex/v', [file('root', 1), file('targets', 1), file('snapshot', 1), file('timestamp', 1)], at(0));
        await s.commit('ex/v', [file('targets', 4), file('targets/rel', 2), file('snapshot', 2), file('timestamp', 9)], at(1));
        await s.commit('ex/vv', [file('root', 5), file('targets', 50)], at(2)); // a GUN with a longer name
        await s.commit('ex/v/sub', [file('root', 6)], at(3));
        assert.deepEqual(
          await s.latestVersions('ex/v'),
          new Map([
            ['root', 1],
            ['targets', 4],
            ['targets/rel', 2],
            ['snapshot', 2],
            ['timestamp', 9],
          ]),
        );
        assert.deepEqual(
          await s.latestVersions('ex/vv'),
          new Map([
            ['root', 5],
            ['targets', 50],
          ]),
        );
        assert.deepEqual(await s.latestVersions('ex/'), new Map());
        assert.deepEqual((await s.listGuns()).sort(), ['ex/v', 'ex/v/sub', 'ex/vv']);
      }));

    test('commit is all-or-nothing: a batch whose third file is stale stores nothing', () =>
      withStore(open, async (s) => {
        const g = 'ex/atomic';
        const roles = ['root', 'targets', 'targets/rel', 'snapshot', 'timestamp'];
        await s.commit(g, [file('root', 1), file('targets', 1), file('snapshot', 1), file('timestamp', 1)], at(0));
        await s.commit(g, [file('targets', 2), file('snapshot', 2), file('timestamp', 2)], at(1));
        const before = await snapshotOf(s, g, roles);
        assert.equal(before.changes.length, 2);

        // Third file (timestamp v2) is not newer than the stored v2: nothing of the batch may stay.
        await rejectsConflict(
          s.commit(g, [file('targets', 3), file('snapshot', 3), file('timestamp', 2), file('targets/rel', 1), file('root', 2)], at(2)),
          'timestamp',
          2,
        );
        assert.deepEqual(await snapshotOf(s, g, roles), before);
        assert.equal(await s.byVersion(g, 'targets', 3), undefined);
        assert.equal(await s.byVersion(g, 'snapshot', 3), undefined);

        // The same with a stale file in the middle of a new GUN's very first batch.
        await rejectsConflict(
          s.commit('ex/atomic-new', [file('root', 1), file('targets', 1), file('targets', 1), file('timestamp', 1)], at(3)),
          'targets',
          1,
        );
        assert.equal(await s.latest('ex/atomic-new', 'root'), undefined);
        assert.deepEqual(await s.latestVersions('ex/atomic-new'), new Map());
        assert.deepEqual(await s.changes({ changeId: 0, records: 1000 }), before.changes);
        assert.deepEqual(await s.listGuns(), [g]);

        // And the store still accepts the right batch afterwards.
        await s.commit(g, [file('targets', 3), file('snapshot', 3), file('timestamp', 3)], at(4));
        assert.equal((await s.latest(g, 'timestamp'))?.version, 3);
      }));

    test('versions must be strictly greater; gaps are allowed; roles and GUNs are independent', () =>
      withStore(open, async (s) => {
        const g = 'ex/versions';
        await s.commit(g, [file('targets', 1)], at(0));
        await rejectsConflict(s.commit(g, [file('targets', 1)], at(1)), 'targets', 1);
        await s.commit(g, [file('targets', 5)], at(2)); // gap 1 → 5
        await rejectsConflict(s.commit(g, [file('targets', 5)], at(3)), 'targets', 5);
        await rejectsConflict(s.commit(g, [file('targets', 4)], at(3)), 'targets', 4);
        await rejectsConflict(s.commit(g, [file('targets', 2)], at(3)), 'targets', 2);
        await s.commit(g, [file('targets', 1000)], at(4));
        assert.equal((await s.latest(g, 'targets'))?.version, 1000);
        assert.deepEqual(
          (await Promise.all([1, 2, 4, 5, 1000].map((v) => s.byVersion(g, 'targets', v)))).map((f) => f?.version),
          [1, undefined, undefined, 5, 1000],
        );

        // Two files with the same role and version in one batch conflict, even on a new GUN.
        await rejectsConflict(s.commit('ex/dup', [file('targets', 1), file('targets', 1)], at(5)), 'targets', 1);
        await rejectsConflict(s.commit('ex/dup', [file('snapshot', 3), file('root', 1), file('snapshot', 3)], at(5)), 'snapshot', 3);
        assert.deepEqual(await s.latestVersions('ex/dup'), new Map());
        // Two versions of one role in one batch, increasing: both stored.
        await s.commit('ex/dup', [file('snapshot', 1), file('snapshot', 2)], at(6));
        assert.deepEqual(await s.latestVersions('ex/dup'), new Map([['snapshot', 2]]));

        // A role's versions do not constrain another role or another GUN.
        await s.commit(g, [file('snapshot', 1), file('targets/a', 1)], at(7));
        await s.commit('ex/versions2', [file('targets', 1)], at(8));
        assert.equal((await s.latest('ex/versions2', 'targets'))?.version, 1);

        // Not versions at all: refused before anything is stored.
        for (const bad of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
          await assert.rejects(s.commit(g, [file('targets/b', 1), file('targets', bad)], at(9)));
        }
        assert.equal(await s.latest(g, 'targets/b'), undefined);
      }));

    test('versions near 2^31 and up to Number.MAX_SAFE_INTEGER round-trip exactly', () =>
      withStore(open, async (s) => {
        const g = 'ex/big';
        const steps = [2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 2, Number.MAX_SAFE_INTEGER];
        for (const [i, v] of steps.entries()) await s.commit(g, [file('timestamp', v), file('targets', v)], at(i));
        for (const v of steps) {
          const f = await s.byVersion(g, 'timestamp', v);
          assert.equal(f?.version, v);
          assert.equal(typeof f?.version, 'number');
        }
        assert.equal(await s.byVersion(g, 'timestamp', 2 ** 31 - 2), undefined);
        assert.equal(await s.byVersion(g, 'timestamp', 2 ** 53 - 3), undefined);
        assert.equal((await s.latest(g, 'timestamp'))?.version, Number.MAX_SAFE_INTEGER);
        assert.deepEqual(
          await s.latestVersions(g),
          new Map([
            ['timestamp', Number.MAX_SAFE_INTEGER],
            ['targets', Number.MAX_SAFE_INTEGER],
          ]),
        );
        assert.deepEqual(
          (await s.changes({ changeId: 0, records: 100 })).map((c) => c.version),
          steps,
        );
        await rejectsConflict(s.commit(g, [file('timestamp', 2 ** 53 - 2)], at(20)), 'timestamp', 2 ** 53 - 2);
        await rejectsConflict(s.commit(g, [file('targets', Number.MAX_SAFE_INTEGER)], at(20)), 'targets', Number.MAX_SAFE_INTEGER);
        // 2^31 compared as a number, not a 32-bit int: 2^31 + 1 after 2^31 - 1 on a fresh role.
        await s.commit(g, [file('root', 2 ** 31 - 1)], at(21));
        await rejectsConflict(s.commit(g, [file('root', 2 ** 31 - 1)], at(22)));
        await s.commit(g, [file('root', 2 ** 31 + 1)], at(23));
        assert.equal((await s.latest(g, 'root'))?.version, 2 ** 31 + 1);
      }));

    test('deleteGun removes exactly that GUN and records a deletion only when something went', () =>
      withStore(open, async (s) => {
        const guns = ['a/b', 'a/bc', 'a/b/c', 'a/b_', 'a/b%', 'A/B', 'a/', 'x/a/b'];
        for (const [i, g] of guns.entries()) await s.commit(g, [file('root', 1), file('targets', 2), file('timestamp', 1)], at(i));
        const before = await s.changes({ changeId: 0, records: 1000 });
        assert.equal(before.length, guns.length);

        assert.equal(await s.deleteGun('a/b', at(100)), true);
        assert.equal(await s.latest('a/b', 'root'), undefined);
        assert.equal(await s.latest('a/b', 'timestamp'), undefined);
        assert.equal(await s.byVersion('a/b', 'targets', 2), undefined);
        assert.deepEqual(await s.latestVersions('a/b'), new Map());
        for (const g of guns.slice(1)) {
          assert.deepEqual(
            await s.latestVersions(g),
            new Map([
              ['root', 1],
              ['targets', 2],
              ['timestamp', 1],
            ]),
            `${g} must survive deleting a/b`,
          );
        }
        assert.deepEqual((await s.listGuns()).sort(), guns.slice(1).sort());

        const after = await s.changes({ changeId: 0, records: 1000 });
        assert.equal(after.length, before.length + 1);
        assert.deepEqual(after.slice(0, -1), before);
        const del = after.at(-1)!;
        assert.deepEqual(
          { gun: del.gun, version: del.version, sha256: del.sha256, category: del.category },
          { gun: 'a/b', version: 0, sha256: '', category: 'deletion' },
        );
        assert.equal(del.createdAt.getTime(), at(100).getTime());
        assert.ok(del.id > before.at(-1)!.id);

        // Nothing left to remove, or never existed: false, and no changefeed record.
        assert.equal(await s.deleteGun('a/b', at(101)), false);
        assert.equal(await s.deleteGun('never/was', at(102)), false);
        assert.equal(await s.deleteGun('a', at(103)), false); // a prefix of several GUNs
        assert.equal(await s.deleteGun('a/%', at(103)), false);
        assert.equal(await s.deleteGun('a/b_', at(104)), true);
        assert.equal((await s.latest('a/bc', 'root')) !== undefined, true);
        assert.deepEqual((await s.changes({ changeId: 0, records: 1000 })).map((c) => `${c.category}:${c.gun}`).slice(-2), [
          'deletion:a/b',
          'deletion:a/b_',
        ]);

        // A deleted GUN starts again from version 1.
        await s.commit('a/b', [file('root', 1)], at(105));
        assert.equal((await s.latest('a/b', 'root'))?.version, 1);
      }));

    test('pins: first pin, forward moves with versions merged by maximum, stale writers refused, exact bytes', () =>
      withStore(open, async (s) => {
        const g = 'pin/app';
        const r1 = Buffer.from([0, 0xff, 0x0a, ...Buffer.from('{"root":1}')]);
        const r2 = Buffer.from('{"root":2}');
        const other = Buffer.from('{"root":"other"}');
        assert.equal(await s.pin(g), undefined);
        // First use: only when no pin is stored.
        assert.equal(await s.advancePin(g, undefined, { root: r1, versions: { root: 1, timestamp: 3, targets: 2 } }, at(1)), true);
        let p = await s.pin(g);
        assert.ok(p && p.root.equals(r1), 'the exact root bytes');
        assert.deepEqual(p.versions, { root: 1, targets: 2, timestamp: 3 });
        assert.equal(p.gun, g);
        assert.equal(p.updatedAt.getTime(), at(1).getTime());
        assert.equal(
          await s.advancePin(g, undefined, { root: other, versions: { root: 1 } }, at(2)),
          false,
          'a second first use of another root',
        );
        // Same root: versions never go down, roles are added.
        assert.equal(
          await s.advancePin(g, r1, { root: r1, versions: { root: 1, timestamp: 2, targets: 5, 'targets/releases': 1 } }, at(3)),
          true,
        );
        assert.deepEqual((await s.pin(g))?.versions, { root: 1, targets: 5, 'targets/releases': 1, timestamp: 3 });
        // A rotation from the pinned root moves it; a writer that verified from another root does not.
        assert.equal(await s.advancePin(g, other, { root: r2, versions: { root: 2 } }, at(4)), false);
        assert.equal(await s.advancePin(g, r1, { root: r2, versions: { root: 2, timestamp: 4 } }, at(5)), true);
        p = await s.pin(g);
        assert.ok(p?.root.equals(r2));
        assert.deepEqual(p!.versions, { root: 2, targets: 5, 'targets/releases': 1, timestamp: 4 });
        // A late writer still on r1 is refused; one that already reached r2 merges.
        assert.equal(await s.advancePin(g, r1, { root: r1, versions: { timestamp: 9 } }, at(6)), false);
        assert.equal(await s.advancePin(g, r1, { root: r2, versions: { timestamp: 6 } }, at(7)), true);
        assert.equal((await s.pin(g))?.versions.timestamp, 6);
        // Bad pins are caller bugs, and nothing is written.
        await assert.rejects(s.advancePin(g, r2, { root: r2, versions: { timestamp: 0 } }, at(8)), RangeError);
        await assert.rejects(s.advancePin(g, r2, { root: r2, versions: { timestamp: 1.5 } }, at(8)), RangeError);
        await assert.rejects(s.advancePin(g, r2, { root: Buffer.alloc(0), versions: {} }, at(8)), TypeError);
        assert.equal((await s.pin(g))?.updatedAt.getTime(), at(7).getTime());
        assert.equal(await s.pin('pin/ap'), undefined, 'pins are per exact GUN');
        assert.equal(await s.pin('pin/%'), undefined);
      }));

    test('pins survive deleteGun and are moved only by resetPin', () =>
      withStore(open, async (s) => {
        const g = 'pin/deleted';
        const r1 = Buffer.from('{"root":1}');
        const fresh = Buffer.from('{"root":"fresh"}');
        await s.commit(g, [file('root', 1, r1), file('timestamp', 7)], at(0));
        assert.equal(await s.advancePin(g, undefined, { root: r1, versions: { root: 1, timestamp: 7 } }, at(1)), true);
        assert.equal(await s.deleteGun(g, at(2)), true);
        assert.deepEqual(await s.listGuns(), []);
        const kept = await s.pin(g);
        assert.ok(kept?.root.equals(r1), 'deleting the metadata keeps the pin');
        assert.deepEqual(kept!.versions, { root: 1, timestamp: 7 });
        // Re-created under another root: first use does not apply while a pin is stored.
        assert.equal(await s.advancePin(g, undefined, { root: fresh, versions: { root: 1 } }, at(3)), false);
        // The reset replaces it (answering with the old pin) ...
        const old = await s.resetPin(g, { root: fresh, versions: { root: 1 } }, at(4));
        assert.ok(old?.root.equals(r1));
        assert.deepEqual(old!.versions, { root: 1, timestamp: 7 });
        const now = await s.pin(g);
        assert.ok(now?.root.equals(fresh));
        assert.deepEqual(now!.versions, { root: 1 }, 'versions start again');
        assert.equal(now!.updatedAt.getTime(), at(4).getTime());
        // ... or removes it; a writer that verified from the removed pin is refused.
        assert.ok((await s.resetPin(g, undefined, at(5)))?.root.equals(fresh));
        assert.equal(await s.pin(g), undefined);
        assert.equal(await s.advancePin(g, fresh, { root: fresh, versions: { timestamp: 2 } }, at(6)), false);
        assert.equal(await s.pin(g), undefined);
        assert.equal(await s.resetPin(g, undefined, at(7)), undefined);
        assert.equal(await s.resetPin('never/pinned', undefined, at(7)), undefined);
      }));

    test('changefeed: one update per stored timestamp, cursors and direction as in spec §2.8', () =>
      withStore(open, async (s) => {
        assert.deepEqual(await s.changes({ changeId: 0, records: 100 }), []);
        assert.deepEqual(await s.changes({ changeId: -1, records: 100 }), []);
        const tss: Buffer[] = [];
        const ts = (v: number) => {
          const f = file('timestamp', v);
          tss.push(f.bytes);
          return f;
        };
        // 6 timestamps over gun1 / gun1x (a longer GUN sharing its prefix) / gun1/sub, one delete.
        await s.commit('feed/g1', [file('root', 1), file('targets', 1), file('snapshot', 1), ts(1)], at(1));
        await s.commit('feed/g1x', [ts(1)], at(2));
        await s.commit('feed/g1', [file('targets', 2)], at(3)); // no timestamp: no change
        await s.commit('feed/g1', [file('snapshot', 2), ts(2)], at(4));
        await s.commit('feed/g1/sub', [ts(5)], at(5));
        await s.commit('feed/g1', [ts(3)], at(6));
        await s.deleteGun('feed/g1x', at(7));
        await s.commit('feed/g1x', [ts(1)], at(8));

        const all = await s.changes({ changeId: 0, records: 100 });
        assert.deepEqual(
          all.map((c) => [c.gun, c.version, c.category]),
          [
            ['feed/g1', 1, 'update'],
            ['feed/g1x', 1, 'update'],
            ['feed/g1', 2, 'update'],
            ['feed/g1/sub', 5, 'update'],
            ['feed/g1', 3, 'update'],
            ['feed/g1x', 0, 'deletion'],
            ['feed/g1x', 1, 'update'],
          ],
        );
        const updates = all.filter((c) => c.category === 'update');
        assert.deepEqual(
          updates.map((c) => c.sha256),
          tss.map((b) => sha(b)),
        );
        assert.deepEqual(
          all.map((c) => c.createdAt.getTime()),
          [1, 2, 4, 5, 6, 7, 8].map((i) => at(i).getTime()),
        );
        for (let i = 1; i < all.length; i++) assert.ok(all[i]!.id > all[i - 1]!.id, 'ids increase');
        assert.ok(all.every((c) => Number.isSafeInteger(c.id) && c.id > 0));
        const id = ids(all);

        // Forwards: records after change_id, that id excluded; change_id 0 = from the start.
        assert.deepEqual(ids(await s.changes({ changeId: 0, records: 2 })), id.slice(0, 2));
        assert.deepEqual(ids(await s.changes({ changeId: id[1]!, records: 2 })), id.slice(2, 4));
        assert.deepEqual(ids(await s.changes({ changeId: id[1]!, records: 100 })), id.slice(2));
        assert.deepEqual(ids(await s.changes({ changeId: id[6]!, records: 100 })), []);
        assert.deepEqual(ids(await s.changes({ changeId: id[6]! + 1000, records: 100 })), []);

        // change_id -1: from the newest backwards, returned oldest → newest. Any negative id
        // means the same (Go: `reversed := id < 0`), and so does a negative count.
        assert.deepEqual(ids(await s.changes({ changeId: -1, records: 3 })), id.slice(4));
        assert.deepEqual(ids(await s.changes({ changeId: -1, records: -3 })), id.slice(4));
        assert.deepEqual(ids(await s.changes({ changeId: -7, records: 3 })), id.slice(4));
        assert.deepEqual(ids(await s.changes({ changeId: -1, records: 100 })), id);
        assert.deepEqual(ids(await s.changes({ changeId: 0, records: -2 })), id.slice(5));

        // Negative records: that many before change_id (excluded), oldest → newest.
        assert.deepEqual(ids(await s.changes({ changeId: id[4]!, records: -2 })), id.slice(2, 4));
        assert.deepEqual(ids(await s.changes({ changeId: id[4]!, records: -100 })), id.slice(0, 4));
        assert.deepEqual(ids(await s.changes({ changeId: id[0]!, records: -5 })), []);

        // Per-GUN: exact equality, never a prefix; cursors combine with the filter.
        const g1 = all.filter((c) => c.gun === 'feed/g1');
        assert.deepEqual(await s.changes({ gun: 'feed/g1', changeId: 0, records: 100 }), g1);
        assert.deepEqual(ids(await s.changes({ gun: 'feed/g1', changeId: id[0]!, records: 1 })), [id[2]]);
        assert.deepEqual(ids(await s.changes({ gun: 'feed/g1', changeId: -1, records: 2 })), [id[2], id[4]]);
        assert.deepEqual(ids(await s.changes({ gun: 'feed/g1', changeId: id[4]!, records: -1 })), [id[2]]);
        assert.deepEqual(ids(await s.changes({ gun: 'feed/g1x', changeId: 0, records: 100 })), [id[1], id[5], id[6]]);
        assert.deepEqual(ids(await s.changes({ gun: 'feed/g1/sub', changeId: 0, records: 100 })), [id[3]]);
        assert.deepEqual(await s.changes({ gun: 'feed/', changeId: 0, records: 100 }), []);
        assert.deepEqual(await s.changes({ gun: 'feed/g%', changeId: 0, records: 100 }), []);
        assert.deepEqual(await s.changes({ gun: 'feed/g_', changeId: 0, records: 100 }), []);

        // A failed commit adds no record.
        await rejectsConflict(s.commit('feed/g1', [file('timestamp', 4), file('snapshot', 2)], at(9)));
        assert.deepEqual(await s.changes({ changeId: 0, records: 100 }), all);
      }));

    test('odd characters in GUNs and roles are data, never SQL or LIKE patterns', () =>
      withStore(open, async (s) => {
        const guns = [
          "it's/quoted",
          'dq"uote/x',
          '100%/lib',
          '100_/lib',
          'under_score/x',
          'underXscore/x',
          'back\\slash/x',
          "'); DROP TABLE tuf_files; --",
          '$1/$2',
          '?/?',
          'ünïcødé/ßtraße/日本語/🚀',
          'tab\there',
          'a%',
          'ab',
          'a_',
          'a__',
          '%',
          '_',
        ];
        const roles = ["targets/it's", 'targets/100%', 'targets/_', 'targets/a', 'targets/🚀', 'targets/"x"', 'targets/\\'];
        const stored = new Map<string, Buffer>();
        for (const [i, g] of guns.entries()) {
          const fs = roles.map((r) => file(r, i + 1, `${g}|${r}|${i}`));
          for (const f of fs) stored.set(`${g}\0${f.role}`, f.bytes);
          await s.commit(g, [...fs, file('timestamp', i + 1, `ts|${g}`)], at(i));
        }
        assert.deepEqual((await s.listGuns()).sort(), [...guns].sort());
        for (const [i, g] of guns.entries()) {
          assert.deepEqual(await s.latestVersions(g), new Map([...roles, 'timestamp'].map((r) => [r, i + 1])), g);
          for (const r of roles) {
            const want = stored.get(`${g}\0${r}`)!;
            const f = await s.latest(g, r);
            assert.equal(f?.gun, g);
            assert.equal(f?.role, r);
            assert.ok(f?.bytes.equals(want), `${g} ${r}`);
            assert.equal((await s.byChecksum(g, r, sha(want)))?.role, r);
            assert.equal((await s.byVersion(g, r, i + 1))?.gun, g);
          }
          const cs = await s.changes({ gun: g, changeId: 0, records: 100 });
          assert.deepEqual(
            cs.map((c) => [c.gun, c.sha256]),
            [[g, sha(`ts|${g}`)]],
            g,
          );
        }
        // LIKE wildcards are not interpreted: '_' and '%' match only themselves.
        assert.equal((await s.latest('a%', 'targets/_'))?.role, 'targets/_');
        assert.equal(await s.byChecksum('ab', 'targets/_', sha(stored.get('ab\0targets/a')!)), undefined);
        assert.equal((await s.byChecksum('ab', 'targets/a', sha(stored.get('ab\0targets/a')!)))?.role, 'targets/a');
        assert.equal(await s.latest('a_', 'targets/%'), undefined);
        assert.equal(await s.latest('under%', 'targets/a'), undefined);
        assert.equal(await s.latest('under_score/x', 'targets/%'), undefined);
        assert.equal(await s.deleteGun('a_', at(50)), true);
        assert.equal(await s.deleteGun('%', at(51)), true);
        assert.equal(await s.deleteGun('_', at(52)), true);
        assert.equal(await s.deleteGun('under_score/x', at(53)), true);
        assert.deepEqual((await s.listGuns()).sort(), guns.filter((g) => !['a_', '%', '_', 'under_score/x'].includes(g)).sort());
        for (const g of ['a%', 'ab', 'a__', 'underXscore/x', '100%/lib', '100_/lib'])
          assert.equal((await s.latestVersions(g)).size, roles.length + 1, g);
        const dels = (await s.changes({ changeId: -1, records: 4 })).map((c) => [c.gun, c.category]);
        assert.deepEqual(dels, [
          ['a_', 'deletion'],
          ['%', 'deletion'],
          ['_', 'deletion'],
          ['under_score/x', 'deletion'],
        ]);
        await s.ping();
      }));

    test('a journal row is stored with its commit, or not at all, and acknowledgements ride along', () =>
      withStore(open, async (s) => {
        const row = (id: string) => ({ id, writer: 'host 1', entry: JSON.stringify({ action: 'x', id }) });
        await s.commit('ex/j', [file('root', 1), file('timestamp', 1)], at(1), { add: row('j1') });
        assert.deepEqual(
          (await s.journal(10)).map((r) => [r.id, r.gun, r.at.getTime(), r.writer, JSON.parse(r.entry).id]),
          [['j1', 'ex/j', at(1).getTime(), 'host 1', 'j1']],
        );
        // A refused commit stores neither its files nor its row, and removes nothing.
        await rejectsConflict(s.commit('ex/j', [file('timestamp', 2), file('root', 1)], at(2), { add: row('j2'), ack: ['j1'] }), 'root', 1);
        assert.deepEqual(
          (await s.journal(10)).map((r) => r.id),
          ['j1'],
        );
        assert.equal((await s.latest('ex/j', 'timestamp'))!.version, 1);
        // A commit removes the rows it acknowledges and adds its own, together.
        await s.commit('ex/j', [file('timestamp', 2)], at(3), { add: row('j3'), ack: ['j1', 'unknown'] });
        await s.commit('ex/j', [file('timestamp', 3)], at(4), { add: row('j4') });
        assert.deepEqual(
          (await s.journal(10)).map((r) => r.id),
          ['j3', 'j4'],
        );
        assert.deepEqual(
          (await s.journal(1)).map((r) => r.id),
          ['j3'],
        );
        // A delete journals only when something went; its acknowledgements are written either way.
        assert.equal(await s.deleteGun('ex/none', at(5), { add: row('j5'), ack: ['j3'] }), false);
        assert.deepEqual(
          (await s.journal(10)).map((r) => r.id),
          ['j4'],
        );
        assert.equal(await s.deleteGun('ex/j', at(6), { add: row('j6') }), true);
        assert.deepEqual(
          (await s.journal(10)).map((r) => [r.id, r.gun]),
          [
            ['j4', 'ex/j'],
            ['j6', 'ex/j'],
          ],
        );
        await s.acknowledge(['j4', 'j6']);
        await s.acknowledge([]);
        assert.deepEqual(await s.journal(10), []);
      }));

    test('ping succeeds on an open store and close is idempotent', async () => {
      const s = await open();
      await s.ping();
      assert.equal(typeof s.kind, 'string');
      await s.close();
      await s.close();
    });
  });
}

/** Settled results → indexes that succeeded; every failure must be a VersionConflictError. */
export function winners(results: PromiseSettledResult<unknown>[]): number[] {
  const ok: number[] = [];
  for (const [i, r] of results.entries()) {
    if (r.status === 'fulfilled') ok.push(i);
    else
      assert.ok(
        r.reason instanceof VersionConflictError,
        `commit ${i} failed with something other than a conflict: ${String(r.reason?.stack ?? r.reason)}`,
      );
  }
  return ok;
}

/**
 * Races between two store instances over the same storage (two SQLite connections to one file,
 * two PostgreSQL pools), as two trustgate processes would have. `openPair` returns two stores over
 * the same fresh, empty storage.
 */
export function concurrencyContract(name: string, openPair: () => Promise<[MetadataStore, MetadataStore]>, n = 20): void {
  const withPair = async (fn: (a: MetadataStore, b: MetadataStore) => Promise<void>) => {
    const [a, b] = await openPair();
    try {
      // Warm up: a pooled store opens connections lazily, and connection set-up would otherwise
      // serialise the first commits of a race by accident.
      await Promise.all([a, b].flatMap((s) => Array.from({ length: n }, () => s.ping())));
      await fn(a, b);
    } finally {
      await a.close();
      await b.close();
    }
  };

  describe(`${name}: concurrent commits from two instances`, () => {
    test(`${n} commits of the same role+version: one wins whole, the rest conflict, nothing mixes`, () =>
      withPair(async (a, b) => {
        const g = 'race/same';
        await a.commit(g, [file('root', 1), file('targets', 1), file('snapshot', 1), file('timestamp', 1)], at(0));
        for (let round = 0; round < 5; round++) {
          const v = round + 2;
          // Each batch starts with a role only it has, so a loser's partial write would show.
          const batches = Array.from({ length: n }, (_, i) => [
            file(`targets/only-${round}-${i}`, 1),
            file('targets', v),
            file('snapshot', v),
            file('timestamp', v),
          ]);
          const feedBefore = await b.changes({ changeId: 0, records: 1000 });
          const results = await Promise.allSettled(batches.map((batch, i) => (i % 2 ? b : a).commit(g, batch, at(v))));
          const ok = winners(results);
          assert.equal(ok.length, 1, `round ${round}: exactly one commit must win, got ${ok.length}`);
          const w = ok[0]!;
          const win = batches[w]!;
          for (const s of [a, b]) {
            for (const f of win) {
              const got = await s.latest(g, f.role);
              assert.equal(got?.version, f.version, `${f.role} version`);
              assert.ok(got?.bytes.equals(f.bytes), `round ${round}: ${f.role} must be the winner's bytes`);
            }
            const roles = [...(await s.latestVersions(g)).keys()];
            const only = roles.filter((r) => r.startsWith(`targets/only-${round}-`));
            assert.deepEqual(only, [`targets/only-${round}-${w}`], 'no loser role stored');
          }
          const feed = await a.changes({ changeId: 0, records: 1000 });
          assert.equal(feed.length, feedBefore.length + 1, 'exactly one changefeed record per round');
          assert.equal(feed.at(-1)!.sha256, sha(win[3]!.bytes));
          assert.equal(feed.at(-1)!.version, v);
        }
      }));

    test(`${n} commits with crossing versions: at most one can be newer in every role`, () =>
      withPair(async (a, b) => {
        // Batch k carries targets v(1+k) and snapshot v(2+n-k): for any two batches, one role is
        // higher in each, so whichever commits second has a stale role. Exactly one may win. The
        // primary key cannot catch this (no two batches share a version): only serialising the
        // check-and-insert does.
        const g = 'race/crossing';
        await b.commit(g, [file('targets', 1), file('snapshot', 1)], at(0));
        const batches = Array.from({ length: n }, (_, i) => {
          const k = i + 1;
          return [file(`targets/x-${k}`, 1), file('targets', 1 + k), file('snapshot', 2 + n - k)];
        });
        const results = await Promise.allSettled(batches.map((batch, i) => (i % 2 ? a : b).commit(g, batch, at(1))));
        const ok = winners(results);
        assert.equal(ok.length, 1, `exactly one crossing commit may win, got ${ok.length}`);
        const win = batches[ok[0]!]!;
        for (const f of win) assert.ok((await a.latest(g, f.role))?.bytes.equals(f.bytes), f.role);
        assert.deepEqual(
          [...(await b.latestVersions(g)).keys()].filter((r) => r.startsWith('targets/x-')),
          [win[0]!.role],
        );
        assert.equal((await a.byVersion(g, 'targets', 1))?.version, 1);
        const tv = await Promise.all(Array.from({ length: n }, (_, i) => a.byVersion(g, 'targets', i + 2)));
        assert.equal(tv.filter(Boolean).length, 1, 'only the winner’s targets version is stored');
      }));

    test(`${n} commits to ${n} different GUNs all succeed, each with its own changefeed id`, () =>
      withPair(async (a, b) => {
        const batches = Array.from({ length: n }, () => [file('root', 1), file('targets', 1), file('snapshot', 1), file('timestamp', 1)]);
        const results = await Promise.allSettled(batches.map((batch, i) => (i % 2 ? a : b).commit(`race/gun-${i}`, batch, at(i))));
        assert.deepEqual(winners(results).length, n);
        const feed = await a.changes({ changeId: 0, records: 1000 });
        assert.equal(feed.length, n);
        assert.equal(new Set(feed.map((c) => c.id)).size, n);
        assert.deepEqual(new Set(feed.map((c) => c.gun)), new Set(batches.map((_, i) => `race/gun-${i}`)));
        for (const [i, batch] of batches.entries()) {
          assert.equal(feed.find((c) => c.gun === `race/gun-${i}`)?.sha256, sha(batch[3]!.bytes));
        }
      }));

    test('what one instance commits or deletes, the other reads at once (no stale cache)', () =>
      withPair(async (a, b) => {
        const g = 'fresh/gun';
        assert.equal(await a.latest(g, 'timestamp'), undefined);
        for (let v = 1; v <= 3; v++) {
          const ts = file('timestamp', v);
          await b.commit(g, [ts], at(v));
          assert.ok((await a.latest(g, 'timestamp'))?.bytes.equals(ts.bytes), `a sees b's timestamp v${v}`);
          assert.equal((await a.latestVersions(g)).get('timestamp'), v);
          await a.commit(g, [file('targets', v)], at(v));
          assert.equal((await b.latest(g, 'targets'))?.version, v);
        }
        assert.equal(await a.deleteGun(g, at(9)), true);
        assert.equal(await b.latest(g, 'timestamp'), undefined);
        assert.equal(await a.latest(g, 'timestamp'), undefined);
        await b.commit(g, [file('timestamp', 1, 'again')], at(10));
        assert.equal((await a.latest(g, 'timestamp'))?.sha256, sha('again'));
      }));

    test('racing pin writers: one first use wins, versions end at the maximum, a reset is not undone', () =>
      withPair(async (a, b) => {
        const g = 'race/pin';
        const roots = Array.from({ length: 10 }, (_, i) => Buffer.from(`{"root":${i}}`));
        const first = await Promise.all(
          roots.map((r, i) => (i % 2 ? a : b).advancePin(g, undefined, { root: r, versions: { root: 1 } }, at(i))),
        );
        assert.equal(first.filter(Boolean).length, 1);
        const won = roots[first.indexOf(true)]!;
        assert.ok((await b.pin(g))?.root.equals(won));
        const bumps = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 ? a : b).advancePin(g, won, { root: won, versions: { timestamp: i + 1 } }, at(20 + i)),
          ),
        );
        assert.ok(bumps.every(Boolean));
        assert.deepEqual((await a.pin(g))?.versions, { root: 1, timestamp: 20 });
        await a.resetPin(g, undefined, at(50));
        assert.equal(await b.advancePin(g, won, { root: won, versions: { timestamp: 21 } }, at(51)), false);
        assert.equal(await a.pin(g), undefined);
      }));

    test('concurrent deletes of one GUN: one removes it, one deletion record', () =>
      withPair(async (a, b) => {
        const g = 'race/delete';
        await a.commit(g, [file('root', 1), file('timestamp', 1)], at(0));
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).deleteGun(g, at(1))));
        assert.equal(results.filter(Boolean).length, 1);
        const feed = await b.changes({ changeId: 0, records: 100 });
        assert.deepEqual(
          feed.map((c) => c.category),
          ['update', 'deletion'],
        );
        assert.deepEqual(await a.listGuns(), []);
      }));
  });
}
