// RFC 3161 timestamps on Sigstore bundles (TRUSTGATE_TSA_URL), against a real TSA built on
// `openssl ts` (test/helpers/tsa.ts) and a real docker-registry upstream: a bundle made through
// the signing API passes a stock @sigstore/verify Verifier with only the transparency-log
// threshold lowered, given the public key and the TSA's chain; a TSA that is down, slow, answers
// garbage, timestamps another message or signs outside TRUSTGATE_TSA_CA refuses the request with
// nothing published and no bundle pushed.
import assert from 'node:assert/strict';
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import { AsnConvert } from '@peculiar/asn1-schema';
import { TimeStampResp } from '@peculiar/asn1-tsp';
import YAML from 'yaml';
import { BUNDLE_MEDIA_TYPE, verifyBundle } from '../../src/core/crypto/sigstore.js';
import { TimestampError, tsaChainFromPem } from '../../src/core/crypto/timestamp.js';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { requestTimestamp } from '../../src/tsa/client.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { startTsa, type TestTsa } from '../helpers/tsa.js';
import { unchanged } from '../helpers/unchanged.js';
import { bearer, initRepo, startSigningServer, type SigningServer } from './support.js';
import { loadApiSchemas, refUri } from '../management/openapi.js';

const openapi = YAML.parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, { responses: Record<string, { $ref: string }> }>>;
  components: { responses: Record<string, { content: Record<string, { schema: { $ref: string } }> }> };
};
const ajv = loadApiSchemas();

/** The answer is documented for POST `path` at its status, and matches the documented schema. */
function documented(path: string, res: { status: number; body: unknown }): void {
  const ref = openapi.paths[path]!.post!.responses[String(res.status)]?.$ref;
  assert.ok(ref, `openapi.yaml documents no ${res.status} for POST ${path}`);
  const schema = openapi.components.responses[ref.split('/').pop()!]!.content['application/json']!.schema.$ref;
  const v = ajv.getSchema(refUri(schema))!;
  assert.ok(v(res.body), ajv.errorsText(v.errors));
}

let reg: RegistryService;
let tsa: TestTsa;
let tmp: string;
const servers: SigningServer[] = [];

before(async () => {
  reg = await startRegistry();
  tsa = await startTsa();
  tmp = await makeTempDir('signing-tsa');
});
after(async () => {
  for (const s of servers) await s.stop();
  await tsa?.stop();
  await reg?.stop();
  await removeTempDir(tmp);
});

/** A signing server on the shared upstream; `tsa` sets TRUSTGATE_TSA_URL and `ca` TRUSTGATE_TSA_CA. */
async function server(env: { tsaUrl?: string; ca?: string } = {}): Promise<SigningServer> {
  const s = await startSigningServer({
    upstream: reg.url,
    env: {
      ...(env.tsaUrl ? { TRUSTGATE_TSA_URL: env.tsaUrl } : {}),
      ...(env.ca ? { TRUSTGATE_TSA_CA: env.ca } : {}),
    },
  });
  servers.push(s);
  return s;
}

let n = 0;
async function pushed(s: SigningServer): Promise<{ repo: string; gun: string; image: ImageLayout }> {
  const repo = `ci/tsa-${process.pid}-${++n}`;
  const image = await makeImageLayout(join(tmp, `img-${n}`), { tag: 'v1', annotations: { n: String(n) } });
  await skopeoCopy(image.ref, `docker://${reg.host}/${repo}:v1`);
  const gun = `registry.example.com:5000/${repo}`;
  await initRepo(s, gun);
  return { repo, gun, image };
}

const sign = (s: SigningServer, body: Record<string, unknown>) => s.agent.post('/api/v1/signing/sign').set(bearer(s.adminToken)).send(body);

