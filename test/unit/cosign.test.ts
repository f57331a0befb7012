import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import {
  signatureArtifact,
  signatureLayers,
  signatureTag,
  signPayload,
  simpleSigningPayload,
  verifySimpleSigning,
} from '../../src/core/crypto/cosign.js';

const fix = (n: string) => readFileSync(new URL(`../fixtures/sigstore/${n}`, import.meta.url));
const meta = JSON.parse(fix('meta.json').toString()) as {
  signedImage: { manifestDigest: string; reference: string };
  attachment: { signatureBase64: string; tag: string; manifestDigest: string };
};

test('a real cosign signature verifies with node:crypto alone', () => {
  const r = verifySimpleSigning(
    fix('cosign.pub').toString(),
    fix('signature-payload-1.json'),
    meta.attachment.signatureBase64,
    meta.signedImage.manifestDigest,
    meta.signedImage.reference,
  );
  assert.deepEqual(r, { ok: true, dockerReference: meta.signedImage.reference });
});

test('the fixture signature fails for another digest, another reference, or a flipped byte', () => {
  const pub = fix('cosign.pub').toString();
  const other = 'sha256:' + 'ab'.repeat(32);
  assert.equal(verifySimpleSigning(pub, fix('signature-payload-1.json'), meta.attachment.signatureBase64, other).ok, false);
  assert.equal(
    verifySimpleSigning(
      pub,
      fix('signature-payload-1.json'),
      meta.attachment.signatureBase64,
      meta.signedImage.manifestDigest,
      'evil/app:v1',
    ).ok,
    false,
  );
  const tampered = Buffer.from(fix('signature-payload-1.json'));
  tampered[10]! ^= 1;
  assert.equal(verifySimpleSigning(pub, tampered, meta.attachment.signatureBase64, meta.signedImage.manifestDigest).ok, false);
});

test('the attachment manifest and config are byte-identical to what cosign and skopeo write', () => {
  const a = signatureArtifact(meta.signedImage.manifestDigest, fix('signature-payload-1.json'), meta.attachment.signatureBase64);
  assert.equal(a.tag, meta.attachment.tag);
  assert.deepEqual(a.config, fix('signature-config.json'));
  assert.deepEqual(a.manifest, fix('signature-manifest.json'));
  assert.equal(a.manifestDigest, meta.attachment.manifestDigest);
  assert.deepEqual(
    signatureLayers(a.manifest).map((l) => l.signature),
    [meta.attachment.signatureBase64],
  );
});

test('trustgate-made signatures verify with an independent check and the exported public key', async () => {
  const s = generateSigner('ecdsa');
  const digest = 'sha256:' + 'cd'.repeat(32);
  const payload = simpleSigningPayload('registry.local/app:v2', digest);
  const sig = await signPayload(s, payload);
  const pubPem = createPublicKey(s.privateKey).export({ type: 'spki', format: 'pem' }).toString();
  assert.deepEqual(verifySimpleSigning(pubPem, payload, sig, digest, 'registry.local/app:v2'), {
    ok: true,
    dockerReference: 'registry.local/app:v2',
  });
  assert.equal(signatureTag(digest), `sha256-${'cd'.repeat(32)}.sig`);
  assert.throws(() => signatureTag('sha256:xyz'));
});
