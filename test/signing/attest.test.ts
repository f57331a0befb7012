// Attestations end to end, with real parts only: a docker-registry 2.8 upstream (no referrers
// API: bundles go by the tag schema), trustgate with its verifying proxy, skopeo, and the
// `trustgate` CLI as a child process. Attestations are signed through the REST API and the CLI,
// read back and checked independently (node:crypto over DSSE PAE, @sigstore/verify), and
// required at pull by policy rules. Forged ones are written straight to the upstream: signed
// by a key the trust data does not name, about another digest (CVE-2022-35929), of another
// predicate type, failing a condition; and 100 junk attestations show the per-pull bound
// (cosign CVE-2023-46737, CVE-2024-29902), counted in the registry's own request log.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { generateSigner, type Signer } from '../../src/core/crypto/signer.js';
import {
  DSSE_MEDIA_TYPE,
  PREDICATE_TYPE_ANNOTATION,
  attestationLayer,
  attestationManifest,
  attestationStatement,
  attestationTag,
  pae,
  parseEnvelope,
  predicateValue,
  unmetCondition,
  verifyEnvelope,
} from '../../src/core/crypto/attestation.js';
import { SLSA_PROVENANCE_V1, SPDX_DOCUMENT } from '../../src/core/crypto/predicates.js';
import { BUNDLE_MEDIA_TYPE, createBundle, verifyBundle } from '../../src/core/crypto/sigstore.js';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { parsePolicy, PolicyError } from '../../src/proxy/policy.js';
import { listReferrers, UpstreamRegistry, OCI_MANIFEST } from '../../src/registry/artifacts.js';
import { pushBundleReferrer } from '../../src/registry/signatures.js';
import { Upstream } from '../../src/registry/client.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { cli } from '../cli/support.js';
import { loadApiSchemas, refUri } from '../management/openapi.js';
import { editTargets } from '../helpers/trust-edits.js';
import { addDelegation, bearer, initRepo, startSigningServer, type SigningServer } from './support.js';

const BUILDER = 'https://ci.example.com/builder/v1';
const provenance = (builder = BUILDER) => ({
  buildDefinition: { buildType: 'https://ci.example.com/buildtypes/docker/v1', externalParameters: { ref: 'refs/heads/main' } },
  runDetails: { builder: { id: builder }, metadata: { invocationId: 'run-1' } },
});

let reg: RegistryService;
let s: SigningServer;
let px: StartedProxy;
let host: string;
let work: string;
let upstream: Upstream;
let registry: UpstreamRegistry;
let policyFile: string;
let policyText: string;

