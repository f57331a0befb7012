import 'reflect-metadata';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  constants,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  webcrypto,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import * as px509 from '@peculiar/x509';
import forge from 'node-forge';
import { canonicalKeyId, keyId, makeKey, verifySignature, type TufKey } from '../../src/core/crypto/keys.js';
import { signWith, tufKeyFromPublic } from '../../src/core/crypto/signer.js';
import { canonicalBytes, parseJson } from '../../src/core/json/canonical.js';
import {
  certificateProblem,
  createCertificateForKey,
  createRootCertificate,
  matchCommonNameToGun,
  parseCertificateBundle,
  pemEncodeCertificates,
  validateDelegationCert,
  validateRootKey,
} from '../../src/core/crypto/x509.js';

const FIXTURES = '/work/shared/fixtures/notary/metadata';
const GUN = readFileSync(`${FIXTURES}/GUN.txt`, 'utf8').trim();
const rootFile = parseJson(readFileSync(`${FIXTURES}/root.json`)) as unknown as {
  signed: { keys: Record<string, TufKey>; roles: { root: { keyids: string[] } } };
  signatures: { keyid: string; method: string; sig: string }[];
};
const ROOT_ID = rootFile.signed.roles.root.keyids[0]!;
const ROOT_KEY = rootFile.signed.keys[ROOT_ID]!;
const ROOT_PEM = Buffer.from(ROOT_KEY.keyval.public, 'base64').toString('utf8');
// id(ecdsa, SPKI of the leaf), computed independently with openssl x509 -pubkey | sha256 of the canonical key JSON.
const ROOT_CANONICAL_ID = '4961abaf62fcbc4805edf9feaabf90c80f9e32b6c3f4ed7eadb8bd76efdab0fd';
// Inside the fixture certificate's validity (2026-11-28T11:25:26Z .. 2036-11-25T11:25:26Z).
const NOW = new Date('2030-01-01T00:00:00Z');
const DAY = 24 * 3600 * 1000;

const ec = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
const x509Key = (pem: string, keytype: 'ecdsa-x509' | 'rsa-x509' = 'ecdsa-x509'): TufKey => makeKey(keytype, Buffer.from(pem, 'utf8'));

/** An RSA certificate made with node-forge, which can sign with SHA-1 and use short keys. */
function forgeCert(opts: { cn: string; privateKey: KeyObject; md: 'sha1' | 'sha256'; notBefore?: Date; notAfter?: Date }): string {
  const priv = forge.pki.privateKeyFromPem(opts.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string) as forge.pki.rsa.PrivateKey;
  const pub = forge.pki.publicKeyFromPem(createPublicKey(opts.privateKey).export({ type: 'spki', format: 'pem' }) as string);
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = '01';
  cert.validity.notBefore = opts.notBefore ?? new Date(NOW.getTime() - DAY);
  cert.validity.notAfter = opts.notAfter ?? new Date(NOW.getTime() + 365 * DAY);
  cert.setSubject([{ name: 'commonName', value: opts.cn }]);
  cert.setIssuer([{ name: 'commonName', value: opts.cn }]);
  cert.setExtensions([{ name: 'basicConstraints', cA: false, critical: true }]);
  cert.sign(priv, opts.md === 'sha1' ? forge.md.sha1.create() : forge.md.sha256.create());
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
  return pemEncodeCertificates([der]);
}

const cert = async (cn: string, extra: Partial<Parameters<typeof createCertificateForKey>[0]> = {}) =>
  (await createCertificateForKey({ commonName: cn, privateKey: ec(), notBefore: new Date(NOW.getTime() - DAY), ...extra })).pem;

