// Simple signing as cosign writes it and containers/image reads it. The payload trustgate writes is
// compared byte for byte with cosign's output; the real fixture (../fixtures/sigstore, made with
// cosign's format and copied by skopeo) passes the independent strict verifier
// (test/helpers/strict-cosign.ts); and trustgate's own reader (verifySimpleSigning) refuses the
// same malformed payloads the strict verifier refuses.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseSimpleSigning, simpleSigningPayload, verifySimpleSigning } from '../../src/core/crypto/cosign.js';
import { cosignSign, podmanPayload, strictPayload, strictVerify, StrictError } from '../helpers/strict-cosign.js';

const fix = (n: string) => readFileSync(new URL(`../fixtures/sigstore/${n}`, import.meta.url));
const meta = JSON.parse(fix('meta.json').toString()) as {
  signedImage: { manifestDigest: string; reference: string };
  attachment: { signatureBase64: string };
};
const DIGEST = 'sha256:' + 'ab'.repeat(32);

test('the fixture signature passes the strict verifier, for its tag and by digest', () => {
  const base = {
    publicKey: fix('cosign.pub').toString(),
    payload: fix('signature-payload-1.json'),
    signature: meta.attachment.signatureBase64,
    manifest: fix('signed-image-manifest.json'),
  };
  const claims = strictVerify({ ...base, intended: meta.signedImage.reference });
  assert.deepEqual(claims, {
    creator: 'registry-harness sigstore.mjs',
    timestamp: 1795864366,
    digest: meta.signedImage.manifestDigest,
    dockerReference: '127.0.0.1:15000/demo/hello:v1',
  });
  strictVerify({ ...base, intended: `127.0.0.1:15000/demo/hello@${meta.signedImage.manifestDigest}` });
  // Another tag, another repository, another manifest, another key: refused.
  assert.throws(() => strictVerify({ ...base, intended: '127.0.0.1:15000/demo/hello:v2' }), /not accepted/);
  assert.throws(() => strictVerify({ ...base, intended: '127.0.0.1:15000/demo/other:v1' }), /not accepted/);
  assert.throws(() => strictVerify({ ...base, manifest: Buffer.from('{}'), intended: meta.signedImage.reference }), /does not match/);
  const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
  assert.throws(() => strictVerify({ ...base, publicKey: stranger, intended: meta.signedImage.reference }), /verification failed/);
});

test('the payload is byte for byte what cosign writes: critical in struct order, then "optional": null', () => {
  const ref = '127.0.0.1:15000/demo/hello';
  const payload = simpleSigningPayload(ref, meta.signedImage.manifestDigest).toString();
  assert.equal(
    payload,
    `{"critical":{"identity":{"docker-reference":"${ref}"},"image":{"docker-manifest-digest":"${meta.signedImage.manifestDigest}"},` +
      `"type":"cosign container image signature"},"optional":null}`,
  );
  // The fixture's `critical` object has the very bytes trustgate writes for its reference.
  const fixture = fix('signature-payload-1.json').toString();
  const critical = (s: string) => s.slice(0, s.indexOf(',"optional":'));
  assert.equal(critical(simpleSigningPayload(meta.signedImage.reference, meta.signedImage.manifestDigest).toString()), critical(fixture));
  // Annotations (cosign -a) as Go writes a map: keys sorted, <, > and & escaped.
  assert.ok(
    simpleSigningPayload(ref, DIGEST, { z: 'last', a: '<b>&' })
      .toString()
      .endsWith(',"optional":{"a":"\\u003cb\\u003e\\u0026","z":"last"}}'),
  );
  // containers/image accepts it: exactly critical and optional, optional null.
  assert.deepEqual(strictPayload(Buffer.from(payload)), { digest: meta.signedImage.manifestDigest, dockerReference: ref });
});

/** Payload variants: what containers/image refuses, with the reason's gist. */
const critical = `{"identity":{"docker-reference":"reg.example/app:v1"},"image":{"docker-manifest-digest":"${DIGEST}"},"type":"cosign container image signature"}`;
const REFUSED: Array<[string, string]> = [
  ['no optional', `{"critical":${critical}}`],
  ['an extra top-level field', `{"critical":${critical},"optional":null,"extra":1}`],
  ['a duplicate top-level key', `{"critical":${critical},"optional":null,"optional":null}`],
  ['no critical', `{"optional":null}`],
  ['critical not an object', `{"critical":null,"optional":null}`],
  ['optional an array', `{"critical":${critical},"optional":[]}`],
  ['a non-string creator', `{"critical":${critical},"optional":{"creator":5}}`],
  ['a fractional timestamp', `{"critical":${critical},"optional":{"timestamp":1.5}}`],
  ['a string timestamp', `{"critical":${critical},"optional":{"timestamp":"1"}}`],
  ['an extra field in critical', `{"critical":${critical.replace('"type"', '"x":1,"type"')},"optional":null}`],
  ['no type', `{"critical":${critical.replace(',"type":"cosign container image signature"', '')},"optional":null}`],
  ['another type', `{"critical":${critical.replace('cosign container image signature', 'atomic container signature')},"optional":null}`],
  ['an extra field in identity', `{"critical":${critical.replace('"reg.example/app:v1"', '"reg.example/app:v1","x":1')},"optional":null}`],
  ['an extra field in image', `{"critical":${critical.replace(`"${DIGEST}"`, `"${DIGEST}","x":1`)},"optional":null}`],
  ['a digest in upper case', `{"critical":${critical.replace(DIGEST, DIGEST.toUpperCase().replace('SHA', 'sha'))},"optional":null}`],
  ['a short digest', `{"critical":${critical.replace(DIGEST, DIGEST.slice(0, 40))},"optional":null}`],
  ['an unknown digest algorithm', `{"critical":${critical.replace('sha256:', 'md5:')},"optional":null}`],
  ['a non-string docker-reference', `{"critical":${critical.replace('"reg.example/app:v1"', '7')},"optional":null}`],
  ['trailing data', `{"critical":${critical},"optional":null} {}`],
  ['not JSON', `{"critical":`],
];

test('the strict verifier and trustgate refuse the same malformed payloads, each signed by the trusted key', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  for (const [what, text] of REFUSED) {
    const payload = Buffer.from(text);
    assert.throws(() => strictPayload(payload), StrictError, `strict verifier accepts ${what}`);
    assert.equal(parseSimpleSigning(payload).ok, false, `parseSimpleSigning accepts ${what}`);
    const sig = cosignSign(privateKey, payload);
    assert.equal(verifySimpleSigning(publicKey, payload, sig, DIGEST).ok, false, `verifySimpleSigning accepts ${what}`);
  }
  // Both accept what containers/image writes (creator and timestamp) and ignore other optional keys.
  for (const payload of [podmanPayload('reg.example/app:v1', DIGEST), Buffer.from(`{"critical":${critical},"optional":{"other":[1]}}`)]) {
    strictPayload(payload);
    assert.deepEqual(verifySimpleSigning(publicKey, payload, cosignSign(privateKey, payload), DIGEST), {
      ok: true,
      dockerReference: 'reg.example/app:v1',
    });
  }
  const pem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  const good = podmanPayload('reg.example/app:v1', DIGEST);
  assert.equal(verifySimpleSigning(pem, good, 'not base64!', DIGEST).ok, false);
});
