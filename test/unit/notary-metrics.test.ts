// The Notary request-duration summary (src/observability/metrics.ts): notary-server's metric name,
// type and labels, and quantiles read off its buckets close to the exact ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../../src/observability/metrics.js';

const NAME = 'notary_server_http_request_duration_microseconds';

/** Observes a duration of `us` microseconds (the start is set back by that much). */
const observeUs = (m: Metrics, op: 'GetRole' | 'UpdateTUF', us: number) => m.observe(op, performance.now() - us / 1000);

function sample(text: string, line: string): number {
  const m = new RegExp(`^${line.replace(/[{}.]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `no line ${line} in:\n${text}`);
  return Number(m[1]);
}

test('summary lines: quantiles 0.5/0.9/0.99, _sum and _count per operation, as notary-server exports them', async () => {
  const m = new Metrics();
  let text = await m.registry.metrics();
  assert.match(text, new RegExp(`# TYPE ${NAME} summary`));
  assert.doesNotMatch(text, new RegExp(`^${NAME}[{_]`, 'm'), 'no samples before any request');
  observeUs(m, 'UpdateTUF', 12_000);
  text = await m.registry.metrics();
  const sum = sample(text, `${NAME}_sum{operation="UpdateTUF"}`);
  assert.ok(sum >= 12_000 && sum < 60_000, `sum ${sum}`); // the time to the observe call adds a little
  assert.equal(sample(text, `${NAME}_count{operation="UpdateTUF"}`), 1);
  // One observation: every quantile is that value.
  for (const q of ['0.5', '0.9', '0.99']) assert.equal(sample(text, `${NAME}{quantile="${q}",operation="UpdateTUF"}`), sum, q);
  assert.doesNotMatch(text, /operation="GetRole"/);
});

test('quantiles stay within a few percent of the exact ones over a wide spread of durations', async () => {
  const m = new Metrics();
  const values: number[] = [];
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 20_000; i++) {
    const us = 20 * Math.exp(rand() * 9); // 20 µs to ~160 ms, log-uniform
    values.push(us);
    observeUs(m, 'GetRole', us);
  }
  values.sort((a, b) => a - b);
  const text = await m.registry.metrics();
  for (const q of [0.5, 0.9, 0.99]) {
    const exact = values[Math.ceil(q * values.length) - 1]!;
    const got = sample(text, `${NAME}{quantile="${q}",operation="GetRole"}`);
    // performance.now() readings add a little to each duration; the buckets are 1/32 octave wide.
    assert.ok(Math.abs(got - exact) / exact < 0.05, `q${q}: got ${got}, exact ${exact}`);
  }
  assert.equal(sample(text, `${NAME}_count{operation="GetRole"}`), 20_000);
  m.registry.resetMetrics();
  assert.equal(sample(await m.registry.metrics(), `${NAME}_count{operation="GetRole"}`), 0);
});