describe('pemEncodeCertificates / parseCertificateBundle', () => {
  it('re-encodes the fixture root certificate byte for byte, so key IDs match', () => {
    const certs = parseCertificateBundle(ROOT_PEM);
    assert.equal(certs.length, 1);
    const pem = pemEncodeCertificates(certs.map((c) => c.der));
    assert.equal(pem, ROOT_PEM);
    assert.equal(keyId(x509Key(pem)), ROOT_ID);
    assert.equal(keyId(ROOT_KEY), ROOT_ID);
  });

  it('canonical key ID is the ID of the plain ecdsa key inside the certificate', () => {
    assert.equal(canonicalKeyId(ROOT_KEY), ROOT_CANONICAL_ID);
    const [leaf] = parseCertificateBundle(ROOT_PEM);
    assert.equal(keyId(tufKeyFromPublic(leaf!.publicKey)), ROOT_CANONICAL_ID);
  });

  it('reads the fields notary cares about', () => {
    const [leaf] = parseCertificateBundle(ROOT_PEM);
    assert.equal(leaf!.commonName, GUN);
    assert.equal(leaf!.issuerCommonName, GUN);
    assert.equal(leaf!.isCA, false);
    assert.equal(leaf!.signatureAlgorithmOid, '1.2.840.10045.4.3.2');
    assert.equal(leaf!.signatureAlgorithm, 'ecdsa-with-SHA256');
    assert.equal(leaf!.keyAlgorithm, 'ec');
    assert.equal(leaf!.keySize, 256);
    assert.equal(leaf!.namedCurve, 'prime256v1');
    assert.equal(leaf!.notBefore.toISOString(), '2026-11-28T11:25:26.000Z');
    assert.equal(leaf!.notAfter.toISOString(), '2036-11-25T11:25:26.000Z');
  });

  it('wraps base64 at 64 columns with LF endings and a final newline', () => {
    const der = Buffer.alloc(100, 7);
    const pem = pemEncodeCertificates([der, der]);
    const lines = pem.split('\n');
    assert.equal(lines[0], '-----BEGIN CERTIFICATE-----');
    assert.equal(lines[1]!.length, 64);
    const b64 = der.toString('base64');
    assert.deepEqual(lines.slice(1, 5), [b64.slice(0, 64), b64.slice(64, 128), b64.slice(128), '-----END CERTIFICATE-----']);
    assert.ok(pem.endsWith('-----END CERTIFICATE-----\n'));
    assert.ok(!pem.includes('\r'));
    assert.equal(pem.split('-----BEGIN CERTIFICATE-----').length, 3);
  });

  it('rejects non-certificate blocks and empty bundles', () => {
    assert.throws(
      () => parseCertificateBundle(`${ROOT_PEM}-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n`),
      /invalid pem block type: PUBLIC KEY/,
    );
    assert.throws(() => parseCertificateBundle('hello'), /no valid certificates found/);
    assert.throws(
      () => parseCertificateBundle('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
      /could not parse certificate/,
    );
  });
});

describe('validateRootKey', () => {
  it('accepts the fixture root key for its GUN and rebuilds the same key', () => {
    const r = validateRootKey(ROOT_KEY, GUN, NOW);
    assert.ok(r.ok, !r.ok ? r.reason : '');
    assert.equal(keyId(r.key), ROOT_ID);
    assert.deepEqual(r.key, ROOT_KEY);
    // The rebuilt key verifies the fixture's own root signature.
    const sig = rootFile.signatures.find((s) => s.keyid === ROOT_ID)!;
    assert.ok(verifySignature(r.key, canonicalBytes(rootFile.signed), sig.method, Buffer.from(sig.sig, 'base64')));
  });

  it('rejects the fixture key for another GUN', () => {
    const r = validateRootKey(ROOT_KEY, `${GUN}x`, NOW);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /does not match the GUN/);
    assert.equal(validateRootKey(ROOT_KEY, 'docker.io/library/app', NOW).ok, false);
  });

  it('gives one day of grace on NotBefore and none on NotAfter', () => {
    const [leaf] = parseCertificateBundle(ROOT_PEM);
    const nb = leaf!.notBefore.getTime();
    const na = leaf!.notAfter.getTime();
    assert.ok(validateRootKey(ROOT_KEY, GUN, new Date(nb - DAY + 1000)).ok);
    assert.ok(validateRootKey(ROOT_KEY, GUN, new Date(nb - DAY)).ok);
    assert.equal(validateRootKey(ROOT_KEY, GUN, new Date(nb - DAY - 1000)).ok, false);
    assert.ok(validateRootKey(ROOT_KEY, GUN, new Date(na)).ok);
    const late = validateRootKey(ROOT_KEY, GUN, new Date(na + 1000));
    assert.equal(late.ok, false);
    assert.match(!late.ok ? late.reason : '', /is expired/);
    assert.ok(validateRootKey(ROOT_KEY, GUN, new Date(na + 1000), { checkExpiry: false }).ok);
  });

  it('rejects an expired certificate', async () => {
    const { key } = await createRootCertificate({
      gun: 'example.com/app',
      privateKey: ec(),
      notBefore: new Date('2015-01-01T00:00:00Z'),
      years: 1,
    });
    const r = validateRootKey(key, 'example.com/app', new Date());
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /certificate with CN example.com\/app is expired/);
    assert.ok(validateRootKey(key, 'example.com/app', new Date(), { checkExpiry: false }).ok);
  });

  it('rejects a certificate that is not yet valid beyond the grace day', async () => {
    const { key } = await createRootCertificate({ gun: 'example.com/app', privateKey: ec(), notBefore: new Date(NOW.getTime() + 2 * DAY) });
    assert.equal(validateRootKey(key, 'example.com/app', NOW).ok, false);
    const { key: soon } = await createRootCertificate({
      gun: 'example.com/app',
      privateKey: ec(),
      notBefore: new Date(NOW.getTime() + DAY / 2),
    });
    assert.ok(validateRootKey(soon, 'example.com/app', NOW).ok);
  });

  it('rejects an inverted validity window even without expiry checks', async () => {
    const pem = await cert('example.com/app', { notBefore: new Date(NOW.getTime() + DAY), notAfter: new Date(NOW.getTime() - DAY) });
    const r = validateRootKey(x509Key(pem), 'example.com/app', NOW, { checkExpiry: false });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /validity window is invalid/);
  });

  it('rejects SHA-1 signed certificates (sha1WithRSA and ecdsa-with-SHA1)', async () => {
    const pem = forgeCert({ cn: 'example.com/app', privateKey: rsa(2048), md: 'sha1' });
    assert.equal(parseCertificateBundle(pem)[0]!.signatureAlgorithm, 'sha1WithRSAEncryption');
    const r = validateRootKey(x509Key(pem, 'rsa-x509'), 'example.com/app', NOW);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /SHA1 signature algorithm/);
    // The same key signed with SHA-256 passes.
    assert.ok(
      validateRootKey(
        x509Key(forgeCert({ cn: 'example.com/app', privateKey: rsa(2048), md: 'sha256' }), 'rsa-x509'),
        'example.com/app',
        NOW,
      ).ok,
    );

    const { privateKey, publicKey } = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const ecSha1 = await px509.X509CertificateGenerator.createSelfSigned(
      {
        name: 'CN=example.com/app',
        keys: { privateKey, publicKey } as CryptoKeyPair,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-1' } as EcdsaParams,
        notBefore: new Date(NOW.getTime() - DAY),
        notAfter: new Date(NOW.getTime() + DAY),
      },
      webcrypto as unknown as Crypto,
    );
    const pem2 = pemEncodeCertificates([Buffer.from(ecSha1.rawData)]);
    assert.equal(parseCertificateBundle(pem2)[0]!.signatureAlgorithm, 'ecdsa-with-SHA1');
    assert.equal(validateRootKey(x509Key(pem2), 'example.com/app', NOW).ok, false);
  });

  it('rejects RSA keys under 2048 bits', () => {
    const pem = forgeCert({ cn: 'example.com/app', privateKey: rsa(1024), md: 'sha256' });
    assert.equal(parseCertificateBundle(pem)[0]!.keySize, 1024);
    const r = validateRootKey(x509Key(pem, 'rsa-x509'), 'example.com/app', NOW);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /RSA bit length is too short/);
  });

  it('rejects a CA certificate as the leaf, a CA first, and two leaves', async () => {
    const ca = await cert('example.com/app', { ca: true });
    const leaf = await cert('example.com/app');
    const onlyCa = validateRootKey(x509Key(ca), 'example.com/app', NOW);
    assert.equal(onlyCa.ok, false);
    assert.match(!onlyCa.ok ? onlyCa.reason : '', /exactly one leaf certificate, found 0/);
    const caFirst = validateRootKey(x509Key(ca + leaf), 'example.com/app', NOW);
    assert.equal(caFirst.ok, false);
    assert.match(!caFirst.ok ? caFirst.reason : '', /leaf certificate must come first/);
    const two = validateRootKey(x509Key(leaf + (await cert('example.com/app'))), 'example.com/app', NOW);
    assert.equal(two.ok, false);
    assert.match(!two.ok ? two.reason : '', /found 2/);
  });

  it('keeps valid intermediates and drops expired ones', async () => {
    const leaf = await cert('example.com/app');
    const goodCa = await cert('Intermediate', { ca: true });
    const expiredCa = await cert('Old intermediate', { ca: true, notBefore: new Date('2010-01-01T00:00:00Z'), years: 1 });

    const kept = validateRootKey(x509Key(leaf + goodCa), 'example.com/app', NOW);
    assert.ok(kept.ok);
    assert.equal(kept.intermediates.length, 1);
    assert.equal(keyId(kept.key), keyId(x509Key(leaf + goodCa)));

    const dropped = validateRootKey(x509Key(leaf + expiredCa + goodCa), 'example.com/app', NOW, { checkExpiry: false });
    assert.ok(dropped.ok);
    assert.equal(Buffer.from(dropped.key.keyval.public, 'base64').toString(), leaf + goodCa);
    assert.notEqual(keyId(dropped.key), keyId(x509Key(leaf + expiredCa + goodCa)));
  });

  it('rebuilds the key so that non-Go PEM formatting changes its ID', () => {
    const crlf = ROOT_PEM.replace(/\n/g, '\r\n');
    const r = validateRootKey(x509Key(crlf), GUN, NOW);
    assert.ok(r.ok);
    assert.equal(keyId(r.key), ROOT_ID);
    assert.notEqual(keyId(x509Key(crlf)), ROOT_ID);
  });

  it('types the rebuilt key by the leaf key algorithm, as Go does', () => {
    const r = validateRootKey({ keytype: 'rsa-x509', keyval: ROOT_KEY.keyval }, GUN, NOW);
    assert.ok(r.ok);
    assert.equal(r.key.keytype, 'ecdsa-x509');
    assert.equal(keyId(r.key), ROOT_ID);
  });

  it('matches wildcard CNs `prefix*` against GUN prefixes', async () => {
    const key = x509Key(await cert('localhost:5000/library/*'));
    assert.ok(validateRootKey(key, 'localhost:5000/library/app', NOW).ok);
    assert.ok(validateRootKey(key, 'localhost:5000/library/', NOW).ok);
    assert.equal(validateRootKey(key, 'localhost:5000/other/app', NOW).ok, false);
    assert.equal(parseCertificateBundle(Buffer.from(key.keyval.public, 'base64').toString())[0]!.commonName, 'localhost:5000/library/*');
    assert.ok(matchCommonNameToGun('a/**', 'a/b'));
    assert.ok(matchCommonNameToGun('*', 'anything/at/all'));
    assert.equal(matchCommonNameToGun('a/b', 'a/bc'), false);
    assert.equal(matchCommonNameToGun('', 'a'), false);
  });

  it('rejects keys that are not certificates', () => {
    const plain = tufKeyFromPublic(createPublicKey(ec()));
    const r = validateRootKey(plain, GUN, NOW);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /must be an x509 certificate, not ecdsa/);
    assert.equal(validateRootKey({ keytype: 'ecdsa-x509', keyval: { public: 'not base64!', private: null } }, GUN, NOW).ok, false);
    assert.equal(validateRootKey(x509Key('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'), GUN, NOW).ok, false);
  });
});

