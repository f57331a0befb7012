// cosign-format ("simple signing") image signatures, written as the registry attachment that
// cosign and containers/image read: tag `sha256-<hex>.sig` holding an OCI manifest with one
// simple-signing layer whose annotation carries the signature. Pure: building and checking
// the bytes; pushing them is the registry client's job.
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import type { Signer } from './signer.js';
import { ociDigest } from '../digest.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const COSIGN_TYPE = 'cosign container image signature';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** The tag cosign stores a digest's signatures under: `sha256:abc…` → `sha256-abc….sig`. */
export function signatureTag(digest: string): string {
  if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  return `${digest.replace(':', '-')}.sig`;
}

export function isSignatureTag(tag: string): boolean {
  return /^sha256-[0-9a-f]{64}\.(sig|att|sbom)$/.test(tag);
}

/** The simple-signing payload that binds a reference to a manifest digest. */
export function simpleSigningPayload(dockerReference: string, digest: string, optional?: Record<string, unknown>): Buffer {
  if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  const body: Record<string, unknown> = {
    critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': digest }, type: COSIGN_TYPE },
  };
  if (optional) body.optional = optional;
  return Buffer.from(JSON.stringify(body));
}

/** ECDSA signatures in cosign are ASN.1 DER; TUF signers give raw r||s. */
export function rawEcdsaToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  const int = (b: Buffer) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.subarray(i);
    if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.INTEGER, false, forge.util.binary.raw.encode(v));
  };
  const seq = forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.SEQUENCE, true, [
    int(raw.subarray(0, half)),
    int(raw.subarray(half)),
  ]);
  return Buffer.from(forge.asn1.toDer(seq).getBytes(), 'binary');
}

/** Signs a payload cosign-style with an ECDSA P-256 trustgate signer; returns base64 DER. */
export async function signPayload(signer: Signer, payload: Buffer): Promise<string> {
  if (!signer.key.keytype.startsWith('ecdsa')) throw new Error('cosign-format signatures need an ECDSA key');
  return rawEcdsaToDer(await signer.sign(payload)).toString('base64');
}

export interface SignatureArtifact {
  payload: Buffer;
  payloadDigest: string;
  config: Buffer;
  configDigest: string;
  manifest: Buffer;
  manifestDigest: string;
  tag: string;
}

/** The attachment manifest and config exactly as cosign (and skopeo) write them. */
export function signatureArtifact(imageDigest: string, payload: Buffer, signatureB64: string): SignatureArtifact {
  const payloadDigest = ociDigest(payload);
  const config = Buffer.from(
    JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [payloadDigest] } }),
  );
  const configDigest = ociDigest(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: [
        {
          mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
          digest: payloadDigest,
          size: payload.length,
          annotations: { [SIGNATURE_ANNOTATION]: signatureB64 },
        },
      ],
    }),
  );
  return { payload, payloadDigest, config, configDigest, manifest, manifestDigest: ociDigest(manifest), tag: signatureTag(imageDigest) };
}

export interface CosignCheck {
  ok: boolean;
  reason?: string;
}

/**
 * Verifies one simple-signing layer on its own terms (node:crypto only, no cosign code): the
 * DER ECDSA signature over the payload bytes, the payload's type, and that it names `digest`.
 */
export function verifySimpleSigning(
  publicKey: KeyObject | string,
  payload: Buffer,
  signatureB64: string,
  digest: string,
  dockerReference?: string,
): CosignCheck {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  let ok = false;
  try {
    ok = nodeVerify('sha256', payload, { key, dsaEncoding: 'der' }, Buffer.from(signatureB64, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) return { ok: false, reason: 'cosign signature does not verify with the trusted key' };
  let body: { critical?: { type?: string; image?: Record<string, string>; identity?: Record<string, string> } };
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'cosign payload is not JSON' };
  }
  if (body.critical?.type !== COSIGN_TYPE) return { ok: false, reason: 'cosign payload has the wrong type' };
  if (body.critical.image?.['docker-manifest-digest'] !== digest) return { ok: false, reason: `cosign payload signs another digest` };
  if (dockerReference !== undefined && body.critical.identity?.['docker-reference'] !== dockerReference) {
    return { ok: false, reason: 'cosign payload names another repository' };
  }
  return { ok: true };
}

/** Pulls the signature layers out of an attachment manifest. */
export function signatureLayers(manifest: Buffer): { digest: string; size: number; signature: string }[] {
  const m = JSON.parse(manifest.toString('utf8')) as {
    layers?: { mediaType?: string; digest?: string; size?: number; annotations?: Record<string, string> }[];
  };
  return (m.layers ?? [])
    .filter((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && typeof l.digest === 'string' && l.annotations?.[SIGNATURE_ANNOTATION])
    .slice(0, 32) // a hostile registry may serve endless signatures
    .map((l) => ({ digest: l.digest!, size: l.size ?? 0, signature: l.annotations![SIGNATURE_ANNOTATION]! }));
}