/** The bundles the registry holds for a digest (found through the referrers tag schema, as docker-registry 2.8 has no referrers API). */
async function bundlesOf(repo: string, digest: string): Promise<Bundle[]> {
  const get = (path: string, accept: string) => fetch(`${reg.url}/v2/${repo}${path}`, { headers: { Accept: accept } });
  const index = await get(`/manifests/${digest.replace(':', '-')}`, 'application/vnd.oci.image.index.v1+json');
  if (index.status === 404) return [];
  assert.equal(index.status, 200);
  const refs = ((await index.json()) as { manifests: Array<{ digest: string; artifactType?: string }> }).manifests;
  const out: Bundle[] = [];
  for (const r of refs.filter((d) => d.artifactType === BUNDLE_MEDIA_TYPE)) {
    const m = (await (await get(`/manifests/${r.digest}`, 'application/vnd.oci.image.manifest.v1+json')).json()) as {
      layers: Array<{ digest: string }>;
    };
    out.push(bundleFromJSON(await (await get(`/blobs/${m.layers[0]!.digest}`, '*/*')).json()));
  }
  return out;
}

async function publicKey(s: SigningServer, gun: string): Promise<{ pem: string; keyId: string }> {
  const res = await s.agent.get('/api/v1/signing/public-key').query({ gun }).set(bearer(s.adminToken)).set('Accept', 'application/json');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { pem: string; keyId: string };
}

/**
 * A stock @sigstore/verify Verifier as a third party would set it up: a trusted root holding only
 * the TSA's chain (leaf first, as a trusted root lists it), the public key by its hint, and every
 * setting at its default except the transparency-log threshold.
 */
function stockVerify(bundle: Bundle, key: { pem: string; keyId: string }): void {
  const chain = tsaChainFromPem(tsa.chainPem);
  const root = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    ctlogs: [],
    certificateAuthorities: [],
    timestampAuthorities: [{ certChain: { certificates: chain.map((rawBytes) => ({ rawBytes })) } }],
  };
  const keys = {
    [key.keyId]: {
      rawBytes: createPublicKey(key.pem).export({ type: 'spki', format: 'der' }),
      keyDetails: 'PKIX_ECDSA_P256_SHA_256',
      validFor: undefined,
    },
  };
  new Verifier(toTrustMaterial(root as never, keys as never), { tlogThreshold: 0 }).verify(toSignedEntity(bundle));
}

describe('bundles timestamped by an RFC 3161 TSA', () => {
  test('a bundle signed through the API with TRUSTGATE_TSA_URL passes a default @sigstore/verify Verifier', async () => {
    const s = await server({ tsaUrl: tsa.url, ca: tsa.chainFile });
    const { repo, gun, image } = await pushed(s);
    const digest = image.manifest.digest;
    const res = await sign(s, { gun, tag: 'v1', digest, bundle: true });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const [bundle, ...more] = await bundlesOf(repo, digest);
    assert.ok(bundle);
    assert.equal(more.length, 0);
    const key = await publicKey(s, gun);
    stockVerify(bundle, key);

    // What was timestamped is the DSSE signature, and the token is this TSA's, made just now.
    const stamps = bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps ?? [];
    assert.equal(stamps.length, 1);
    const resp = AsnConvert.parse(stamps[0]!.signedTimestamp, TimeStampResp);
    assert.equal(resp.status.status, 0);
    assert.equal(bundle.content.$case, 'dsseEnvelope');
    const sig = bundle.content.$case === 'dsseEnvelope' ? bundle.content.dsseEnvelope.signatures[0]!.sig : Buffer.alloc(0);
    const { SignedData } = await import('@peculiar/asn1-cms');
    const { TSTInfo } = await import('@peculiar/asn1-tsp');
    const info = AsnConvert.parse(
      AsnConvert.parse(resp.timeStampToken!.content, SignedData).encapContentInfo.eContent!.single!.buffer,
      TSTInfo,
    );
    assert.deepEqual(Buffer.from(info.messageImprint.hashedMessage.buffer), createHash('sha256').update(sig).digest());
    assert.ok(Math.abs(info.genTime.getTime() - Date.now()) < 120_000, `genTime ${info.genTime.toISOString()}`);

    // trustgate's own check: with the chain a timestamp is required; with the key only it is left aside.
    assert.equal(
      verifyBundle(bundle, { hint: key.keyId, key: key.pem }, { tsaChain: tsaChainFromPem(tsa.chainPem) }).statement._type,
      'https://in-toto.io/Statement/v1',
    );
    assert.ok(verifyBundle(bundle, { hint: key.keyId, key: key.pem }).statement);
    // Another TSA's chain does not vouch for it.
    assert.throws(
      () => verifyBundle(bundle, { hint: key.keyId, key: key.pem }, { tsaChain: tsaChainFromPem(tsa.otherChainPem) }),
      /timestamp/,
    );
  });

  test('regression: both bundles of a batch signing two tags of one digest stay in the fallback index, each timestamped', async () => {
    const s = await server({ tsaUrl: tsa.url });
    const a = await pushed(s);
    const before = tsa.requests;
    const res = await s.agent
      .post('/api/v1/signing/batch')
      .set(bearer(s.adminToken))
      .send({
        gun: a.gun,
        items: [
          { tag: 'v1', digest: a.image.manifest.digest },
          { tag: 'latest', digest: a.image.manifest.digest },
        ],
        bundle: true,
      });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(tsa.requests - before, 2);
    const bundles = await bundlesOf(a.repo, a.image.manifest.digest);
    assert.equal(bundles.length, 2);
    const key = await publicKey(s, a.gun);
    for (const b of bundles) stockVerify(b, key);
  });

  test('without a TSA the default Verifier refuses the bundle (TIMESTAMP_ERROR: expected 1 timestamps, got 0)', async () => {
    const s = await server();
    const { repo, gun, image } = await pushed(s);
    const res = await sign(s, { gun, tag: 'v1', digest: image.manifest.digest, bundle: true });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const [bundle] = await bundlesOf(repo, image.manifest.digest);
    assert.ok(bundle);
    const key = await publicKey(s, gun);
    assert.throws(
      () => stockVerify(bundle, key),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'TIMESTAMP_ERROR');
        assert.match(e.message, /expected 1 timestamps, got 0/);
        return true;
      },
    );
    assert.ok(verifyBundle(bundle, { hint: key.keyId, key: key.pem }).statement, 'the key-only check still accepts it');
  });
});

