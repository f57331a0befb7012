// The pkcs11 keystore against a REAL SoftHSM2 token: keys are made in the token, stay there
// (sensitive, never extractable), sign in notary's format, rotate, survive a reopen, and serve a
// repository that the real notary CLI publishes and reads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import pkcs11js from 'pkcs11js';
import { verifySignature, keyId } from '../../src/core/crypto/keys.js';
import { tufKeyFromPublic } from '../../src/core/crypto/signer.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11.js';
import { openKeyStore } from '../../src/keystore/open.js';
import { loadConfig } from '../../src/config/config.js';
import { KeyStoreError } from '../../src/keystore/types.js';
import { initSoftHsm, makeTempDir, removeTempDir, type SoftHsm } from '../helpers/services.js';
import { startTrustgate } from '../helpers/trustgate.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';

let hsm: SoftHsm;
const PIN = '73915-hsm-user-pin';

before(async () => {
  hsm = await initSoftHsm({ label: 'tg-test', pin: PIN });
  // SoftHSM reads its configuration from the environment of the process that loads it.
  process.env.SOFTHSM2_CONF = hsm.conf;
});
after(async () => {
  await hsm?.cleanup();
});

const open = () => Pkcs11KeyStore.open({ module: hsm.module, tokenLabel: hsm.label, pin: PIN });

/** Reads raw attributes of the token's objects with a separate PKCS#11 session. */
function rawObjects(
  label: string,
): { cls: number; sensitive?: boolean; extractable?: boolean; neverExtractable?: boolean; valueReadable?: boolean }[] {
  const P = pkcs11js;
  const lib = new P.PKCS11();
  lib.load(hsm.module);
  // The module is already initialised in this process while a keystore is open: share it then,
  // and leave it initialised (C_Finalize would end the keystore's session too).
  let initialised = false;
  try {
    lib.C_Initialize();
    initialised = true;
  } catch (e) {
    if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test((e as Error).message)) throw e;
  }
  try {
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === hsm.label)!;
    const session = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
    try {
      lib.C_Login(session, P.CKU_USER, PIN);
    } catch (e) {
      if (!/ALREADY_LOGGED_IN/.test((e as Error).message)) throw e;
    }
    lib.C_FindObjectsInit(session, [{ type: P.CKA_LABEL, value: label }]);
    const handles = lib.C_FindObjects(session, 50);
    lib.C_FindObjectsFinal(session);
    const out = handles.map((h) => {
      const cls = lib.C_GetAttributeValue(session, h, [{ type: P.CKA_CLASS }])[0]!.value.readUInt32LE(0);
      if (cls !== P.CKO_PRIVATE_KEY) return { cls };
      const [s, x, nx] = lib.C_GetAttributeValue(session, h, [
        { type: P.CKA_SENSITIVE },
        { type: P.CKA_EXTRACTABLE },
        { type: P.CKA_NEVER_EXTRACTABLE },
      ]);
      let valueReadable = true;
      try {
        lib.C_GetAttributeValue(session, h, [{ type: P.CKA_VALUE }]);
      } catch (e) {
        assert.match((e as Error).message, /CKR_ATTRIBUTE_SENSITIVE/);
        valueReadable = false;
      }
      return { cls, sensitive: s!.value[0] === 1, extractable: x!.value[0] === 1, neverExtractable: nx!.value[0] === 1, valueReadable };
    });
    lib.C_CloseSession(session);
    return out;
  } finally {
    if (initialised) lib.C_Finalize();
  }
}

test('pkcs11: generate makes a sensitive, non-extractable P-256 key in the token; list shows gun/role/id/created', async () => {
  const ks = open();
  try {
    const rec = await ks.generate('example.com/hsm/app', 'timestamp', 'ecdsa');
    assert.match(rec.id, /^[0-9a-f]{64}$/);
    assert.equal(rec.id, keyId(rec.public));
    assert.equal(rec.public.keytype, 'ecdsa');
    assert.equal(rec.held, 'pkcs11');
    assert.ok(!Number.isNaN(Date.parse(rec.createdAt)));

    const listed = await ks.list({ gun: 'example.com/hsm/app' });
    assert.deepEqual(listed, [rec]);
    assert.deepEqual(await ks.list({ gun: 'example.com/hsm/app', role: 'snapshot' }), []);
    assert.deepEqual(await ks.get(rec.id), rec);

    const objs = rawObjects(`trustgate:${rec.id}`);
    assert.equal(objs.length, 3, 'private key, public key and record object');
    const priv = objs.filter((o) => o.cls === pkcs11js.CKO_PRIVATE_KEY);
    assert.equal(priv.length, 1);
    assert.deepEqual(priv[0], {
      cls: pkcs11js.CKO_PRIVATE_KEY,
      sensitive: true,
      extractable: false,
      neverExtractable: true,
      valueReadable: false,
    });
    await assert.rejects(ks.exportPrivate(rec.id), (e: Error) => e instanceof KeyStoreError && /never leave/.test(e.message));
  } finally {
    await ks.close();
  }
});

