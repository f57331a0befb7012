import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { test } from 'node:test';
import { bundleToJSON } from '@sigstore/bundle';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { createBundle, tagStatement, verifyBundle } from '../../src/core/crypto/sigstore.js';

const digest = 'sha256:' + 'ef'.repeat(32);

test('a bundle signed with a trustgate key verifies with @sigstore/verify and carries the statement', async () => {
  const s = generateSigner('ecdsa');
  const bundle = await createBundle(s, tagStatement({ repository: 'registry.local/app', digest, tag: 'v1', role: 'targets' }));
  const json = bundleToJSON(bundle) as { mediaType: string; verificationMaterial: { publicKey?: { hint: string } } };
  assert.match(json.mediaType, /sigstore\.bundle/);
  assert.equal(json.verificationMaterial.publicKey?.hint, s.id);
  const { statement } = verifyBundle(bundle, { hint: s.id, key: createPublicKey(s.privateKey) });
  assert.deepEqual((statement.subject as { digest: { sha256: string } }[])[0]!.digest.sha256, 'ef'.repeat(32));
});

test('a bundle does not verify with another key or after its payload changes', async () => {
  const s = generateSigner('ecdsa');
  const other = generateSigner('ecdsa');
  const bundle = await createBundle(s, tagStatement({ repository: 'registry.local/app', digest }));
  assert.throws(() => verifyBundle(bundle, { hint: s.id, key: createPublicKey(other.privateKey) }));
  assert.equal(bundle.content.$case, 'dsseEnvelope');
  if (bundle.content.$case === 'dsseEnvelope') {
    const env = bundle.content.dsseEnvelope;
    env.payload = Buffer.from(env.payload.toString().replace('ef', 'ee'));
  }
  assert.throws(() => verifyBundle(bundle, { hint: s.id, key: createPublicKey(s.privateKey) }));
});