describe('a TSA that fails refuses the request: nothing published, no bundle pushed', () => {
  /** Signs with a bundle and checks that the refusal changed nothing, in trustgate or in the registry. */
  async function refused(s: SigningServer, status: number, message: RegExp): Promise<void> {
    const { repo, gun, image } = await pushed(s);
    const res = await unchanged(s, gun, () => sign(s, { gun, tag: 'v1', digest: image.manifest.digest, bundle: true, cosign: true }));
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'TSA_ERROR');
    assert.match(res.body.error.message, message);
    assert.match(res.body.error.message, /nothing was signed/);
    documented('/signing/sign', res);
    assert.deepEqual(await bundlesOf(repo, image.manifest.digest), []);
    const sigTag = await fetch(`${reg.url}/v2/${repo}/manifests/${image.manifest.digest.replace(':', '-')}.sig`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(sigTag.status, 404, 'no cosign signature either');
  }

  test('a TSA that is down: 503 TSA_ERROR', async () => {
    const s = await server({ tsaUrl: `http://127.0.0.1:${await freePort()}/tsr` });
    await refused(s, 503, /cannot reach the TSA at http:\/\/127\.0\.0\.1:\d+\/tsr: ECONNREFUSED/);
  });

  test('a TSA that answers HTTP 500: 503 TSA_ERROR', async () => {
    const s = await server({ tsaUrl: tsa.url });
    tsa.mode = 'http-500';
    try {
      await refused(s, 503, /answered HTTP 500/);
    } finally {
      tsa.mode = 'ok';
    }
  });

  test('a TSA that answers garbage: 502 TSA_ERROR', async () => {
    const s = await server({ tsaUrl: tsa.url });
    tsa.mode = 'garbage';
    try {
      await refused(s, 502, /not an RFC 3161 TimeStampResp/);
    } finally {
      tsa.mode = 'ok';
    }
  });

  test('a genuine reply over another message imprint is refused: 502 TSA_ERROR', async () => {
    const s = await server({ tsaUrl: tsa.url });
    tsa.mode = 'other-imprint';
    try {
      await refused(s, 502, /message imprint/);
    } finally {
      tsa.mode = 'ok';
    }
  });

  test('a token that does not verify with TRUSTGATE_TSA_CA is refused: 502 TSA_ERROR', async () => {
    const other = join(tmp, 'other-chain.pem');
    await writeFile(other, tsa.otherChainPem);
    const s = await server({ tsaUrl: tsa.url, ca: other });
    await refused(s, 502, /does not verify with its configured certificate chain/);
  });
});