before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('attest');
  const policy = (policyFile = join(work, 'policy.yaml'));
  writeFileSync(
    policy,
    (policyText = [
      'version: 1',
      'default:',
      '  mode: enforce',
      'repositories:',
      '  - pattern: "att/**"',
      '    require:',
      '      attestations:',
      `        - predicateType: ${SLSA_PROVENANCE_V1}`,
      '          conditions:',
      `            runDetails.builder.id: ${BUILDER}`,
      '  - pattern: "attci/**"',
      '    require:',
      '      attestations:',
      `        - predicateType: ${SLSA_PROVENANCE_V1}`,
      '          signers: [ci]',
      '  - pattern: "plain/**"',
      '',
    ].join('\n')),
  );
  s = await startSigningServer({ upstream: reg.url, env: { TRUSTGATE_POLICY: policy, TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true' } });
  px = await startProxy(s.tg.app, { attestations: s.tg.app.signing.attestationHook! }, { host: '127.0.0.1', port: 0 });
  host = px.url.replace(/^https?:\/\//, '');
  upstream = new Upstream({ url: reg.url });
  registry = new UpstreamRegistry(upstream);
});
after(async () => {
  upstream?.close();
  await px?.close();
  await s?.stop();
  await reg?.stop();
  await removeTempDir(work);
});

let n = 0;
/** A fresh image in the upstream, with trust data, signed as `v1` in targets. */
async function signedImage(prefix: string): Promise<{ repo: string; gun: string; digest: string; size: number }> {
  const repo = `${prefix}/app-${++n}`;
  const img = await makeImageLayout(join(work, `img-${n}`), { tag: 'v1', annotations: { n: String(n) } });
  await skopeoCopy(img.ref, `docker://${reg.host}/${repo}:v1`);
  const gun = `${host}/${repo}`;
  await initRepo(s, gun);
  const r = await post('sign', { gun, tag: 'v1', digest: img.manifest.digest });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { repo, gun, digest: img.manifest.digest, size: img.manifest.size };
}

const post = (path: string, body: unknown, token = s.adminToken) =>
  s.agent
    .post(`/api/v1/signing/${path}`)
    .set(bearer(token))
    .send(body as object);

const attest = (gun: string, digest: string, predicateType = SLSA_PROVENANCE_V1, predicate: object = provenance(), extra = {}) =>
  post('attest', { gun, digest, predicateType, predicate, ...extra });

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
async function pull(repo: string, ref = 'v1'): Promise<{ status: number; body: any }> {
  const r = await fetch(`${px.url}/v2/${repo}/manifests/${ref}`, { headers: { Accept: ACCEPT } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}
function deniedFor(p: { status: number; body: any }): { reason: string; message: string } {
  assert.equal(p.status, 403, JSON.stringify(p.body));
  const e = p.body.errors[0];
  assert.equal(e.code, 'DENIED');
  return { reason: e.detail.reason, message: e.message };
}

async function targetsSigner(gun: string): Promise<Signer> {
  const keyId = (await s.agent.get('/api/v1/signing/public-key').query({ gun }).set(bearer(s.adminToken)).set('Accept', 'application/json'))
    .body.keyId as string;
  const [signer] = await s.editor.heldSigners(gun, [keyId]);
  return signer!;
}

/** A DSSE envelope as cosign stores it, over `statement`, by `signer` (through the same bundle code trustgate signs with). */
async function envelope(signer: Signer, statement: Buffer): Promise<Buffer> {
  const { bundleToJSON } = await import('@sigstore/bundle');
  const j = bundleToJSON(await createBundle(signer, statement)) as {
    dsseEnvelope: { payloadType: string; payload: string; signatures: unknown };
  };
  return Buffer.from(JSON.stringify(j.dsseEnvelope));
}

/** Replaces the digest's `.att` manifest in the upstream with these envelopes (each with its annotation's predicate type). */
async function putAtt(repo: string, digest: string, layers: Array<{ envelope: Buffer; predicateType: string }>): Promise<void> {
  for (const l of layers) await registry.putBlob(repo, l.envelope);
  const { manifest, config } = attestationManifest(layers.map((l) => attestationLayer(l.envelope, l.predicateType)));
  await registry.putBlob(repo, config);
  await registry.putManifest(repo, attestationTag(digest), manifest, OCI_MANIFEST);
}

/** Blob GETs the registry logged for a repository so far (docker-registry logs every request it answers). */
function blobReads(repo: string): number {
  const log = readFileSync(reg.logFile, 'utf8');
  const re = new RegExp(`http\\.request\\.method=GET .*http\\.request\\.uri="/v2/${repo.replace(/[/.]/g, '\\$&')}/blobs/`, 'g');
  return (log.match(re) ?? []).length;
}

describe('signing attestations', () => {
  test('REST: the envelope goes under sha256-<hex>.att and as a bundle referrer; both verify independently; audited', async () => {
    const { repo, gun, digest } = await signedImage('att');
    const res = await attest(gun, digest);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.cosign.tag, attestationTag(digest));
    assert.equal(res.body.bundle.via, 'tag-schema', 'docker-registry 2.8 has no referrers API');
    const ajv = loadApiSchemas();
    const schema = ajv.getSchema(refUri('api/signing.json#/$defs/AttestResponse'))!;
    assert.ok(schema(res.body), `the answer matches openapi.yaml: ${ajv.errorsText(schema.errors)}`);
    const pem = (await s.agent.get('/api/v1/signing/public-key').query({ gun }).set(bearer(s.adminToken)).set('Accept', 'application/json'))
      .body as { pem: string; keyId: string };
    assert.equal(res.body.keyId, pem.keyId);

    // The .att manifest as cosign lays it out: DSSE layers annotated with the predicate type.
    const att = await registry.getManifest(repo, attestationTag(digest));
    const m = JSON.parse(att!.bytes.toString('utf8'));
    assert.equal(m.layers.length, 1);
    assert.equal(m.layers[0].mediaType, DSSE_MEDIA_TYPE);
    assert.equal(m.layers[0].annotations[PREDICATE_TYPE_ANNOTATION], SLSA_PROVENANCE_V1);
    const env = parseEnvelope((await registry.getBlob(repo, m.layers[0].digest, 1 << 20))!);
    assert.ok(typeof env !== 'string');
    // Independently: ECDSA over DSSE's PAE with the exported PEM (node:crypto alone).
    const payload = Buffer.from(env.payload, 'base64');
    const { createVerify } = await import('node:crypto');
    const v = createVerify('sha256').update(pae(env.payloadType, payload));
    assert.ok(v.verify({ key: pem.pem, dsaEncoding: 'der' }, Buffer.from(env.signatures[0]!.sig, 'base64')));
    const st = JSON.parse(payload.toString('utf8'));
    assert.equal(st._type, 'https://in-toto.io/Statement/v1');
    assert.deepEqual(st.subject, [{ name: gun, digest: { sha256: digest.slice(7) } }]);
    assert.equal(st.predicateType, SLSA_PROVENANCE_V1);
    assert.equal(st.predicate.runDetails.builder.id, BUILDER);

    // The bundle, found by the referrers tag schema, verifies with @sigstore/verify.
    const refs = await listReferrers(registry, repo, digest);
    const ref = refs.find(
      (r) => r.artifactType === BUNDLE_MEDIA_TYPE && r.annotations?.['dev.sigstore.bundle.predicateType'] === SLSA_PROVENANCE_V1,
    );
    assert.ok(ref, JSON.stringify(refs));
    const rm = JSON.parse((await registry.getManifest(repo, ref.digest))!.bytes.toString('utf8'));
    assert.equal(rm.subject.digest, digest);
    const bundle = bundleFromJSON(JSON.parse((await registry.getBlob(repo, rm.layers[0].digest, 1 << 20))!.toString('utf8')));
    const verified = verifyBundle(bundle, { hint: pem.keyId, key: pem.pem });
    assert.equal(verified.statement.predicateType, SLSA_PROVENANCE_V1);

    const audit = await s.parts.audit.query({ gun, action: 'attestation.sign' });
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.detail?.digest, digest);

    // A second attestation is appended, as cosign appends.
    assert.equal((await attest(gun, digest, SPDX_DOCUMENT, { spdxVersion: 'SPDX-2.3', name: 'app' })).status, 201);
    const m2 = JSON.parse((await registry.getManifest(repo, attestationTag(digest)))!.bytes.toString('utf8'));
    assert.deepEqual(
      m2.layers.map((l: any) => l.annotations[PREDICATE_TYPE_ANNOTATION]),
      [SLSA_PROVENANCE_V1, SPDX_DOCUMENT],
    );
  });

  test('CLI: trustgate attest signs a predicate file, and the pull it was missing for is admitted', async () => {
    const { repo, gun, digest } = await signedImage('att');
    assert.equal(deniedFor(await pull(repo)).reason, 'attestation-missing');
    const file = join(work, `prov-${n}.json`);
    writeFileSync(file, JSON.stringify(provenance()));
    const r = await cli(s.tg.url, s.adminToken).run(['attest', `${gun}@${digest}`, '--predicate', file, '--type', 'slsaprovenance1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`attested .*@${digest} \\(${SLSA_PROVENANCE_V1.replace(/[./]/g, '\\$&')}\\)`));
    // The cached denial was dropped when trustgate wrote the attestation.
    assert.equal((await pull(repo)).status, 200);
    // Bad input is refused before anything is sent (exit 2).
    writeFileSync(file, JSON.stringify({ buildDefinition: { buildType: 'x' } }));
    const bad = await cli(s.tg.url, s.adminToken).run(['attest', `${gun}@${digest}`, '--predicate', file, '--type', 'slsaprovenance1']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /runDetails\.builder\.id/);
  });

  test('bad input: 400 naming the field, and nothing is pushed', async () => {
    const { repo, gun, digest } = await signedImage('att');
    const cases: Array<[object, string, RegExp]> = [
      [
        { gun, digest, predicateType: SLSA_PROVENANCE_V1, predicate: { ...provenance(), pad: 'x'.repeat(600 * 1024) } },
        'predicate',
        /at most 524288/,
      ],
      [{ gun, digest, predicateType: SLSA_PROVENANCE_V1, predicate: [1, 2] }, 'predicate', /JSON object/],
      [{ gun, digest, predicateType: 'not a uri', predicate: provenance() }, 'predicateType', /URI/],
      [
        { gun, digest, predicateType: SLSA_PROVENANCE_V1, predicate: { buildDefinition: { buildType: 'x' }, builder: { id: BUILDER } } },
        'predicate',
        /runDetails\.builder\.id/,
      ],
      [{ gun, digest, predicateType: SPDX_DOCUMENT, predicate: { name: 'x' } }, 'predicate', /spdxVersion/],
      [{ gun, digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance(), cosign: true }, 'cosign', /unknown field/],
      [{ gun, digest: 'sha256:xyz', predicateType: SLSA_PROVENANCE_V1, predicate: provenance() }, 'digest', /sha256/],
    ];
    for (const [body, field, message] of cases) {
      const r = await post('attest', body);
      assert.equal(r.status, 400, `${field}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.field, field);
      assert.match(r.body.error.message, message);
    }
    // A digest the upstream does not have.
    const unknown = `sha256:${'0'.repeat(64)}`;
    const r = await attest(gun, unknown);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'DIGEST_UNKNOWN');
    // A token without sign access to the GUN.
    assert.equal(
      (await post('attest', { gun, digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance() }, s.token(['reader']))).status,
      403,
    );
    for (const d of [digest, unknown]) {
      assert.equal(await registry.getManifest(repo, attestationTag(d)), undefined, 'no .att was pushed');
      assert.deepEqual(await listReferrers(registry, repo, d), [], 'no referrer was pushed');
    }
    assert.equal((await s.parts.audit.query({ gun, action: 'attestation.sign' })).length, 0);
  });
});

describe('pulls under require.attestations', () => {
  test('present and valid: admitted (tag and digest); missing: DENIED naming the predicate type', async () => {
    const a = await signedImage('att');
    assert.equal((await attest(a.gun, a.digest)).status, 201);
    assert.equal((await pull(a.repo)).status, 200);
    assert.equal((await pull(a.repo, a.digest)).status, 200);
    const b = await signedImage('att');
    const d = deniedFor(await pull(b.repo));
    assert.equal(d.reason, 'attestation-missing');
    assert.match(d.message, new RegExp(`no valid attestation of ${b.digest} for ${SLSA_PROVENANCE_V1}`));
    // A rule without the requirement serves the same kind of image.
    const c = await signedImage('plain');
    assert.equal((await pull(c.repo)).status, 200);
  });

  test('the attestation and its bundle referrer are pullable through the proxy as artifacts of the signed digest', async () => {
    const a = await signedImage('att');
    const res = await attest(a.gun, a.digest);
    const att = await pull(a.repo, attestationTag(a.digest));
    assert.equal(att.status, 200, JSON.stringify(att.body));
    assert.equal(att.body.layers[0].mediaType, DSSE_MEDIA_TYPE);
    const ref = await pull(a.repo, res.body.bundle.manifestDigest);
    assert.equal(ref.status, 200, JSON.stringify(ref.body));
    assert.equal(ref.body.subject.digest, a.digest);
  });

  test('signed by a key the trust data does not name: DENIED', async () => {
    const a = await signedImage('att');
    const stranger = generateSigner('ecdsa');
    const st = attestationStatement({ repository: a.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance() });
    await putAtt(a.repo, a.digest, [{ envelope: await envelope(stranger, st), predicateType: SLSA_PROVENANCE_V1 }]);
    const head = (await registry.headManifest(a.repo, a.digest))!;
    await pushBundleReferrer(registry, a.repo, head, await createBundle(stranger, st), SLSA_PROVENANCE_V1, new Date());
    const d = deniedFor(await pull(a.repo));
    assert.equal(d.reason, 'attestation-missing');
    assert.match(d.message, /no key the trust data names verifies it/);
  });

  test('made for another digest (CVE-2022-35929): DENIED, by .att and by referrer', async () => {
    const a = await signedImage('att');
    const b = await signedImage('att');
    // An attestation of A's digest, signed with a key B's trust data names, attached to B both ways.
    const signer = await targetsSigner(b.gun);
    const ofA = attestationStatement({ repository: b.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance() });
    await putAtt(b.repo, b.digest, [{ envelope: await envelope(signer, ofA), predicateType: SLSA_PROVENANCE_V1 }]);
    const headB = (await registry.headManifest(b.repo, b.digest))!;
    await pushBundleReferrer(registry, b.repo, headB, await createBundle(signer, ofA), SLSA_PROVENANCE_V1, new Date());
    const d = deniedFor(await pull(b.repo));
    assert.equal(d.reason, 'attestation-missing');
    assert.match(d.message, new RegExp(`about another digest, not ${b.digest}`));
    assert.equal((await listReferrers(registry, b.repo, b.digest)).length, 1, 'the referrer was there to be read');
  });

  test('of another predicate type: DENIED, even when the layer annotation claims SLSA provenance', async () => {
    const a = await signedImage('att');
    // A genuine SPDX attestation, and one whose annotation lies about its type.
    assert.equal((await attest(a.gun, a.digest, SPDX_DOCUMENT, { spdxVersion: 'SPDX-2.3', name: 'app' })).status, 201);
    assert.equal(deniedFor(await pull(a.repo)).reason, 'attestation-missing');
    const spdx = attestationStatement({ repository: a.gun, digest: a.digest, predicateType: SPDX_DOCUMENT, predicate: provenance() });
    await putAtt(a.repo, a.digest, [{ envelope: await envelope(await targetsSigner(a.gun), spdx), predicateType: SLSA_PROVENANCE_V1 }]);
    await px.cache.invalidate(a.gun); // written behind trustgate's back
    const d = deniedFor(await pull(a.repo));
    assert.match(d.message, new RegExp(`its predicate type is ${SPDX_DOCUMENT.replace(/[./]/g, '\\$&')}`));
  });

  test('failing a condition (another builder): DENIED, naming the condition', async () => {
    const a = await signedImage('att');
    assert.equal((await attest(a.gun, a.digest, SLSA_PROVENANCE_V1, provenance('https://evil.example.com/builder'))).status, 201);
    const d = deniedFor(await pull(a.repo));
    assert.match(d.message, /fails a condition: runDetails\.builder\.id is not "https:\/\/ci\.example\.com\/builder\/v1"/);
  });

  test('signers: [ci] counts only the ci delegation’s key; dropping the delegation denies again', async () => {
    const a = await signedImage('attci');
    const ciKey = await addDelegation(s, a.gun, 'targets/ci');
    assert.equal((await attest(a.gun, a.digest)).status, 201, 'signed with the targets key');
    assert.match(deniedFor(await pull(a.repo)).message, /which the rule's signers do not name/);
    const ci = s.token([`signer:${a.gun}`], [ciKey]);
    const r = await post(
      'attest',
      { gun: a.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance(), role: 'targets/ci' },
      ci,
    );
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.keyId, ciKey);
    assert.equal((await pull(a.repo)).status, 200);
    assert.equal((await pull(a.repo)).status, 200, 'again, from the cache');
    // A trust change drops the cached verdict: without the delegation its key counts no more.
    await editTargets({ trust: s.tg.app.trust, keys: s.tg.app.keys }, a.gun, 'targets', (b) => {
      b.delegations.roles = b.delegations.roles.filter((x) => x.name !== 'targets/ci');
      delete b.delegations.keys[ciKey];
    });
    assert.equal(deniedFor(await pull(a.repo)).reason, 'attestation-missing');
  });

  test('keys: [id] counts only that key, and only while the trust data names it', async () => {
    const a = await signedImage('attkey');
    const ciKey = await addDelegation(s, a.gun, 'targets/ci');
    const stranger = generateSigner('ecdsa');
    const rule = (keys: string[]) =>
      `  - pattern: "attkey/**"\n    require:\n      attestations:\n        - predicateType: ${SLSA_PROVENANCE_V1}\n          keys: [${keys.join(', ')}]\n`;
    writeFileSync(policyFile, policyText + rule([ciKey, stranger.id]));
    assert.ok(px.policy.reload(), 'the policy with keys took effect');
    try {
      // Signed with the targets key, which the rule does not list.
      assert.equal((await attest(a.gun, a.digest)).status, 201);
      assert.match(deniedFor(await pull(a.repo)).message, /which the rule's keys do not name/);
      // Listed by the rule, but not named by the trust data: it counts no more than any other key.
      const st = attestationStatement({ repository: a.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance() });
      await putAtt(a.repo, a.digest, [{ envelope: await envelope(stranger, st), predicateType: SLSA_PROVENANCE_V1 }]);
      await px.cache.invalidate(a.gun);
      assert.match(deniedFor(await pull(a.repo)).message, /no key the trust data names verifies it/);
      // The listed key the trust data names (the ci delegation's).
      const ci = s.token([`signer:${a.gun}`], [ciKey]);
      const r = await post(
        'attest',
        { gun: a.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance(), role: 'targets/ci' },
        ci,
      );
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal((await pull(a.repo)).status, 200);
    } finally {
      writeFileSync(policyFile, policyText);
      px.policy.reload();
    }
  });

  test('the bound: of 100 junk attestations at most 16 are read, and the verdict is predictable', async () => {
    const a = await signedImage('att');
    const stranger = generateSigner('ecdsa');
    const junk: Array<{ envelope: Buffer; predicateType: string }> = [];
    for (let i = 0; i < 100; i++) {
      const st = attestationStatement({
        repository: a.gun,
        digest: a.digest,
        predicateType: SLSA_PROVENANCE_V1,
        predicate: { ...provenance(), i },
      });
      junk.push({ envelope: await envelope(stranger, st), predicateType: SLSA_PROVENANCE_V1 });
    }
    const good = {
      envelope: await envelope(
        await targetsSigner(a.gun),
        attestationStatement({ repository: a.gun, digest: a.digest, predicateType: SLSA_PROVENANCE_V1, predicate: provenance() }),
      ),
      predicateType: SLSA_PROVENANCE_V1,
    };
    // The valid one first (oldest): newest first, the 100 junk ones fill the cap, so it is never read.
    await putAtt(a.repo, a.digest, [good, ...junk]);
    let before = blobReads(a.repo);
    const d = deniedFor(await pull(a.repo));
    assert.match(d.message, /read 16 of 101\+: at most 16 are read per pull/);
    const reads = blobReads(a.repo) - before;
    assert.ok(reads <= 16, `${reads} blob reads`);
    assert.ok(reads >= 1, 'the registry log counts blob reads');

    // The valid one appended last (newest): admitted after one read.
    await putAtt(a.repo, a.digest, [...junk, good]);
    await px.cache.invalidate(a.gun);
    before = blobReads(a.repo);
    assert.equal((await pull(a.repo)).status, 200);
    assert.equal(blobReads(a.repo) - before, 1);
  });
});

describe('policy and pure checks', () => {
  const rule = (a: unknown) => `version: 1\nrepositories:\n  - pattern: x\n    require:\n      attestations: ${JSON.stringify(a)}\n`;
  test('a SLSA v1 condition outside buildDefinition/runDetails is refused, naming where the builder is', () => {
    assert.throws(
      () => parsePolicy(rule([{ predicateType: SLSA_PROVENANCE_V1, conditions: { 'builder.id': BUILDER } }]), 'p'),
      (e: Error) => e instanceof PolicyError && /runDetails\.builder\.id/.test(e.message),
    );
    assert.throws(
      () => parsePolicy(rule([{ predicateType: SLSA_PROVENANCE_V1, signers: ['ci'], keys: ['a'.repeat(64)] }]), 'p'),
      PolicyError,
    );
    assert.throws(() => parsePolicy(rule([{ predicateType: 'not a uri' }]), 'p'), PolicyError);
    const ok = parsePolicy(rule([{ predicateType: SLSA_PROVENANCE_V1, conditions: { 'runDetails.builder.id': BUILDER } }]), 'p');
    assert.deepEqual(ok.rules[0]!.attestations, [{ predicateType: SLSA_PROVENANCE_V1, conditions: { 'runDetails.builder.id': BUILDER } }]);
  });

  test('PAE matches the DSSE specification; paths read own properties only; envelopes verify only with their key', () => {
    assert.equal(
      pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(),
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
    const p = { runDetails: { builder: { id: BUILDER } }, list: [{ a: 1 }] };
    assert.equal(predicateValue(p, 'runDetails.builder.id'), BUILDER);
    assert.equal(predicateValue(p, 'list.0.a'), 1);
    assert.equal(predicateValue(p, 'runDetails.constructor'), undefined);
    assert.equal(predicateValue(p, '__proto__.polluted'), undefined);
    assert.equal(unmetCondition(p, { 'list.0': { a: 1 } }), undefined);
    assert.match(unmetCondition(p, { 'runDetails.builder.id': 'x' })!, /is not "x"/);
    const k = generateSigner('ecdsa');
    const other = generateSigner('ecdsa');
    return (async () => {
      const env = parseEnvelope(await envelope(k, Buffer.from('{}')));
      assert.ok(typeof env !== 'string');
      const { publicKeyObject } = await import('../../src/core/crypto/keys.js');
      assert.ok(verifyEnvelope(publicKeyObject(k.key), env));
      assert.equal(verifyEnvelope(publicKeyObject(other.key), env), undefined);
      assert.equal(verifyEnvelope(publicKeyObject(k.key), { ...env, payloadType: 'text/plain' }), undefined, 'the type is signed too');
    })();
  });
});
