// Writes the registry-side signatures next to an image: the cosign-format `sha256-<hex>.sig`
// attachment, a Sigstore bundle as an OCI referrer (subject = the image), and attestations (a
// DSSE envelope under `sha256-<hex>.att` and the same signature as a bundle referrer). Signing is done by
// a trustgate Signer (a key the keystore holds); the registry calls go through RegistryClient.
import { bundleToJSON } from '@sigstore/bundle';
import type { Signer } from '../core/crypto/signer.js';
import {
  OCI_CONFIG,
  OCI_MANIFEST,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  signatureArtifact,
  signatureTag,
  signPayload,
  simpleSigningPayload,
} from '../core/crypto/cosign.js';
import { OCI_EMPTY, oneAtATime, pushReferrer, type ManifestHead, type RegistryClient } from './artifacts.js';
import { BUNDLE_MEDIA_TYPE, TAG_PREDICATE, createBundle, tagStatement, type BundleOptions } from '../core/crypto/sigstore.js';
import type { Bundle } from '@sigstore/bundle';
import {
  attestationLayer,
  attestationLayers,
  attestationManifest,
  attestationStatement,
  attestationTag,
} from '../core/crypto/attestation.js';
import { ociDigest } from '../core/digest.js';

export interface CosignResult {
  tag: string;
  manifestDigest: string;
  keyId: string;
}

interface SigLayer {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/**
 * Signs the simple-signing payload for `dockerReference`@`digest` and pushes it under the
 * digest's `.sig` tag. A `.sig` manifest already there keeps its other signatures (cosign
 * appends a layer per signature); a signature over the same payload is replaced.
 */
export async function writeCosignSignature(
  reg: RegistryClient,
  repo: string,
  dockerReference: string,
  digest: string,
  signer: Signer,
): Promise<CosignResult> {
  const payload = simpleSigningPayload(dockerReference, digest);
  const sig = await signPayload(signer, payload);
  const art = signatureArtifact(digest, payload, sig);
  const tag = signatureTag(digest);
  const existing = await reg.getManifest(repo, tag);
  let manifest = art.manifest;
  let config = art.config;
  if (existing) {
    const old = JSON.parse(existing.bytes.toString('utf8')) as { layers?: SigLayer[] };
    const others = (old.layers ?? [])
      .filter((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && l.digest !== art.payloadDigest)
      .slice(0, 31);
    if (others.length > 0) {
      // Other layers' payload blobs are already in the registry: only the manifest and config change.
      const layers: SigLayer[] = [
        ...others,
        {
          mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
          digest: art.payloadDigest,
          size: payload.length,
          annotations: { [SIGNATURE_ANNOTATION]: sig },
        },
      ];
      config = Buffer.from(
        JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }),
      );
      manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: ociDigest(config), size: config.length },
          layers,
        }),
      );
    }
  }
  await reg.putBlob(repo, payload);
  await reg.putBlob(repo, config);
  const put = await reg.putManifest(repo, tag, manifest, OCI_MANIFEST);
  return { tag, manifestDigest: put.digest, keyId: signer.id };
}

export interface BundleResult {
  /** Digest of the referrer manifest. */
  manifestDigest: string;
  /** Digest of the bundle blob. */
  bundleDigest: string;
  via: 'referrers-api' | 'tag-schema';
  keyId: string;
}

/**
 * Makes a Sigstore bundle (DSSE, in-toto statement naming the image digest and tag; timestamped
 * when `opts` has a TSA) and pushes it as an OCI referrer of the image (pushBundleReferrer).
 */
export async function writeBundleReferrer(
  reg: RegistryClient,
  repo: string,
  subject: ManifestHead,
  statement: { repository: string; tag?: string; role?: string },
  signer: Signer,
  now: Date = new Date(),
  opts: BundleOptions = {},
): Promise<BundleResult> {
  const bundle = await createBundle(signer, tagStatement({ ...statement, digest: subject.digest, signedAt: now }), opts);
  return { ...(await pushBundleReferrer(reg, repo, subject, bundle, TAG_PREDICATE, now)), keyId: signer.id };
}

/**
 * Pushes a bundle as an OCI referrer of the image: artifactType = the bundle media type, the
 * bundle JSON as the single layer, an empty config, and `subject` = the image manifest.
 */