test('pkcs11: C_Sign signatures verify with verifySignature (raw r||s over SHA-256), wrong message does not', async () => {
  const ks = open();
  try {
    const rec = await ks.generate('example.com/hsm/sign', 'snapshot', 'ecdsa');
    const signer = await ks.signer(rec.id);
    assert.ok(signer);
    assert.equal(signer.id, rec.id);
    const msg = Buffer.from('{"signed":{"_type":"Snapshot","version":1}}');
    const sig = await signer.sign(msg);
    assert.equal(sig.length, 64);
    assert.equal(verifySignature(rec.public, msg, 'ecdsa', sig), true);
    assert.equal(verifySignature(rec.public, Buffer.concat([msg, Buffer.from(' ')]), 'ecdsa', sig), false);
    // Another key's public half does not verify it.
    const other = await ks.generate('example.com/hsm/sign', 'snapshot', 'ecdsa');
    assert.equal(verifySignature(other.public, msg, 'ecdsa', sig), false);
    assert.equal(await ks.signer('0'.repeat(64)), undefined);
  } finally {
    await ks.close();
  }
});

test('pkcs11: RSA keys sign RSA-PSS that verifies; ed25519 is refused clearly', async () => {
  const ks = open();
  try {
    const rec = await ks.generate('example.com/hsm/rsa', 'targets', 'rsa');
    assert.equal(rec.public.keytype, 'rsa');
    const msg = Buffer.from('rsa message');
    const sig = await (await ks.signer(rec.id))!.sign(msg);
    assert.equal(verifySignature(rec.public, msg, 'rsapss', sig), true);
    assert.equal(verifySignature(rec.public, Buffer.from('other'), 'rsapss', sig), false);
    await assert.rejects(ks.generate('example.com/hsm/rsa', 'targets', 'ed25519'), /supports ecdsa \(P-256\) and rsa keys, not ed25519/);
  } finally {
    await ks.close();
  }
});

test('pkcs11: rotate = generate new + delete old; the old key objects are destroyed', async () => {
  const ks = open();
  try {
    const gun = 'example.com/hsm/rotate';
    const old = await ks.generate(gun, 'timestamp', 'ecdsa');
    const fresh = await ks.generate(gun, 'timestamp', 'ecdsa');
    assert.equal(await ks.delete(old.id), true);
    assert.equal(await ks.delete(old.id), false);
    assert.deepEqual(
      (await ks.list({ gun })).map((r) => r.id),
      [fresh.id],
    );
    assert.equal(await ks.get(old.id), undefined);
    assert.equal(await ks.signer(old.id), undefined);
    assert.equal(rawObjects(`trustgate:${old.id}`).length, 0);
    const msg = Buffer.from('after rotation');
    assert.equal(verifySignature(fresh.public, msg, 'ecdsa', await (await ks.signer(fresh.id))!.sign(msg)), true);
  } finally {
    await ks.close();
  }
});

test('pkcs11: keys persist in the token across a reopen, and two open keystores share them', async () => {
  const a = open();
  const rec = await a.generate('example.com/hsm/persist', 'snapshot', 'ecdsa');
  const b = open();
  try {
    assert.deepEqual(await b.get(rec.id), rec);
    const msg = Buffer.from('shared');
    assert.equal(verifySignature(rec.public, msg, 'ecdsa', await (await b.signer(rec.id))!.sign(msg)), true);
  } finally {
    await b.close();
    await a.close();
  }
  const c = open();
  try {
    assert.deepEqual(await c.list({ gun: 'example.com/hsm/persist' }), [rec]);
  } finally {
    await c.close();
  }
});

test('pkcs11: importKey stores a P-256 key as a sensitive object that signs for the original public key', async () => {
  const ks = open();
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const rec = await ks.importKey('example.com/hsm/import', 'root', privateKey);
    assert.deepEqual(rec.public, tufKeyFromPublic(publicKey));
    const msg = Buffer.from('imported');
    assert.equal(verifySignature(rec.public, msg, 'ecdsa', await (await ks.signer(rec.id))!.sign(msg)), true);
    const priv = rawObjects(`trustgate:${rec.id}`).find((o) => o.cls === pkcs11js.CKO_PRIVATE_KEY)!;
    assert.equal(priv.sensitive, true);
    assert.equal(priv.extractable, false);
    assert.equal(priv.valueReadable, false);
    await assert.rejects(ks.importKey('example.com/hsm/import', 'root', privateKey), /already in the token/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    await assert.rejects(ks.importKey('example.com/hsm/import', 'root', p384), /only holds P-256/);
  } finally {
    await ks.close();
  }
});

