// Merging metrics across cluster workers (src/observability/metrics.ts: snapshot, merge, render): the
// duration summary's buckets, sums and counts add exactly, quantiles of the merge stay close to
// the exact ones, counters add, and one process's snapshot renders as its own /metrics does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics, type MetricsSnapshot } from '../../src/observability/metrics.js';
import { ProxyMetrics } from '../../src/proxy/metrics.js';

const NAME = 'notary_server_http_request_duration_microseconds';
const observeUs = (m: Metrics, op: 'GetRole' | 'UpdateTUF', us: number) => m.observe(op, performance.now() - us / 1000);

function sample(text: string, line: string): number {
  const m = new RegExp(`^${line.replace(/[{}.]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `no line ${line} in:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
}

/** The summary's block of the text (first metric, up to the blank line). */
const summaryBlock = (text: string) => text.slice(0, text.indexOf('\n\n'));

/** Through the IPC channel's serialization and back. */
const wire = (s: MetricsSnapshot): MetricsSnapshot => structuredClone(s);

test('one process: the render of its snapshot has the same summary lines as its registry', async () => {
  const m = new Metrics();
  for (const us of [50, 120, 900, 15_000]) observeUs(m, 'GetRole', us);
  observeUs(m, 'UpdateTUF', 30_000);
  const own = await m.registry.metrics();
  const rendered = await Metrics.render(Metrics.merge([wire(await m.snapshot())]));
  assert.equal(summaryBlock(rendered), summaryBlock(own));
  assert.match(rendered, /^# TYPE trustgate_process_cpu_user_seconds_total counter$/m);
});

test('two workers: counts and sums add exactly, quantiles stay close to those of all observations', async () => {
  const a = new Metrics();
  const b = new Metrics();
  const values: number[] = [];
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 10_000; i++) {
    const us = 20 * Math.exp(rand() * 9);
    values.push(us);
    // Skewed on purpose: one worker sees the slow half, the other the fast one.
    observeUs(us > 20 * Math.exp(4.5) ? a : b, 'GetRole', us);
  }
  observeUs(a, 'UpdateTUF', 5000);
  const [sa, sb] = [wire(await a.snapshot()), wire(await b.snapshot())];
  const text = await Metrics.render(Metrics.merge([sa, sb]));
  const ta = await a.registry.metrics();
  const tb = await b.registry.metrics();
  const line = (op: string) => `${NAME}_count{operation="${op}"}`;
  assert.equal(sample(text, line('GetRole')), 10_000);
  assert.equal(sample(text, line('GetRole')), sample(ta, line('GetRole')) + sample(tb, line('GetRole')));
  assert.equal(sample(text, line('UpdateTUF')), 1, 'an operation only one worker saw');
  const sum = `${NAME}_sum{operation="GetRole"}`;
  assert.ok(Math.abs(sample(text, sum) - (sample(ta, sum) + sample(tb, sum))) < 1e-6);
  values.sort((x, y) => x - y);
  for (const q of [0.5, 0.9, 0.99]) {
    const exact = values[Math.ceil(q * values.length) - 1]!;
    const got = sample(text, `${NAME}{quantile="${q}",operation="GetRole"}`);
    assert.ok(Math.abs(got - exact) / exact < 0.05, `q${q}: got ${got}, exact ${exact}`);
  }
  // The order of the snapshots does not matter.
  assert.equal(summaryBlock(await Metrics.render(Metrics.merge([sb, sa]))), summaryBlock(text));
});

test("proxy counters add across workers; process gauges follow prom-client's aggregators", async () => {
  const a = new Metrics();
  const b = new Metrics();
  const pa = new ProxyMetrics(a.registry);
  const pb = new ProxyMetrics(b.registry);
  pa.decision('enforce', 'allowed', 'signed');
  pa.decision('enforce', 'allowed', 'signed');
  pb.decision('enforce', 'allowed', 'signed');
  pb.decision('enforce', 'denied', 'unsigned');
  pa.upstreamErrors.inc({ kind: 'unavailable' });
  const text = await Metrics.render(Metrics.merge([wire(await a.snapshot()), wire(await b.snapshot())]));
  assert.equal(sample(text, 'trustgate_proxy_pull_decisions_total{mode="enforce",result="allowed",reason="signed"}'), 3);
  assert.equal(sample(text, 'trustgate_proxy_pull_decisions_total{mode="enforce",result="denied",reason="unsigned"}'), 1);
  assert.equal(sample(text, 'trustgate_proxy_upstream_errors_total{kind="unavailable"}'), 1);
  assert.match(text, /^trustgate_nodejs_version_info\{/m, '"first"');
  assert.doesNotMatch(text, /^trustgate_process_start_time_seconds /m, '"omit"');
});

test('what a stopped worker keeps: the summary, counters and histograms, not gauges', async () => {
  const m = new Metrics();
  observeUs(m, 'GetRole', 100);
  new ProxyMetrics(m.registry).signedPushes.inc({ result: 'signed' });
  const kept = Metrics.cumulative(wire(await m.snapshot()));
  assert.equal(kept.durations.length, 1);
  const types = new Set(kept.others.map((o) => o.type as unknown as string));
  assert.ok(types.has('counter'));
  assert.ok(!types.has('gauge'));
  assert.ok(kept.others.some((o) => o.name === 'trustgate_proxy_signed_pushes_total'));
  // Merged with a live worker, the stopped one's counts are still there.
  const live = new Metrics();
  observeUs(live, 'GetRole', 200);
  const text = await Metrics.render(Metrics.merge([wire(await live.snapshot()), kept]));
  assert.equal(sample(text, `${NAME}_count{operation="GetRole"}`), 2);
  assert.equal(sample(text, 'trustgate_proxy_signed_pushes_total{result="signed"}'), 1);
});

test('an emptied summary travels and merges (no Infinity bounds on the wire)', async () => {
  const m = new Metrics();
  observeUs(m, 'GetRole', 100);
  m.registry.resetMetrics();
  const s = await m.snapshot();
  assert.deepEqual(s.durations, [{ operation: 'GetRole', buckets: [], count: 0, sum: 0, min: null, max: null }]);
  const text = await Metrics.render(Metrics.merge([JSON.parse(JSON.stringify(s)) as MetricsSnapshot]));
  assert.equal(sample(text, `${NAME}_count{operation="GetRole"}`), 0);
  assert.equal(sample(text, `${NAME}{quantile="0.5",operation="GetRole"}`), 0);
});

test('with a collector, text() answers from it; without, from the registry', async () => {
  const m = new Metrics();
  assert.equal(summaryBlock(await m.text()), summaryBlock(await m.registry.metrics()));
  m.collectWith(async () => 'merged\n');
  assert.equal(await m.text(), 'merged\n');
});
