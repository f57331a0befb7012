// A bounded fuzz run in the suite: a few thousand mutated publishes and API bodies against a real
// trustgate; no 5xx, and nothing stored changes after a refusal. `npm run fuzz` runs longer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runFuzz } from './fuzz.js';

const seed = Number(process.env.TRUSTGATE_FUZZ_SEED ?? 20261207);

test(`fuzz: up to 3,000 mutated publishes and API bodies in 60 s, no 5xx, nothing stored after a refusal (seed ${seed})`, async () => {
  const stats = await runFuzz({ seed, iterations: 3000, seconds: 60, log: (l) => console.log(l) });
  // The time bound keeps a loaded machine's run short; the count shows the run was not empty.
  assert.ok(stats.requests >= 300, `only ${stats.requests} requests ran`);
  assert.ok(stats.publishes > 0 && stats.apiBodies > 0);
});
