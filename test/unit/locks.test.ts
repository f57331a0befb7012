// GunLocks: one change per GUN at a time, re-entrant within one async call chain, also after the
// lock's context storage was turned off while no lock was held.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { GunLocks } from '../../src/trust/locks.js';

/** Fails instead of hanging when a run waits for itself. */
const within = <T>(p: Promise<T>, ms = 2000): Promise<T> =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`not settled within ${ms} ms`)))]);

test('a nested run of a held GUN runs at once, again after every lock was released', async () => {
  const locks = new GunLocks();
  for (let round = 0; round < 3; round++) {
    const out = await within(locks.run('a', () => locks.run('a', async () => round)));
    assert.equal(out, round);
    await sleep(1);
  }
});

test('another GUN released meanwhile does not end the holder of the first', async () => {
  const locks = new GunLocks();
  let releaseA!: () => void;
  const gate = new Promise<void>((r) => (releaseA = r));
  const a = locks.run('a', async () => {
    await gate;
    return locks.run('a', async () => 'nested');
  });
  await within(locks.run('b', async () => 'b'));
  releaseA();
  assert.equal(await within(a), 'nested');
});

test('runs of one GUN queue; a run from outside the chain waits', async () => {
  const locks = new GunLocks();
  const order: string[] = [];
  const first = locks.run('a', async () => {
    await sleep(20);
    order.push('first');
  });
  const second = locks.run('a', async () => void order.push('second'));
  await within(Promise.all([first, second]));
  assert.deepEqual(order, ['first', 'second']);
});
