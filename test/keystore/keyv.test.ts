// The keyv keystore against REAL Redis and PostgreSQL: two keystore instances share one backend
// (a key made by one signs in the other), only sealed ciphertext reaches the backend, the KDF
// parameters live there too, and backend failures throw instead of looking like "no key".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Keyv from 'keyv';
import pg from 'pg';
import { verifySignature } from '../../src/core/crypto/keys.js';
import { KeyvKeyStore } from '../../src/keystore/keyv.js';
import { openKeyStore } from '../../src/keystore/open.js';
import { loadConfig } from '../../src/config/config.js';
import { KeyStoreError, KeyStoreUnavailableError, type KeyStore } from '../../src/keystore/types.js';
import { toApiError } from '../../src/trust/api-errors.js';
import {
  makeTempDir,
  removeTempDir,
  runCommandOk,
  startPostgres,
  startRedis,
  type PostgresService,
  type RedisService,
} from '../helpers/services.js';
import { startTrustgate } from '../helpers/trustgate.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';

const PASS = 'keyv-test-passphrase-5521';
let redis: RedisService;
let postgres: PostgresService;

before(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
});
after(async () => {
  await Promise.all([redis?.stop(), postgres?.stop()]);
});

/** Every raw value in the Redis database, as stored (keyv's serialisation included). */
async function redisDump(): Promise<string> {
  const keys = (await runCommandOk('redis-cli', ['-p', String(redis.port), '--scan'])).stdout.split('\n').filter(Boolean);
  let out = '';
  for (const k of keys) out += `${k}\t${(await runCommandOk('redis-cli', ['-p', String(redis.port), 'GET', k])).stdout}\n`;
  return out;
}

async function pgDump(table: string): Promise<string> {
  const c = new pg.Client({ connectionString: postgres.url });
  await c.connect();
  try {
    const r = await c.query<{ key: string; value: string }>(`SELECT key, value FROM ${table} ORDER BY key`);
    return r.rows.map((x) => `${x.key}\t${x.value}`).join('\n');
  } finally {
    await c.end();
  }
}

/** Forms in which private key bytes could appear in a dump. */
async function secretForms(ks: KeyStore, id: string): Promise<string[]> {
  const key = await ks.exportPrivate(id);
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const jwk = key.export({ format: 'jwk' });
  const forms = [der.toString('base64'), der.toString('hex'), der.subarray(0, 40).toString('base64'), 'PRIVATE KEY'];
  if (jwk.d) forms.push(jwk.d, Buffer.from(jwk.d, 'base64url').toString('base64'), Buffer.from(jwk.d, 'base64url').toString('hex'));
  der.fill(0);
  return forms;
}

async function sharedBackendChecks(url: string, dump: () => Promise<string>): Promise<void> {
  const a = await KeyvKeyStore.connect(url, PASS);
  const b = await KeyvKeyStore.connect(url, PASS);
  try {
    const gun = `example.com/keyv/${createHash('sha256').update(url).digest('hex').slice(0, 6)}`;
    const ts = await a.generate(gun, 'timestamp', 'ecdsa');
    const snap = await a.generate(gun, 'snapshot', 'ed25519');
    assert.equal(ts.held, 'keyv');

    // Instance b sees and uses keys made by instance a.
    assert.deepEqual(await b.get(ts.id), ts);
    assert.deepEqual((await b.list({ gun })).map((r) => r.id).sort(), [ts.id, snap.id].sort());
    assert.deepEqual(await b.list({ gun, role: 'snapshot' }), [snap]);
    const msg = Buffer.from('signed by the other instance');
    assert.equal(verifySignature(ts.public, msg, 'ecdsa', await (await b.signer(ts.id))!.sign(msg)), true);
    assert.equal(verifySignature(snap.public, msg, 'eddsa', await (await b.signer(snap.id))!.sign(msg)), true);
    assert.equal(verifySignature(ts.public, Buffer.from('other'), 'ecdsa', await (await b.signer(ts.id))!.sign(msg)), false);

    // Only ciphertext reaches the backend; the KDF salt and check value are stored there.
    const raw = await dump();
    assert.ok(raw.includes(ts.id) && raw.includes(snap.id), 'the records are in the backend');
    assert.match(raw, /salt/);
    assert.match(raw, /ciphertext/);
    for (const id of [ts.id, snap.id]) {
      for (const form of await secretForms(a, id))
        assert.ok(!raw.includes(form), `raw backend data contains key bytes (${form.slice(0, 12)}…)`);
    }
    assert.ok(!raw.includes(PASS));

    // A delete in one instance is seen by the other.
    assert.equal(await b.delete(snap.id), true);
    assert.equal(await a.get(snap.id), undefined);
    assert.deepEqual(
      (await a.list({ gun })).map((r) => r.id),
      [ts.id],
    );
    assert.equal(await a.delete(snap.id), false);

    // The wrong passphrase is refused against the stored check value, and not echoed.
    await assert.rejects(
      KeyvKeyStore.connect(url, 'not-the-passphrase'),
      (e: Error) =>
        e instanceof KeyStoreError && /wrong key-encryption passphrase/.test(e.message) && !e.message.includes('not-the-passphrase'),
    );
  } finally {
    await a.close();
    await b.close();
  }
}

