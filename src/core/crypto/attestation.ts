// in-toto attestations about an image digest: the statement, its DSSE envelope as cosign stores it
// under `sha256-<hex>.att` (one layer per attestation), and the checks a verifier makes before an
// attestation counts: the DSSE signature over PAE (node:crypto), the subject digest and the
// predicate type (cosign once skipped both: CVE-2022-35929), and field conditions on the predicate.
// Pure: pushing and fetching are the registry client's job.
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { ociDigest } from '../digest.js';
import { OCI_CONFIG, OCI_MANIFEST, SIGNATURE_ANNOTATION } from './cosign.js';
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT as IN_TOTO_STATEMENT_V1 } from './sigstore.js';

/** What cosign wrote before in-toto 1.0; still read. */
const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
/** The layer annotation cosign writes (and filters on) for an attestation's predicate type. */
export const PREDICATE_TYPE_ANNOTATION = 'predicateType';

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** The `sha256-<hex>.att` tag cosign stores a digest's attestations under. */
export function attestationTag(digest: string): string {
  const hex = DIGEST.exec(digest)?.[1];
  if (!hex) throw new Error(`not a sha256 digest: ${digest}`);
  return `sha256-${hex}.att`;
}

/** An in-toto Statement v1 about one image digest, named by its repository. */
export function attestationStatement(i: { repository: string; digest: string; predicateType: string; predicate: unknown }): Buffer {
  const hex = DIGEST.exec(i.digest)?.[1];
  if (!hex) throw new Error(`not a sha256 digest: ${i.digest}`);
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT_V1,
      subject: [{ name: i.repository, digest: { sha256: hex } }],
      predicateType: i.predicateType,
      predicate: i.predicate,
    }),
  );
}

/** DSSE's pre-authentication encoding: what the signature covers. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

export interface DsseEnvelope {
  payloadType: string;
  payload: string;
  signatures: Array<{ keyid?: string; sig: string }>;
}

/** The layer blob and the manifest of a `.att` tag holding `layers` (each an envelope already pushed). */
export interface AttestationLayer {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export function attestationLayer(envelope: Buffer, predicateType: string): AttestationLayer {
  // cosign leaves the signature annotation empty on attestations: the signature is inside the envelope.
  return {
    mediaType: DSSE_MEDIA_TYPE,
    digest: ociDigest(envelope),
    size: envelope.length,
    annotations: { [SIGNATURE_ANNOTATION]: '', [PREDICATE_TYPE_ANNOTATION]: predicateType },
  };
}

/** The `.att` manifest (cosign's layout: an image config listing the layers as its diff_ids) and that config. */
export function attestationManifest(layers: AttestationLayer[]): { manifest: Buffer; config: Buffer } {
  const config = Buffer.from(
    JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: ociDigest(config), size: config.length },
      layers,
    }),
  );
  return { manifest, config };
}

/** The attestation layers of a `.att` manifest, newest (last appended) first; malformed entries dropped. */
export function attestationLayers(manifest: Buffer): AttestationLayer[] {
  let m: { layers?: unknown };
  try {
    m = JSON.parse(manifest.toString('utf8')) as { layers?: unknown };
  } catch {
    return [];
  }
  if (!isObj(m) || !Array.isArray(m.layers)) return [];
  return (m.layers as unknown[])
    .filter(
      (l): l is AttestationLayer =>
        isObj(l) && l.mediaType === DSSE_MEDIA_TYPE && typeof l.digest === 'string' && DIGEST.test(l.digest) && typeof l.size === 'number',
    )
    .reverse();
}

export type StatementCheck = { ok: true; statement: Record<string, unknown> } | { ok: false; why: string };

/** Parses an envelope blob (bounded by the caller) into its fields, or says why not. */
export function parseEnvelope(bytes: Buffer): DsseEnvelope | string {
  let e: unknown;
  try {
    e = JSON.parse(bytes.toString('utf8'));
  } catch {
    return 'the envelope is not JSON';
  }
  if (!isObj(e) || typeof e.payloadType !== 'string' || typeof e.payload !== 'string' || !Array.isArray(e.signatures))
    return 'not a DSSE envelope';
  const signatures = (e.signatures as unknown[])
    .filter((s): s is { keyid?: string; sig: string } => isObj(s) && typeof s.sig === 'string')
    .slice(0, 8);
  return { payloadType: e.payloadType, payload: e.payload, signatures };
}

/**
 * Whether one of the envelope's signatures verifies with `publicKey` (ECDSA P-256, DER, SHA-256)
 * over PAE(payloadType, payload); the payload bytes when it does.
 */
export function verifyEnvelope(publicKey: KeyObject | string, env: DsseEnvelope): Buffer | undefined {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  const payload = Buffer.from(env.payload, 'base64');
  const signed = pae(env.payloadType, payload);
  for (const s of env.signatures) {
    try {
      if (nodeVerify('sha256', signed, { key, dsaEncoding: 'der' }, Buffer.from(s.sig, 'base64'))) return payload;
    } catch {
      // not a signature of this key type
    }
  }
  return undefined;
}

/**
 * Checks a verified payload: an in-toto statement (v1, or cosign's older v0.1) whose subjects
 * include `digest` and whose predicate type is `predicateType`. Nothing else in the statement
 * is trusted before this passes.
 */
export function checkStatement(payloadType: string, payload: Buffer, digest: string, predicateType: string): StatementCheck {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE) return { ok: false, why: `payload type ${payloadType.slice(0, 80)} is not in-toto` };
  let st: unknown;
  try {
    st = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, why: 'the statement is not JSON' };
  }
  if (!isObj(st) || (st._type !== IN_TOTO_STATEMENT_V1 && st._type !== IN_TOTO_STATEMENT_V01))
    return { ok: false, why: 'not an in-toto statement' };
  if (st.predicateType !== predicateType)
    return { ok: false, why: `its predicate type is ${String(st.predicateType).slice(0, 200)}, not ${predicateType}` };
  const hex = DIGEST.exec(digest)?.[1];
  const subjects = Array.isArray(st.subject) ? st.subject : [];
  if (!hex || !subjects.some((s) => isObj(s) && isObj(s.digest) && s.digest.sha256 === hex))
    return { ok: false, why: `it is about another digest, not ${digest}` };
  return { ok: true, statement: st };
}

/**
 * The value at a dotted path inside the predicate (`runDetails.builder.id`; a number steps into
 * a list), own properties only, or undefined.
 */
export function predicateValue(predicate: unknown, path: string): unknown {
  let v: unknown = predicate;
  for (const part of path.split('.')) {
    if (Array.isArray(v) && /^(0|[1-9][0-9]{0,5})$/.test(part)) v = v[Number(part)];
    else if (isObj(v) && Object.hasOwn(v, part)) v = v[part];
    else return undefined;
  }
  return v;
}

/** Same JSON value (objects compared key by key, whatever the order). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
  }
  return false;
}

/** The first condition the predicate does not meet (`path`: expected), or undefined when it meets all. */
export function unmetCondition(predicate: unknown, conditions: Readonly<Record<string, unknown>>): string | undefined {
  for (const [path, expected] of Object.entries(conditions)) {
    if (!sameJson(predicateValue(predicate, path), expected)) return `${path} is not ${JSON.stringify(expected)}`;
  }
  return undefined;
}