/** Ends every session this process has on the token, as an HSM restart or a dropped network HSM link does. */
function closeAllSessions(): void {
  const lib = new pkcs11js.PKCS11();
  lib.load(hsm.module);
  try {
    lib.C_Initialize();
  } catch (e) {
    if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test((e as Error).message)) throw e;
  }
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === hsm.label)!;
  lib.C_CloseAllSessions(slot);
}

test('pkcs11: a session the token ended is opened again, logged in, and the operation goes through', async () => {
  const ks = open();
  const other = open();
  try {
    const gun = 'example.com/hsm-session';
    const rec = await ks.generate(gun, 'timestamp', 'ecdsa');
    const signer = (await ks.signer(rec.id))!;
    closeAllSessions();
    // Signing found the key with a dead session: CKR_SESSION_HANDLE_INVALID until a restart.
    const msg = Buffer.from('signed after the token dropped our session');
    assert.ok(verifySignature(rec.public, msg, 'ecdsa', await signer.sign(msg)));
    closeAllSessions();
    assert.deepEqual(
      (await ks.list({ gun })).map((r) => r.id),
      [rec.id],
    );
    closeAllSessions();
    const second = await ks.generate(gun, 'snapshot', 'ecdsa');
    assert.equal((await ks.list({ gun })).length, 2);
    // Another keystore in the process lost its session too, and recovers on its own.
    assert.deepEqual((await other.list({ gun })).map((r) => r.id).sort(), [rec.id, second.id].sort());
    assert.ok(await ks.delete(second.id));
    assert.ok(await ks.delete(rec.id));
  } finally {
    await ks.close();
    await other.close();
  }
});

test('pkcs11: a wrong PIN or token label fails with a clear error that does not contain the PIN', async () => {
  const wrong = 'wrong-pin-99817';
  assert.throws(
    () => Pkcs11KeyStore.open({ module: hsm.module, tokenLabel: hsm.label, pin: wrong }),
    (e: Error) =>
      e instanceof KeyStoreError && /CKR_PIN_INCORRECT/.test(e.message) && !e.message.includes(wrong) && !(e.stack ?? '').includes(wrong),
  );
  assert.throws(
    () => Pkcs11KeyStore.open({ module: hsm.module, tokenLabel: 'no-such-token', pin: PIN }),
    /no token labelled "no-such-token"/,
  );
  // The keystore still opens afterwards (the failed attempts released the module).
  const ks = open();
  await ks.close();
});

test('pkcs11: openKeyStore reads the PIN from TRUSTGATE_PKCS11_PIN_FILE; config rejects a missing PIN', async () => {
  const dir = await makeTempDir('pinfile');
  try {
    const pinFile = path.join(dir, 'pin');
    await fsp.writeFile(pinFile, PIN + '\n', { mode: 0o600 });
    const env = {
      TRUSTGATE_KEYSTORE: 'pkcs11',
      TRUSTGATE_PKCS11_MODULE: hsm.module,
      TRUSTGATE_PKCS11_TOKEN_LABEL: hsm.label,
      TRUSTGATE_PKCS11_PIN_FILE: pinFile,
      TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
      TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    };
    const config = loadConfig(env);
    let asked = false;
    const opened = await openKeyStore(config, () => {
      asked = true;
      return 'unused';
    });
    try {
      assert.equal(opened.keys.kind, 'pkcs11');
      assert.equal(asked, false, 'the pkcs11 store needs no key-encryption passphrase');
      const rec = await opened.keys.generate('example.com/hsm/pinfile', 'timestamp', 'ecdsa');
      assert.equal((await opened.keys.get(rec.id))?.held, 'pkcs11');
    } finally {
      await opened.close();
    }
    assert.throws(() => loadConfig({ ...env, TRUSTGATE_PKCS11_PIN_FILE: '' }), /TRUSTGATE_PKCS11_PIN_FILE \(preferred\)/);
    assert.throws(() => loadConfig({ ...env, TRUSTGATE_PKCS11_MODULE: '' }), /TRUSTGATE_PKCS11_MODULE must be set/);
  } finally {
    await removeTempDir(dir);
  }
});