test('keyv/redis: two keystores share one Redis; only sealed records reach it', async () => {
  await sharedBackendChecks(redis.url, redisDump);
});

test('keyv/postgres: two keystores share one PostgreSQL; only sealed records reach it', async () => {
  await sharedBackendChecks(postgres.url, () => pgDump('trustgate_keys'));
});

test('keyv: a namespace in the URL separates two keystores in one backend', async () => {
  const a = await KeyvKeyStore.connect(`${redis.url}?namespace=tenant-a`, 'passphrase-a');
  const b = await KeyvKeyStore.connect(`${redis.url}?namespace=tenant-b`, 'passphrase-b');
  try {
    const ka = await a.generate('example.com/ns/app', 'timestamp', 'ecdsa');
    assert.equal(await b.get(ka.id), undefined);
    assert.deepEqual(await b.list({ gun: 'example.com/ns/app' }), []);
    assert.equal((await a.list({ gun: 'example.com/ns/app' })).length, 1);
  } finally {
    await a.close();
    await b.close();
  }
});

test('keyv: adapters without an iterator list through the index entry', async () => {
  const map = new Map<string, unknown>();
  const kv = new Keyv({ store: map, namespace: 'idx' });
  const ks = await KeyvKeyStore.open(kv, PASS, { listing: 'index' });
  const k1 = await ks.generate('example.com/idx/app', 'timestamp', 'ecdsa');
  const k2 = await ks.generate('example.com/idx/app', 'snapshot', 'ecdsa');
  assert.deepEqual((await kv.get('index')) as string[], [k1.id, k2.id]);
  assert.deepEqual((await ks.list()).map((r) => r.id).sort(), [k1.id, k2.id].sort());
  assert.equal(await ks.delete(k1.id), true);
  assert.deepEqual((await kv.get('index')) as string[], [k2.id]);
  assert.deepEqual(
    (await ks.list()).map((r) => r.id),
    [k2.id],
  );
  // A second store over the same keyv sees the same keys.
  const again = await KeyvKeyStore.open(kv, PASS, { listing: 'index' });
  assert.deepEqual(await again.list(), await ks.list());
});

test('keyv: a backend that is down throws a KeyStoreError without the URL, never "no such key"', async () => {
  const r = await startRedis();
  const url = `redis://:s3cret-redis-pw@127.0.0.1:${r.port}`;
  // Redis has no password here, so give it one to match the URL.
  await runCommandOk('redis-cli', ['-p', String(r.port), 'CONFIG', 'SET', 'requirepass', 's3cret-redis-pw']);
  const ks = await KeyvKeyStore.connect(url, PASS);
  try {
    const rec = await ks.generate('example.com/down/app', 'timestamp', 'ecdsa');
    await r.stop();
    const outcome = await Promise.race([
      ks.get(rec.id).then(
        (v) => ({ value: v }),
        (e: Error) => ({ error: e }),
      ),
      new Promise<{ timeout: true }>((res) => setTimeout(() => res({ timeout: true }), 15_000).unref()),
    ]);
    assert.ok('error' in outcome, `expected an error, got ${JSON.stringify(outcome)}`);
    assert.ok(outcome.error instanceof KeyStoreError);
    assert.ok(!outcome.error.message.includes('s3cret-redis-pw'));
  } finally {
    await ks.close().catch(() => undefined);
    await r.stop();
  }
});

