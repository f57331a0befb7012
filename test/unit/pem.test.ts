import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { keyId, makeKey } from '../../src/core/crypto/keys.js';
import { tufKeyFromPublic } from '../../src/core/crypto/signer.js';
import {
  DER,
  derChildren,
  derReadExact,
  exportPrivateKeyPem,
  exportPublicKeyPem,
  importPrivateKeyPem,
  notaryKeyId,
  oidToString,
  pemDecode,
  pemDecodeAll,
  pemEncode,
  PrivateKeyPemError,
  type PemErrorCode,
} from '../../src/core/crypto/pem.js';
import { createRootCertificate } from '../../src/core/crypto/x509.js';
import forge from 'node-forge';

const PASS = 'correct horse battery';
const NOTARY = '/usr/bin/notary';
const GUN = 'example.com/app';

const ec = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const ed = () => generateKeyPairSync('ed25519').privateKey;

const spki = (k: KeyObject) => createPublicKey(k).export({ type: 'spki', format: 'der' });
function sameKey(a: KeyObject, b: KeyObject): void {
  assert.deepEqual(spki(a), spki(b));
  const msg = Buffer.from('message');
  const alg = a.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  assert.ok(verify(alg, msg, createPublicKey(a), sign(alg, msg, b)));
}

function assertPemError(fn: () => unknown, code: PemErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PrivateKeyPemError, `expected PrivateKeyPemError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    assert.ok(!e.message.includes(PASS), 'error message must not contain the passphrase');
    return true;
  });
}

/** The PBES2 parameters of an ENCRYPTED PRIVATE KEY block, as notary lays them out. */
function pbes2Layout(pem: string) {
  const block = pemDecode(pem)!;
  const [alg, data] = derChildren(derReadExact(block.bytes));
  const [pbes2Oid, params] = derChildren(alg!);
  const [kdf, enc] = derChildren(params!);
  const [kdfOid, kdfParams] = derChildren(kdf!);
  const kp = derChildren(kdfParams!);
  const [encOid, iv] = derChildren(enc!);
  return {
    type: block.type,
    pbes2: oidToString(pbes2Oid!),
    kdf: oidToString(kdfOid!),
    saltLength: kp[0]!.tag === DER.OCTET_STRING ? kp[0]!.value.length : -1,
    iterations: kp[1]!.tag === DER.INTEGER ? forge.asn1.derToInteger(kp[1]!.value.toString('binary')) : -1,
    extraKdfParams: kp.length - 2, // keyLength / prf: notary writes neither
    cipher: oidToString(encOid!),
    ivLength: iv!.value.length,
    encryptedLength: data!.value.length,
  };
}

const NOTARY_LAYOUT = {
  type: 'ENCRYPTED PRIVATE KEY',
  pbes2: '1.2.840.113549.1.5.13',
  kdf: '1.2.840.113549.1.5.12',
  saltLength: 8,
  iterations: 2048,
  extraKdfParams: 0,
  cipher: '2.16.840.1.101.3.4.1.42',
  ivLength: 16,
};

describe('PEM encoding', () => {
  it('writes headers like Go pem.Encode (Proc-Type first, then sorted) and reads them back', () => {
    const text = pemEncode({
      type: 'X',
      bytes: Buffer.alloc(50, 1),
      headers: { role: 'targets', gun: 'a:5000/b', 'Proc-Type': '4,ENCRYPTED' },
    });
    assert.ok(text.startsWith('-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\ngun: a:5000/b\nrole: targets\n\n'));
    const [block] = pemDecodeAll(`junk before\n${text}junk after`);
    assert.deepEqual(block!.headers, { 'Proc-Type': '4,ENCRYPTED', gun: 'a:5000/b', role: 'targets' });
    assert.deepEqual(block!.bytes, Buffer.alloc(50, 1));
    assert.equal(pemEncode({ type: 'X', bytes: Buffer.alloc(3) }), '-----BEGIN X-----\nAAAA\n-----END X-----\n');
  });
});

describe('exportPrivateKeyPem / importPrivateKeyPem', () => {
  for (const [name, make] of [
    ['ecdsa P-256', ec],
    ['rsa 2048', rsa],
    ['ed25519', ed],
  ] as const) {
    it(`round-trips ${name}`, () => {
      const key = make();
      const pem = exportPrivateKeyPem(key, { passphrase: PASS, role: 'targets', gun: GUN });
      const block = pemDecode(pem)!;
      assert.deepEqual(block.headers, { gun: GUN, path: notaryKeyId(key), role: 'targets' });
      const { encryptedLength: _, ...layout } = pbes2Layout(pem);
      assert.deepEqual(layout, NOTARY_LAYOUT);
      const back = importPrivateKeyPem(pem, PASS);
      sameKey(key, back.privateKey);
      assert.equal(back.role, 'targets');
      assert.equal(back.gun, GUN);
      assert.equal(back.encrypted, true);
      assert.equal(back.headers.path, notaryKeyId(key));
    });
  }

  it('writes the gun header only for roles notary files under a GUN, and no path when asked', () => {
    const key = ec();
    assert.deepEqual(pemDecode(exportPrivateKeyPem(key, { passphrase: PASS, role: 'root', gun: GUN }))!.headers, {
      path: notaryKeyId(key),
      role: 'root',
    });
    assert.deepEqual(pemDecode(exportPrivateKeyPem(key, { passphrase: PASS, role: 'targets/qa', gun: GUN, path: false }))!.headers, {
      role: 'targets/qa',
    });
    assert.deepEqual(pemDecode(exportPrivateKeyPem(key, { passphrase: PASS, role: 'snapshot', gun: GUN, path: 'abc' }))!.headers, {
      gun: GUN,
      path: 'abc',
      role: 'snapshot',
    });
  });

  it('notary key IDs are the plain public key IDs', () => {
    const key = ec();
    assert.equal(notaryKeyId(key), keyId(tufKeyFromPublic(createPublicKey(key))));
    assert.equal(notaryKeyId(createPublicKey(key)), notaryKeyId(key));
  });

  it('rejects a wrong passphrase with a typed error that does not echo it', () => {
    const pem = exportPrivateKeyPem(ec(), { passphrase: PASS, role: 'root' });
    // Enough tries that some decryptions get valid CBC padding and fail later, in the DER.
    for (let i = 0; i < 40; i++) assertPemError(() => importPrivateKeyPem(pem, `${PASS}-${i}`), 'wrong-passphrase', /^wrong passphrase$/);
    assertPemError(() => importPrivateKeyPem(pem), 'passphrase-required');
    assertPemError(() => importPrivateKeyPem(pem, ''), 'passphrase-required');
  });

  it('refuses to export without a passphrase, and non-private or unsupported keys', () => {
    assertPemError(() => exportPrivateKeyPem(ec(), { passphrase: '', role: 'root' }), 'passphrase-required');
    assertPemError(() => exportPrivateKeyPem(createPublicKey(ec()), { passphrase: PASS, role: 'root' }), 'unsupported-key');
    assertPemError(
      () => exportPrivateKeyPem(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey, { passphrase: PASS, role: 'root' }),
      'unsupported-key',
    );
    assertPemError(() => exportPrivateKeyPem(ec(), { passphrase: PASS, role: 'root\nx: y' }), 'unsupported-key');
  });

  it('reports malformed and unsupported input', () => {
    assertPemError(() => importPrivateKeyPem('hello'), 'malformed-pem', /^malformed PEM/);
    assertPemError(() => importPrivateKeyPem('-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n'), 'malformed-pem');
    assertPemError(() => importPrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), 'malformed-pem');
    assertPemError(() => importPrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n'), 'malformed-pem');
    assertPemError(
      () => importPrivateKeyPem('-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n', PASS),
      'malformed-pem',
    );
    assertPemError(
      () => importPrivateKeyPem('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
      'unsupported-key',
      /^unsupported key/,
    );
    const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).privateKey;
    assertPemError(() => importPrivateKeyPem(dsa.export({ type: 'pkcs8', format: 'pem' }) as string), 'unsupported-key');
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey;
    assertPemError(() => importPrivateKeyPem(k1.export({ type: 'pkcs8', format: 'pem' }) as string), 'unsupported-key');
  });

  it('accepts unencrypted PRIVATE KEY, EC PRIVATE KEY and RSA PRIVATE KEY', () => {
    const e = ec();
    const r = rsa();
    const d = ed();
    for (const [key, pem] of [
      [e, e.export({ type: 'pkcs8', format: 'pem' })],
      [e, e.export({ type: 'sec1', format: 'pem' })],
      [r, r.export({ type: 'pkcs8', format: 'pem' })],
      [r, r.export({ type: 'pkcs1', format: 'pem' })],
      [d, d.export({ type: 'pkcs8', format: 'pem' })],
    ] as [KeyObject, string][]) {
      const got = importPrivateKeyPem(pem, 'ignored for unencrypted keys');
      assert.equal(got.encrypted, false);
      assert.equal(got.role, undefined);
      sameKey(key, got.privateKey);
    }
  });

  it('accepts legacy DEK-Info encrypted EC/RSA keys and OpenSSL PBES2 with an HMAC-SHA256 PRF', () => {
    const e = ec();
    const legacy = e.export({ type: 'sec1', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASS }) as string;
    assert.match(legacy, /DEK-Info: AES-256-CBC/);
    const got = importPrivateKeyPem(legacy.replace('Proc-Type', 'role: root\nProc-Type'), PASS);
    assert.equal(got.encrypted, true);
    assert.equal(got.role, 'root');
    sameKey(e, got.privateKey);
    assertPemError(() => importPrivateKeyPem(legacy, 'nope'), 'wrong-passphrase');

    const r = rsa();
    sameKey(
      r,
      importPrivateKeyPem(r.export({ type: 'pkcs1', format: 'pem', cipher: 'des-ede3-cbc', passphrase: PASS }) as string, PASS).privateKey,
    );

    const modern = e.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASS }) as string;
    assert.equal(pbes2Layout(modern).extraKdfParams, 1, 'OpenSSL names a PRF (hmacWithSHA256)');
    sameKey(e, importPrivateKeyPem(modern, PASS).privateKey);
    assertPemError(() => importPrivateKeyPem(modern, 'nope'), 'wrong-passphrase');
  });

  it('reads and writes notary’s Ed25519 PKCS#8 form, and RFC 8410 on request', () => {
    const d = ed();
    const notaryForm = exportPrivateKeyPem(d, { passphrase: PASS, role: 'timestamp', gun: GUN });
    const rfc = exportPrivateKeyPem(d, { passphrase: PASS, role: 'timestamp', gun: GUN, ed25519Format: 'rfc8410' });
    assert.ok(pbes2Layout(notaryForm).encryptedLength > pbes2Layout(rfc).encryptedLength); // 96-byte public‖seed‖public vs 32-byte seed
    sameKey(d, importPrivateKeyPem(notaryForm, PASS).privateKey);
    sameKey(d, importPrivateKeyPem(rfc, PASS).privateKey);
    assert.equal(notaryKeyId(d), keyId(tufKeyFromPublic(createPublicKey(d))));
    // The legacy raw block: public‖seed‖public.
    const seed = d.export({ type: 'pkcs8', format: 'der' }).subarray(16);
    const pub = spki(d).subarray(12);
    const legacy = pemEncode({ type: 'ED25519 PRIVATE KEY', headers: { role: 'timestamp' }, bytes: Buffer.concat([pub, seed, pub]) });
    const got = importPrivateKeyPem(legacy);
    assert.equal(got.role, 'timestamp');
    sameKey(d, got.privateKey);
    const tampered = pemEncode({ type: 'ED25519 PRIVATE KEY', bytes: Buffer.concat([pub, seed, spki(ed()).subarray(12)]) });
    assertPemError(() => importPrivateKeyPem(tampered), 'malformed-pem');
  });
});

describe('exportPublicKeyPem', () => {
  it('writes PUBLIC KEY blocks for plain keys and the certificate text for x509 keys', async () => {
    for (const k of [ec(), rsa(), ed()]) {
      const tuf = tufKeyFromPublic(createPublicKey(k));
      const pem = exportPublicKeyPem(tuf, { role: 'alice' });
      const block = pemDecode(pem)!;
      assert.equal(block.type, 'PUBLIC KEY');
      assert.deepEqual(block.headers, { role: 'alice' });
      assert.deepEqual(block.bytes, spki(k));
    }
    assert.doesNotMatch(exportPublicKeyPem(tufKeyFromPublic(createPublicKey(ec()))), /role/);
    const { pem, key } = await createRootCertificate({ gun: GUN, privateKey: ec() });
    assert.equal(exportPublicKeyPem(key), pem);
    assertPemError(() => exportPublicKeyPem(makeKey('ecdsa-x509', Buffer.from('nope'))), 'unsupported-key');
  });
});

// ---------------------------------------------------------------------------------------------
// Interop with the real notary 0.7 and docker CLIs (both installed here; failures are real failures).

describe('interop with the notary and docker CLIs', () => {
  let tmp: string;
  let n = 0;
  const fresh = (name: string) => join(tmp, `${name}-${++n}`);

  function run(cmd: string, args: string[], env: Record<string, string> = {}) {
    const r = spawnSync(cmd, args, {
      input: '', // never wait on a passphrase prompt
      timeout: 60_000,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp, DOCKER_CONFIG: join(tmp, 'docker'), ...env },
    });
    if (r.error) throw r.error;
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }
  const notary = (dir: string, args: string[], env: Record<string, string> = {}) => run(NOTARY, ['-d', dir, ...args], env);
  const ok = (r: { status: number | null; out: string }) => {
    assert.equal(r.status, 0, r.out);
    return r.out;
  };
  const writeKey = (file: string, text: string) => {
    writeFileSync(file, text, { mode: 0o600 });
    chmodSync(file, 0o600);
    return file;
  };
  const listed = (out: string, id: string) =>
    out
      .split('\n')
      .find((l) => l.includes(id))
      ?.trim()
      .split(/\s+/);

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'trustgate-pem-'));
    assert.ok(existsSync(NOTARY), `${NOTARY} is required for these tests`);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('notary key import accepts our targets key export, lists its ID, and can decrypt it', () => {
    const dir = fresh('trust');
    const key = ec();
    const id = notaryKeyId(key);
    const file = writeKey(join(tmp, 'targets.pem'), exportPrivateKeyPem(key, { passphrase: PASS, role: 'targets', gun: GUN }));
    ok(notary(dir, ['key', 'import', file, '--role', 'targets', '--gun', GUN], { NOTARY_TARGETS_PASSPHRASE: PASS }));
    const row = listed(ok(notary(dir, ['key', 'list'])), id);
    assert.deepEqual(row?.slice(0, 3), ['targets', GUN, id]);
    // `key passwd` decrypts with the old passphrase: proof that notary reads our PBES2.
    const bad = notary(dir, ['key', 'passwd', id], { NOTARY_TARGETS_PASSPHRASE: 'not the passphrase' });
    assert.notEqual(bad.status, 0, bad.out);
    ok(notary(dir, ['key', 'passwd', id], { NOTARY_TARGETS_PASSPHRASE: PASS }));
    assert.deepEqual(readdirSync(join(dir, 'private')), [`${id}.key`]);
    // And what notary wrote back (re-encrypted by notary itself) is readable by us.
    const stored = importPrivateKeyPem(readFileSync(join(dir, 'private', `${id}.key`), 'utf8'), PASS);
    assert.equal(stored.role, 'targets');
    assert.equal(stored.gun, GUN);
    sameKey(key, stored.privateKey);
  });

  it('notary key import takes root, rsa and ed25519 keys from us and decrypts them', () => {
    const dir = fresh('trust');
    const cases: [KeyObject, string, string][] = [
      [ec(), 'root', 'NOTARY_ROOT_PASSPHRASE'],
      [rsa(), 'snapshot', 'NOTARY_SNAPSHOT_PASSPHRASE'],
      [ed(), 'targets', 'NOTARY_TARGETS_PASSPHRASE'],
    ];
    for (const [key, role, env] of cases) {
      const file = writeKey(join(tmp, `${role}.pem`), exportPrivateKeyPem(key, { passphrase: PASS, role, gun: GUN }));
      ok(notary(dir, ['key', 'import', file], { [env]: PASS }));
      const id = notaryKeyId(key);
      const row = listed(ok(notary(dir, ['key', 'list'])), id);
      assert.equal(row?.[0], role);
      assert.ok(row?.includes(id));
      ok(notary(dir, ['key', 'passwd', id], { [env]: PASS }));
      sameKey(key, importPrivateKeyPem(readFileSync(join(dir, 'private', `${id}.key`), 'utf8'), PASS).privateKey);
    }
  });

  it('notary key import skips an encrypted key without a path header (why we write one)', () => {
    const dir = fresh('trust');
    const file = writeKey(join(tmp, 'nopath.pem'), exportPrivateKeyPem(ec(), { passphrase: PASS, role: 'targets', gun: GUN, path: false }));
    const r = notary(dir, ['key', 'import', file, '--role', 'targets', '--gun', GUN], { NOTARY_TARGETS_PASSPHRASE: PASS });
    assert.notEqual(r.status, 0);
    assert.match(r.out, /invalid key pem block/);
  });

  it('we import `notary key generate -o` output with its role header', () => {
    const dir = fresh('trust');
    const prefix = join(tmp, 'generated');
    // generate -o asks for the passphrase with an empty alias, so only NOTARY_DELEGATION_PASSPHRASE applies.
    ok(notary(dir, ['key', 'generate', 'ecdsa', '--role', 'targets', '-o', prefix], { NOTARY_DELEGATION_PASSPHRASE: PASS }));
    const privText = readFileSync(`${prefix}-key.pem`, 'utf8');
    const { encryptedLength: _, ...layout } = pbes2Layout(privText);
    assert.deepEqual(layout, NOTARY_LAYOUT, 'notary writes the PBES2 parameters we write');
    const got = importPrivateKeyPem(privText, PASS);
    assert.equal(got.role, 'targets');
    assert.equal(got.gun, undefined);
    assert.equal(got.encrypted, true);
    const pub = pemDecode(readFileSync(`${prefix}.pem`, 'utf8'))!;
    assert.deepEqual(pub.headers, { role: 'targets' });
    assert.deepEqual(spki(got.privateKey), pub.bytes);
    assertPemError(() => importPrivateKeyPem(privText, 'wrong'), 'wrong-passphrase');
  });

  it('we import `notary key export` output (path and gun headers)', () => {
    const dir = fresh('trust');
    ok(notary(dir, ['key', 'generate', 'ecdsa', '--role', 'root'], { NOTARY_ROOT_PASSPHRASE: PASS }));
    const [file] = readdirSync(join(dir, 'private'));
    const id = file!.replace(/\.key$/, '');
    const out = join(tmp, 'exported.pem');
    ok(notary(dir, ['key', 'export', '--key', id, '-o', out]));
    const got = importPrivateKeyPem(readFileSync(out, 'utf8'), PASS);
    assert.equal(got.role, 'root');
    assert.equal(got.headers.path, id);
    assert.equal(notaryKeyId(got.privateKey), id);
  });

  it('we import `docker trust key generate` output', () => {
    const dir = fresh('docker-pub');
    mkdirSync(dir);
    const config = fresh('docker-config');
    ok(
      run('docker', ['trust', 'key', 'generate', 'alice', '--dir', dir], {
        DOCKER_CONFIG: config,
        DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: PASS,
      }),
    );
    const privDir = join(config, 'trust', 'private');
    const files = readdirSync(privDir);
    assert.equal(files.length, 1);
    const got = importPrivateKeyPem(readFileSync(join(privDir, files[0]!), 'utf8'), PASS);
    assert.equal(got.role, 'alice');
    assert.equal(`${notaryKeyId(got.privateKey)}.key`, files[0]);
    const pub = pemDecode(readFileSync(join(dir, 'alice.pub'), 'utf8'))!;
    assert.deepEqual(pub.headers, { role: 'alice' });
    assert.deepEqual(spki(got.privateKey), pub.bytes);
  });

  it('docker trust key load decrypts our export (path-less) and stores it (with path)', () => {
    const key = ec();
    const id = notaryKeyId(key);
    const config = fresh('docker-config');
    const noPath = writeKey(join(tmp, 'docker-nopath.pem'), exportPrivateKeyPem(key, { passphrase: PASS, role: 'bob', path: false }));
    const bad = run('docker', ['trust', 'key', 'load', noPath, '--name', 'bob'], {
      DOCKER_CONFIG: config,
      DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: 'wrong passphrase',
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.out, /could not decrypt key/);
    // Decrypts (so the passphrase is checked) but then stores nothing: docker/cli passes the raw DER
    // to notary's ImportKeys, which finds no PEM block. It still reports success.
    ok(
      run('docker', ['trust', 'key', 'load', noPath, '--name', 'bob'], {
        DOCKER_CONFIG: config,
        DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: PASS,
      }),
    );
    assert.equal(existsSync(join(config, 'trust', 'private', `${id}.key`)), false);

    const withPath = writeKey(join(tmp, 'docker-path.pem'), exportPrivateKeyPem(key, { passphrase: PASS, role: 'bob' }));
    ok(
      run('docker', ['trust', 'key', 'load', withPath, '--name', 'bob'], {
        DOCKER_CONFIG: config,
        DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: PASS,
      }),
    );
    const stored = readFileSync(join(config, 'trust', 'private', `${id}.key`), 'utf8');
    const got = importPrivateKeyPem(stored, PASS);
    assert.equal(got.role, 'bob');
    sameKey(key, got.privateKey);
    // Sanity: the decrypted key is a real P-256 key usable by node.
    assert.equal(createPrivateKey(got.privateKey.export({ type: 'pkcs8', format: 'pem' })).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });
});
