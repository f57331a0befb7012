// TRUSTGATE_WORKERS (src/config/config.ts): default one process, `auto`, bounds, and the HSM keystore.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { AUTO_WORKERS_MAX, ConfigError, loadConfig } from '../../src/config/config.js';

const PKCS11 = {
  TRUSTGATE_KEYSTORE: 'pkcs11',
  TRUSTGATE_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
  TRUSTGATE_PKCS11_TOKEN_LABEL: 'tg',
  TRUSTGATE_PKCS11_PIN: '1234',
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

test('unset: one process, no note', () => {
  const c = loadConfig({});
  assert.equal(c.workers, 1);
  assert.equal(c.workersNote, undefined);
});

test('a number from 1 to 64 is taken as is', () => {
  for (const n of [1, 2, 7, 64]) assert.equal(loadConfig({ TRUSTGATE_WORKERS: String(n) }).workers, n);
});

test('auto: the available parallelism, at most AUTO_WORKERS_MAX', () => {
  assert.equal(loadConfig({ TRUSTGATE_WORKERS: 'auto' }).workers, Math.min(AUTO_WORKERS_MAX, availableParallelism()));
});

test('anything else is refused by name', () => {
  for (const v of ['0', '65', 'abc', '-1', '2.5', 'AUTO', ' 2']) {
    assert.deepEqual(
      problems({ TRUSTGATE_WORKERS: v }),
      [`TRUSTGATE_WORKERS must be auto or a whole number from 1 to 64, got ${JSON.stringify(v)}`],
      v,
    );
  }
});

test('pkcs11 keystore: more than one worker is refused; auto falls back to one with a note; 1 is fine', () => {
  assert.deepEqual(problems({ ...PKCS11, TRUSTGATE_WORKERS: '2' }), [
    'TRUSTGATE_WORKERS must be 1 with TRUSTGATE_KEYSTORE=pkcs11 (HSM sessions are per process and not used across processes), got 2',
  ]);
  assert.equal(loadConfig({ ...PKCS11, TRUSTGATE_WORKERS: '1' }).workers, 1);
  const auto = loadConfig({ ...PKCS11, TRUSTGATE_WORKERS: 'auto' });
  assert.equal(auto.workers, 1);
  if (Math.min(AUTO_WORKERS_MAX, availableParallelism()) > 1)
    assert.match(auto.workersNote ?? '', /TRUSTGATE_WORKERS=auto runs one process with TRUSTGATE_KEYSTORE=pkcs11/);
});

test('TRUSTGATE_REGISTRY_NAME must be able to begin a GUN; a host, a port and a path prefix are fine', () => {
  const proxy = { TRUSTGATE_UPSTREAM: 'http://127.0.0.1:5000' };
  for (const ok of ['registry.example.com', 'registry.example.com:5000', 'localhost:5000/mirror']) {
    assert.deepEqual(problems({ ...proxy, TRUSTGATE_REGISTRY_NAME: ok }), [], ok);
  }
  for (const bad of ['[::1]:5000', 'registry example', 'registry.example.com/', 'a/../b', 'x'.repeat(255)]) {
    const p = problems({ ...proxy, TRUSTGATE_REGISTRY_NAME: bad });
    assert.ok(
      p.some((m) => m.includes('TRUSTGATE_REGISTRY_NAME')),
      `${bad}: ${p.join('; ')}`,
    );
  }
});
