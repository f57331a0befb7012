// The proxy's refusal record (observability/proxy-activity.ts): a bounded ring, newest first,
// counts that outlive the ring, and the verdict cache's hit rate once a proxy attaches.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DENIALS_KEPT, ProxyActivity } from '../../src/observability/proxy-activity.js';

const denial = (i: number, reason = i % 3 === 0 ? 'expired' : 'not-signed') => ({
  repository: 'team/app',
  gun: 'registry.example.com/team/app',
  reference: `v${i}`,
  reason,
  message: `refusal ${i}`,
  outcome: 'denied' as const,
  actor: 'anonymous',
});

test('the ring keeps the newest refusals only, newest first; counts and total include those it let go', () => {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const a = new ProxyActivity(DENIALS_KEPT, () => t);
  assert.equal(a.enabled, false);
  assert.deepEqual(a.report({ limit: 10 }), {
    enabled: false,
    since: '2026-01-01T00:00:00.000Z',
    capacity: 1000,
    total: 0,
    counts: {},
    denials: [],
    verdictCache: null,
  });
  for (let i = 1; i <= 2500; i++) {
    t += 1000;
    a.record(denial(i));
  }
  const all = a.report({ limit: 5000 });
  assert.equal(all.denials.length, 1000, 'bounded');
  assert.equal(all.total, 2500);
  assert.deepEqual(all.counts, { expired: 833, 'not-signed': 1667 });
  assert.deepEqual(
    all.denials.slice(0, 3).map((d) => d.reference),
    ['v2500', 'v2499', 'v2498'],
  );
  assert.equal(all.denials.at(-1)!.reference, 'v1501', 'the oldest kept');
  assert.equal(all.denials[0]!.time, new Date(t).toISOString());
  const expired = a.report({ limit: 4, reason: 'expired' });
  assert.deepEqual(
    expired.denials.map((d) => d.reference),
    ['v2499', 'v2496', 'v2493', 'v2490'],
  );
});

test('a small ring wraps in order; long messages are cut', () => {
  const a = new ProxyActivity(3);
  for (let i = 1; i <= 4; i++) a.record(denial(i, 'x'));
  assert.deepEqual(
    a.report({ limit: 10 }).denials.map((d) => d.reference),
    ['v4', 'v3', 'v2'],
  );
  a.record({ ...denial(5), message: 'm'.repeat(10_000) });
  assert.equal(a.report({ limit: 1 }).denials[0]!.message.length, 500);
});

test('the verdict cache hit rate comes from the attached cache and is null before any lookup', () => {
  const a = new ProxyActivity();
  const stats = { kind: 'memory' as const, hits: 0, misses: 0 };
  a.attach(() => stats);
  assert.equal(a.enabled, true);
  assert.deepEqual(a.report({ limit: 1 }).verdictCache, { kind: 'memory', hits: 0, misses: 0, hitRate: null });
  stats.hits = 3;
  stats.misses = 1;
  assert.equal(a.report({ limit: 1 }).verdictCache!.hitRate, 0.75);
  a.detach();
  assert.equal(a.report({ limit: 1 }).enabled, false);
});