describe('the TSA client', () => {
  test('a TSA that does not answer in time is unavailable, within the timeout', async () => {
    tsa.mode = 'hang';
    try {
      const t0 = Date.now();
      await assert.rejects(requestTimestamp(tsa.url, Buffer.from('sig'), 300), (e: unknown) => {
        assert.ok(e instanceof TimestampError);
        assert.equal(e.unavailable, true);
        assert.match(e.message, /did not answer within 300 ms/);
        return true;
      });
      assert.ok(Date.now() - t0 < 5_000);
    } finally {
      tsa.mode = 'ok';
    }
  });

  for (const [mode, why, message] of [
    ['other-nonce', 'a signed reply with another nonce', /does not carry the request's nonce/],
    ['other-imprint', 'a signed reply over another imprint', /message imprint is not the signature's SHA-256/],
    ['sha1', 'a rejection status (the TSA takes no SHA-1 imprint)', /the TSA refused the request: status rejection/],
  ] as const) {
    test(`refused: ${why}`, async () => {
      tsa.mode = mode;
      try {
        await assert.rejects(requestTimestamp(tsa.url, Buffer.from('sig')), (e: unknown) => {
          assert.ok(e instanceof TimestampError);
          assert.equal(e.unavailable, false);
          assert.match(e.message, message);
          return true;
        });
      } finally {
        tsa.mode = 'ok';
      }
    });
  }

  test("a good reply is the TSA's DER TimeStampResp, granted", async () => {
    const reply = await requestTimestamp(tsa.url, Buffer.from('sig'));
    const resp = AsnConvert.parse(reply, TimeStampResp);
    assert.equal(resp.status.status, 0);
    assert.ok(resp.timeStampToken);
  });
});

describe('configuration', () => {
  test('TRUSTGATE_TSA_URL and TRUSTGATE_TSA_CA are checked at start', async () => {
    const base = { TRUSTGATE_KEY_PASSPHRASE: 'x' };
    assert.deepEqual(loadConfig({ ...base, TRUSTGATE_TSA_URL: tsa.url, TRUSTGATE_TSA_CA: tsa.chainFile }).tsa, {
      url: tsa.url,
      chain: tsaChainFromPem(tsa.chainPem),
    });
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig({ ...base, ...env });
        return [];
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.problems;
      }
    };
    assert.match(problems({ TRUSTGATE_TSA_CA: tsa.chainFile }).join(), /TRUSTGATE_TSA_CA needs TRUSTGATE_TSA_URL/);
    assert.match(problems({ TRUSTGATE_TSA_URL: 'ftp://tsa.example/' }).join(), /TRUSTGATE_TSA_URL must be an http\(s\) URL/);
    const caOnly = join(tmp, 'ca-only.pem');
    const caOnlyPem = tsa.chainPem.slice(tsa.chainPem.indexOf('-----END CERTIFICATE-----') + 26);
    await writeFile(caOnly, caOnlyPem);
    assert.match(problems({ TRUSTGATE_TSA_URL: tsa.url, TRUSTGATE_TSA_CA: caOnly }).join(), /no certificate for time stamping/);
    const leafOnly = join(tmp, 'leaf-only.pem');
    await writeFile(leafOnly, tsa.chainPem.slice(0, tsa.chainPem.indexOf('-----END CERTIFICATE-----') + 26));
    assert.match(
      problems({ TRUSTGATE_TSA_URL: tsa.url, TRUSTGATE_TSA_CA: leafOnly }).join(),
      /does not lead from .*own TSA to a self-signed root/,
    );
    // Root first in the file: read leaf first all the same.
    const reversed = join(tmp, 'root-first.pem');
    await writeFile(reversed, caOnlyPem + tsa.chainPem.slice(0, tsa.chainPem.indexOf('-----END CERTIFICATE-----') + 26));
    assert.deepEqual(
      loadConfig({ ...base, TRUSTGATE_TSA_URL: tsa.url, TRUSTGATE_TSA_CA: reversed }).tsa?.chain,
      tsaChainFromPem(tsa.chainPem),
    );
    assert.match(problems({ TRUSTGATE_TSA_URL: tsa.url, TRUSTGATE_TSA_CA: join(tmp, 'missing.pem') }).join(), /TRUSTGATE_TSA_CA: .*ENOENT/);
  });
});
