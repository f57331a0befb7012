// Regression: two attestations of one digest signed at once both stay in its cosign `.att`
// manifest. Each write reads, extends and rewrites that manifest, as the fallback referrers index
// is; without one-at-a-time updates the second write dropped the first's layer.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { attestationLayers, attestationTag } from '../../src/core/crypto/attestation.js';
import { SLSA_PROVENANCE_V1, SPDX_DOCUMENT } from '../../src/core/crypto/predicates.js';
import { UpstreamRegistry } from '../../src/registry/artifacts.js';
import { Upstream } from '../../src/registry/client.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { bearer, initRepo, startSigningServer, type SigningServer } from './support.js';

let reg: RegistryService;
let s: SigningServer;
let work: string;
let upstream: Upstream;

before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('attest-concurrent');
  s = await startSigningServer({ upstream: reg.url });
  upstream = new Upstream({ url: reg.url });
});
after(async () => {
  upstream?.close();
  await s?.stop();
  await reg?.stop();
  await removeTempDir(work);
});

test('two attestations of one digest signed at once: the .att manifest keeps both', async () => {
  const repo = 'conc/app';
  const img = await makeImageLayout(join(work, 'img'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${reg.host}/${repo}:v1`);
  const gun = `${reg.host}/${repo}`;
  await initRepo(s, gun);
  const digest = img.manifest.digest;
  const attest = (predicateType: string, predicate: object) =>
    s.agent.post('/api/v1/signing/attest').set(bearer(s.adminToken)).send({ gun, digest, predicateType, predicate });
  const provenance = {
    buildDefinition: { buildType: 'https://ci.example.com/buildtypes/docker/v1' },
    runDetails: { builder: { id: 'https://ci.example.com/builder/v1' } },
  };
  const [a, b] = await Promise.all([
    attest(SLSA_PROVENANCE_V1, provenance),
    attest(SPDX_DOCUMENT, { spdxVersion: 'SPDX-2.3', name: 'app' }),
  ]);
  assert.equal(a.status, 201, JSON.stringify(a.body));
  assert.equal(b.status, 201, JSON.stringify(b.body));
  const att = await new UpstreamRegistry(upstream).getManifest(repo, attestationTag(digest));
  const types = attestationLayers(att!.bytes).map((l) => l.annotations?.predicateType);
  assert.deepEqual(types.sort(), [SLSA_PROVENANCE_V1, SPDX_DOCUMENT].sort());
});