export async function pushBundleReferrer(
  reg: RegistryClient,
  repo: string,
  subject: ManifestHead,
  bundle: Bundle,
  predicateType: string,
  now: Date,
): Promise<Omit<BundleResult, 'keyId'>> {
  const bundleBytes = Buffer.from(JSON.stringify(bundleToJSON(bundle)));
  const empty = Buffer.from('{}');
  const bundleDigest = await reg.putBlob(repo, bundleBytes);
  const emptyDigest = await reg.putBlob(repo, empty);
  const annotations = { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': predicateType };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_MEDIA_TYPE,
      config: { mediaType: OCI_EMPTY, digest: emptyDigest, size: empty.length },
      layers: [{ mediaType: BUNDLE_MEDIA_TYPE, digest: bundleDigest, size: bundleBytes.length }],
      subject: { mediaType: subject.mediaType || OCI_MANIFEST, digest: subject.digest, size: subject.size },
      annotations: { ...annotations, 'org.opencontainers.image.created': now.toISOString().replace(/\.\d{3}Z$/, 'Z') },
    }),
  );
  const desc = {
    mediaType: OCI_MANIFEST,
    digest: ociDigest(manifest),
    size: manifest.length,
    artifactType: BUNDLE_MEDIA_TYPE,
    annotations,
  };
  const r = await pushReferrer(reg, repo, subject.digest, manifest, desc);
  return { manifestDigest: r.digest, bundleDigest, via: r.via };
}

export interface AttestationResult {
  predicateType: string;
  keyId: string;
  /** The cosign attachment: tag `sha256-<hex>.att` and its manifest digest. */
  cosign: { tag: string; manifestDigest: string; envelopeDigest: string };
  bundle: Omit<BundleResult, 'keyId'>;
}

/** Layers a `.att` manifest keeps: older ones beyond this are dropped as new ones are appended. */
const MAX_ATT_LAYERS = 32;

/**
 * Signs an in-toto statement about `subject` once (a DSSE envelope inside a Sigstore bundle) and
 * attaches it twice: the envelope as a layer appended to the digest's cosign `.att` manifest
 * (an identical envelope is not added again), and the bundle as an OCI referrer.
 */
export async function writeAttestation(
  reg: RegistryClient,
  repo: string,
  subject: ManifestHead,
  statement: { repository: string; predicateType: string; predicate: unknown },
  signer: Signer,
  now: Date = new Date(),
  opts: BundleOptions = {},
): Promise<AttestationResult> {
  const bundle = await createBundle(signer, attestationStatement({ ...statement, digest: subject.digest }), opts);
  const json = bundleToJSON(bundle) as {
    dsseEnvelope?: { payloadType: string; payload: string; signatures: Array<{ sig: string; keyid?: string }> };
  };
  if (!json.dsseEnvelope) throw new Error('the bundle holds no DSSE envelope');
  // The envelope as cosign writes it; the very signature the bundle carries.
  const { payloadType, payload, signatures } = json.dsseEnvelope;
  const envelope = Buffer.from(
    JSON.stringify({ payloadType, payload, signatures: signatures.map((x) => ({ keyid: x.keyid ?? '', sig: x.sig })) }),
  );
  const layer = attestationLayer(envelope, statement.predicateType);
  const tag = attestationTag(subject.digest);
  await reg.putBlob(repo, envelope);
  // Read, extended and rewritten: one attestation of this digest at a time, or one would be lost.
  let put: { digest: string } | undefined;
  await oneAtATime(`${repo}:${tag}`, async () => {
    const existing = await reg.getManifest(repo, tag);
    const others = (existing ? attestationLayers(existing.bytes).reverse() : []).filter((l) => l.digest !== layer.digest);
    const { manifest, config } = attestationManifest([...others.slice(-(MAX_ATT_LAYERS - 1)), layer]);
    await reg.putBlob(repo, config);
    put = await reg.putManifest(repo, tag, manifest, OCI_MANIFEST);
  });
  const referrer = await pushBundleReferrer(reg, repo, subject, bundle, statement.predicateType, now);
  return {
    predicateType: statement.predicateType,
    keyId: signer.id,
    cosign: { tag, manifestDigest: put!.digest, envelopeDigest: layer.digest },
    bundle: referrer,
  };
}