describe('validateDelegationCert', () => {
  it('ignores expiry but checks SHA-1, RSA size and the validity window', async () => {
    const expired = await cert('alice', { notBefore: new Date('2010-01-01T00:00:00Z'), years: 1 });
    assert.deepEqual(validateDelegationCert(x509Key(expired), NOW), { ok: true });
    assert.equal(validateDelegationCert(x509Key(forgeCert({ cn: 'alice', privateKey: rsa(2048), md: 'sha1' }), 'rsa-x509'), NOW).ok, false);
    assert.equal(
      validateDelegationCert(x509Key(forgeCert({ cn: 'alice', privateKey: rsa(1024), md: 'sha256' }), 'rsa-x509'), NOW).ok,
      false,
    );
    const inverted = await cert('alice', { notBefore: new Date(NOW.getTime() + DAY), notAfter: new Date(NOW.getTime() - DAY) });
    assert.equal(validateDelegationCert(x509Key(inverted), NOW).ok, false);
    assert.deepEqual(validateDelegationCert(tufKeyFromPublic(createPublicKey(ec())), NOW), { ok: true });
    assert.equal(validateDelegationCert(x509Key('garbage'), NOW).ok, false);
  });

  it('certificateProblem reports nothing for the fixture', () => {
    assert.equal(certificateProblem(parseCertificateBundle(ROOT_PEM)[0]!, NOW, true), undefined);
  });
});