test('keyv e2e: two trustgate instances share metadata (PostgreSQL) and keys (Redis); notary publishes to one and lists from the other', async () => {
  const dir = await makeTempDir('keyv-e2e');
  const logs: string[] = [];
  const env = {
    TRUSTGATE_KEYSTORE: 'keyv',
    TRUSTGATE_KEYSTORE_URL: `${redis.url}?namespace=e2e`,
    TRUSTGATE_DATABASE_URL: postgres.url,
    TRUSTGATE_KEY_PASSPHRASE: PASS,
  };
  const log = (level: string, msg: string, fields?: Record<string, unknown>) => logs.push(JSON.stringify({ level, msg, ...fields }));
  const one = await startTrustgate({ env, overrides: { log } });
  const two = await startTrustgate({ env, overrides: { log } });
  const publisher = await notaryCli({ server: one.url, token: one.adminToken });
  const reader = await notaryCli({ server: two.url });
  const gun = 'example.com/keyv/e2e';
  try {
    assert.equal(one.app.keys.kind, 'keyv');
    await publisher.runOk(['init', gun, '-p']);
    const file = path.join(dir, 'a.txt');
    await fsp.writeFile(file, 'shared\n');
    await publisher.runOk(['add', gun, 'v1', file]);
    await publisher.runOk(['publish', gun]);

    // Instance two answers with the timestamp key instance one made, and can sign with it.
    const k1 = await (await fetch(`${one.url}/v2/${gun}/_trust/tuf/timestamp.key`)).text();
    const k2 = await (await fetch(`${two.url}/v2/${gun}/_trust/tuf/timestamp.key`)).text();
    assert.equal(k2, k1);
    assert.deepEqual(
      parseNotaryList((await reader.runOk(['list', gun])).stdout).map((t) => t.name),
      ['v1'],
    );
    const held = await two.app.keys.list({ gun, role: 'timestamp' });
    assert.equal(held.length, 1);
    assert.ok(!logs.join('\n').includes(PASS));
  } finally {
    await publisher.cleanup();
    await reader.cleanup();
    await one.stop();
    await two.stop();
    await removeTempDir(dir);
  }
});

test('keyv: openKeyStore picks keyv from config, and config rejects a non-Redis/PostgreSQL URL', async () => {
  const config = loadConfig({ TRUSTGATE_KEYSTORE: 'keyv', TRUSTGATE_KEYSTORE_URL: `${redis.url}?namespace=open` });
  const opened = await openKeyStore(config, () => PASS);
  try {
    assert.equal(opened.keys.kind, 'keyv');
    const rec = await opened.keys.generate('example.com/open/app', 'targets', 'ecdsa');
    assert.equal((await opened.keys.get(rec.id))?.id, rec.id);
  } finally {
    await opened.close();
  }
  assert.throws(
    () => loadConfig({ TRUSTGATE_KEYSTORE: 'keyv', TRUSTGATE_KEYSTORE_URL: 'mysql://x' }),
    /TRUSTGATE_KEYSTORE_URL must be a postgres:\/\/ or redis:\/\//,
  );
  assert.throws(() => loadConfig({ TRUSTGATE_KEYSTORE: 'keyv' }), /TRUSTGATE_KEYSTORE_URL/);
});

test('a backend that cannot be reached is KeyStoreUnavailableError, which the APIs answer with 503, not 500', async () => {
  const own = await startRedis();
  let ks: KeyvKeyStore | undefined;
  try {
    ks = await KeyvKeyStore.connect(own.url, PASS);
    const rec = await ks.generate('example.com/keyv/down', 'targets', 'ecdsa');
    await own.stop();
    await assert.rejects(ks.generate('example.com/keyv/down', 'targets', 'ecdsa'), (e: unknown) => e instanceof KeyStoreUnavailableError);
    await assert.rejects(
      (async () => (await ks!.signer(rec.id))?.sign(Buffer.from('x')))(),
      (e: unknown) => e instanceof KeyStoreUnavailableError,
    );
  } finally {
    await ks?.close();
    await own.stop();
  }
  const api = toApiError(new KeyStoreUnavailableError('keyv keystore backend error: connect ECONNREFUSED'));
  assert.equal(api.status, 503);
  assert.equal(api.code, 'UNAVAILABLE');
});