test('pkcs11 e2e: notary CLI publishes to trustgate whose timestamp/snapshot keys live in the HSM; a fresh client lists', async () => {
  const dir = await makeTempDir('hsm-e2e');
  const pinFile = path.join(dir, 'pin');
  await fsp.writeFile(pinFile, PIN, { mode: 0o600 });
  const logs: string[] = [];
  const tg = await startTrustgate({
    env: {
      TRUSTGATE_KEYSTORE: 'pkcs11',
      TRUSTGATE_PKCS11_MODULE: hsm.module,
      TRUSTGATE_PKCS11_TOKEN_LABEL: hsm.label,
      TRUSTGATE_PKCS11_PIN_FILE: pinFile,
    },
    overrides: { log: (level, msg, fields) => logs.push(JSON.stringify({ level, msg, ...fields })) },
  });
  const gun = 'example.com/hsm/e2e';
  const publisher = await notaryCli({ server: tg.url, token: tg.adminToken });
  const reader = await notaryCli({ server: tg.url, token: tg.adminToken });
  try {
    assert.equal(tg.app.keys.kind, 'pkcs11');
    await publisher.runOk(['init', gun, '-p']);
    const file = path.join(dir, 'artifact.bin');
    await fsp.writeFile(file, 'hsm-signed artifact\n');
    await publisher.runOk(['add', gun, 'v1', file]);
    await publisher.runOk(['publish', gun]);

    // The server's timestamp key for this GUN is in the token and is the one the root lists.
    const checkHeld = async (roles: string[]) => {
      const held = (await tg.app.keys.list({ gun })).filter((k) => roles.includes(k.role));
      assert.deepEqual([...new Set(held.map((k) => k.role))].sort(), roles);
      assert.ok(held.every((k) => k.held === 'pkcs11'));
      const root = JSON.parse(await (await fetch(`${tg.url}/v2/${gun}/_trust/tuf/root.json`)).text()) as {
        signed: { roles: Record<string, { keyids: string[] }> };
      };
      for (const role of roles) {
        const ids = root.signed.roles[role]!.keyids;
        assert.equal(ids.length, 1);
        assert.ok(
          held.some((k) => k.id === ids[0] && k.role === role),
          `${role} key of the root is in the HSM`,
        );
        const md = JSON.parse(await (await fetch(`${tg.url}/v2/${gun}/_trust/tuf/${role}.json`)).text()) as {
          signatures: { keyid: string }[];
        };
        assert.deepEqual(
          md.signatures.map((x) => x.keyid),
          ids,
          `${role}.json is signed by the HSM key`,
        );
        assert.equal(rawObjects(`trustgate:${ids[0]}`).length, 3);
      }
    };
    await checkHeld(['timestamp']);

    const list = await reader.runOk(['list', gun]);
    const targets = parseNotaryList(list.stdout);
    assert.equal(targets.length, 1);
    assert.equal(targets[0]!.name, 'v1');
    assert.equal(targets[0]!.digest, createHash('sha256').update('hsm-signed artifact\n').digest('hex'));

    // Hand the snapshot key to the server (made in the HSM), then publish again: the server signs
    // snapshot and timestamp with HSM keys.
    await publisher.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    await publisher.runOk(['add', gun, 'v2', file]);
    await publisher.runOk(['publish', gun]);
    await checkHeld(['snapshot', 'timestamp']);

    // Rotating the timestamp key to a new HSM key keeps clients working.
    await publisher.runOk(['key', 'rotate', gun, 'timestamp', '-r']);
    const reader2 = await notaryCli({ server: tg.url, token: tg.adminToken });
    try {
      assert.deepEqual(
        parseNotaryList((await reader2.runOk(['list', gun])).stdout)
          .map((t) => t.name)
          .sort(),
        ['v1', 'v2'],
      );
    } finally {
      await reader2.cleanup();
    }
    await checkHeld(['snapshot', 'timestamp']);
    // The management API says where each key of the roles is: the HSM, or with the notary client.
    const keys = await fetch(`${tg.url}/api/v1/repositories/${encodeURIComponent(gun)}/keys`, {
      headers: { authorization: `Bearer ${tg.adminToken}` },
    });
    assert.equal(keys.status, 200);
    const listed = ((await keys.json()) as { keys: { role: string; location: string; keystore: string | null; inMetadata: boolean }[] })
      .keys;
    assert.deepEqual(
      listed.filter((k) => k.inMetadata).map((k) => [k.role, k.location, k.keystore]),
      [
        ['root', 'offline', null],
        ['targets', 'offline', null],
        ['snapshot', 'hsm', 'pkcs11'],
        ['timestamp', 'hsm', 'pkcs11'],
      ],
    );
    assert.ok(!logs.join('\n').includes(PIN), 'the PIN never appears in logs');
  } finally {
    await publisher.cleanup();
    await reader.cleanup();
    await tg.stop();
    await removeTempDir(dir);
  }
});