describe('createRootCertificate', () => {
  it('makes notary’s root certificate profile for ECDSA P-256', async () => {
    const privateKey = ec();
    const before = Date.now();
    const { pem, key } = await createRootCertificate({ gun: GUN, privateKey });
    assert.equal(key.keytype, 'ecdsa-x509');
    assert.equal(Buffer.from(key.keyval.public, 'base64').toString('utf8'), pem);
    assert.equal(key.keyval.private, null);

    const [c] = parseCertificateBundle(pem);
    assert.equal(pemEncodeCertificates([c!.der]), pem);
    assert.equal(c!.commonName, GUN);
    assert.equal(c!.issuerCommonName, GUN);
    assert.equal(c!.isCA, false);
    assert.equal(c!.signatureAlgorithm, 'ecdsa-with-SHA256');
    assert.ok(Math.abs(c!.notBefore.getTime() - before) < 5000);
    assert.equal(c!.notAfter.getTime() - c!.notBefore.getTime(), 3650 * DAY);

    const p = new px509.X509Certificate(new Uint8Array(c!.der));
    const ku = p.getExtension(px509.KeyUsagesExtension)!;
    assert.ok(ku.critical);
    assert.equal(ku.usages, px509.KeyUsageFlags.digitalSignature | px509.KeyUsageFlags.keyEncipherment);
    const eku = p.getExtension(px509.ExtendedKeyUsageExtension)!;
    assert.deepEqual([...eku.usages], [px509.ExtendedKeyUsage.codeSigning]);
    const bc = p.getExtension(px509.BasicConstraintsExtension)!;
    assert.ok(bc.critical);
    assert.equal(bc.ca, false);
    assert.equal(p.extensions.length, 3);
    // Positive serial of at most 128 bits (plus a sign byte).
    const serial = Buffer.from(p.serialNumber, 'hex');
    assert.ok(serial.length >= 1 && serial.length <= 16);
    // Self-signed and valid, with the same DER extensions Go writes (compare with the fixture's).
    const node = new X509Certificate(c!.der);
    assert.ok(node.verify(createPublicKey(privateKey)));
    const extDer = (der: Buffer) =>
      der.subarray(der.indexOf(Buffer.from('a335303330', 'hex')), der.indexOf(Buffer.from('300a06082a8648ce3d040302', 'hex'), 200));
    assert.deepEqual(extDer(c!.der), extDer(parseCertificateBundle(ROOT_PEM)[0]!.der));

    const v = validateRootKey(key, GUN, new Date());
    assert.ok(v.ok);
    assert.equal(keyId(v.key), keyId(key));
    assert.equal(canonicalKeyId(key), keyId(tufKeyFromPublic(createPublicKey(privateKey))));

    const message = canonicalBytes({ _type: 'Root', version: 1, keys: { [keyId(key)]: key } });
    const sig = signWith(privateKey, key.keytype, message);
    assert.equal(sig.length, 64);
    assert.ok(verifySignature(key, message, 'ecdsa', sig));
    assert.equal(verifySignature(key, Buffer.concat([message, Buffer.from(' ')]), 'ecdsa', sig), false);
  });

  it('makes an RSA root certificate signed sha256WithRSA', async () => {
    const privateKey = rsa(2048);
    const { key } = await createRootCertificate({ gun: 'example.com/rsa', privateKey });
    assert.equal(key.keytype, 'rsa-x509');
    const v = validateRootKey(key, 'example.com/rsa', new Date());
    assert.ok(v.ok);
    assert.equal(v.leaf.signatureAlgorithm, 'sha256WithRSAEncryption');
    assert.equal(v.leaf.keySize, 2048);
    const message = Buffer.from('{"a":1}');
    // keys.ts verifies rsa-x509 keys with the leaf's RSA key. (rsapss is not exercised here: signer.ts
    // and keys.ts pass padding 2, which is not RSA_PKCS1_PSS_PADDING (6) in node.)
    const pkcs1 = nodeSign('sha256', message, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    assert.ok(verifySignature(key, message, 'rsapkcs1v15', pkcs1));
    const pss = nodeSign('sha256', message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    assert.ok(nodeVerify('sha256', message, { key: v.leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, pss));
  });

  it('uses UTF8String for names PrintableString cannot hold, as Go does', async () => {
    const { pem } = await createRootCertificate({ gun: 'example.com/app_*', privateKey: ec() });
    const [c] = parseCertificateBundle(pem);
    assert.equal(c!.commonName, 'example.com/app_*');
    assert.ok(c!.der.includes(Buffer.concat([Buffer.from([0x0c, 17]), Buffer.from('example.com/app_*')])));
  });

  it('refuses keys notary cannot use in certificates', async () => {
    await assert.rejects(createRootCertificate({ gun: 'g', privateKey: rsa(1024) }), /at least 2048 bits/);
    await assert.rejects(createRootCertificate({ gun: 'g', privateKey: generateKeyPairSync('ed25519').privateKey }), /ed25519/);
    await assert.rejects(
      createRootCertificate({ gun: 'g', privateKey: generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey }),
      /curve/,
    );
  });
});
