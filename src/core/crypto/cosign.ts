// cosign-format ("simple signing") image signatures, written as the registry attachment that
// cosign and containers/image read: tag `sha256-<hex>.sig` holding an OCI manifest with one
// simple-signing layer whose annotation carries the signature. Pure: building and checking
// the bytes; pushing them is the registry client's job.
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import type { Signer } from './signer.js';
import { ociDigest } from '../digest.js';
import { compareUtf8 } from '../json/canonical.js';
import { duplicateKey } from '../json/duplicates.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const COSIGN_TYPE = 'cosign container image signature';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Standard base64 with its padding, as Go's StdEncoding decodes it. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The tag cosign stores a digest's signatures under: `sha256:abc…` → `sha256-abc….sig`. */
export function signatureTag(digest: string): string {
  if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  return `${digest.replace(':', '-')}.sig`;
}

export function isSignatureTag(tag: string): boolean {
  return /^sha256-[0-9a-f]{64}\.(sig|att|sbom)$/.test(tag);
}

/** A JSON string as Go's encoding/json writes it: also escapes <, >, & and U+2028/2029. */
const goString = (s: string): string =>
  JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * The simple-signing payload that binds a reference to a manifest digest, byte for byte as cosign
 * writes it (Go's encoding/json of sigstore's SimpleContainerImage): `critical` then `optional`,
 * fields in struct order, and `"optional": null` when there are no annotations (a map's keys sorted).
 */
export function simpleSigningPayload(dockerReference: string, digest: string, annotations?: Record<string, string>): Buffer {
  if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  const critical =
    `{"identity":{"docker-reference":${goString(dockerReference)}},` +
    `"image":{"docker-manifest-digest":${goString(digest)}},"type":${goString(COSIGN_TYPE)}}`;
  const optional = annotations
    ? `{${Object.keys(annotations)
        .sort(compareUtf8)
        .map((k) => `${goString(k)}:${goString(annotations[k]!)}`)
        .join(',')}}`
    : 'null';
  return Buffer.from(`{"critical":${critical},"optional":${optional}}`);
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
  /** The identity the payload claims, once the signature verified and the payload parsed. */
  dockerReference?: string;
}

export interface SimpleSigningClaims {
  dockerReference: string;
  digest: string;
  creator?: string;
  timestamp?: number;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObject = (v: Json | undefined): v is { [k: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An object with exactly `fields` (containers/image's ParanoidUnmarshalJSONObjectExactFields), or why not. */
function exactFields(v: Json | undefined, where: string, fields: string[]): string | undefined {
  if (!isObject(v)) return `${where} is not a JSON object`;
  const extra = Object.keys(v).filter((k) => !fields.includes(k));
  if (extra.length) return `${where} has unexpected field ${JSON.stringify(extra[0])}`;
  const missing = fields.find((f) => !(f in v));
  return missing ? `${where} lacks field ${JSON.stringify(missing)}` : undefined;
}

/** A manifest digest as go-digest parses it (registered algorithm, lower-case hex of its length). */
const MANIFEST_DIGEST = /^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

/**
 * Reads a simple-signing payload by containers/image's rules (signature/internal/sigstore_payload.go):
 * no duplicate keys; exactly `critical` and `optional` at the top; `optional` null or an object
 * whose `creator` is a string and `timestamp` an integer (other keys ignored); exactly `identity`,
 * `image` and `type` in `critical`, the cosign type, and exactly one field in `identity` and `image`.
 */
export function parseSimpleSigning(payload: Buffer): { ok: true; claims: SimpleSigningClaims } | { ok: false; reason: string } {
  const no = (reason: string) => ({ ok: false as const, reason: `cosign payload ${reason}` });
  const text = payload.toString('utf8');
  let body: Json;
  try {
    body = JSON.parse(text) as Json;
  } catch {
    return no('is not JSON');
  }
  const dup = duplicateKey(text);
  if (dup) return no(`has a duplicate key ${dup}`);
  const top = exactFields(body, 'the top level', ['critical', 'optional']);
  if (top) return no(top);
  const { critical, optional } = body as { critical: Json; optional: Json };
  const claims: Partial<SimpleSigningClaims> = {};
  if (optional !== null) {
    if (!isObject(optional)) return no('optional is neither null nor an object');
    const { creator, timestamp } = optional;
    if (creator !== undefined && creator !== null) {
      if (typeof creator !== 'string') return no('optional.creator is not a string');
      claims.creator = creator;
    }
    if (timestamp !== undefined && timestamp !== null) {
      if (typeof timestamp !== 'number' || !Number.isInteger(timestamp)) return no('optional.timestamp is not an integer');
      claims.timestamp = timestamp;
    }
  }
  const crit = exactFields(critical, 'critical', ['identity', 'image', 'type']);
  if (crit) return no(crit);
  const { identity, image, type } = critical as { identity: Json; image: Json; type: Json };
  if (type !== COSIGN_TYPE) return no('has the wrong type');
  const img = exactFields(image, 'critical.image', ['docker-manifest-digest']);
  if (img) return no(img);
  const digest = (image as { 'docker-manifest-digest': Json })['docker-manifest-digest'];
  if (typeof digest !== 'string' || !MANIFEST_DIGEST.test(digest)) return no('has an invalid docker-manifest-digest');
  const id = exactFields(identity, 'critical.identity', ['docker-reference']);
  if (id) return no(id);
  const ref = (identity as { 'docker-reference': Json })['docker-reference'];
  if (typeof ref !== 'string') return no('has a docker-reference that is not a string');
  return { ok: true, claims: { ...claims, dockerReference: ref, digest } };
}

/**
 * Verifies one simple-signing layer on its own terms (node:crypto only, no cosign code): the
 * DER ECDSA signature over the payload bytes, the payload read strictly (parseSimpleSigning), that
 * it names `digest`, and, when given, that its identity is `identity` (or passes that test).
 */
export function verifySimpleSigning(
  publicKey: KeyObject | string,
  payload: Buffer,
  signatureB64: string,
  digest: string,
  identity?: string | ((dockerReference: string) => boolean),
): CosignCheck {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  let ok = false;
  try {
    ok = BASE64.test(signatureB64) && nodeVerify('sha256', payload, { key, dsaEncoding: 'der' }, Buffer.from(signatureB64, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) return { ok: false, reason: 'cosign signature does not verify with the trusted key' };
  const parsed = parseSimpleSigning(payload);
  if (!parsed.ok) return { ok: false, reason: parsed.reason };
  const { dockerReference } = parsed.claims;
  if (parsed.claims.digest !== digest) return { ok: false, reason: `cosign payload signs another digest` };
  const accepted = typeof identity === 'string' ? dockerReference === identity : identity ? identity(dockerReference) : true;
  if (!accepted) return { ok: false, reason: `cosign payload names another identity (${dockerReference})`, dockerReference };
  return { ok: true, dockerReference };
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
