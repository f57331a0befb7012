// Sigstore bundles for image digests, made by @sigstore/sign with a Signer backed by a key
// trustgate holds: an in-toto statement about the image in a DSSE envelope. There is no Fulcio
// certificate and no Rekor entry: trust rests on the public key, as with `cosign sign --key`.
// With a Timestamper (an RFC 3161 TSA, src/tsa/) the signature also gets a timestamp, which
// @sigstore/verify's default threshold asks for. Verification uses @sigstore/verify.
import { createPublicKey, type KeyObject } from 'node:crypto';
// @sigstore/sign is loaded on the first bundle made: most starts never make one, and it is slow to load.
import type { Bundle, Signer as SigstoreSigner, Witness } from '@sigstore/sign';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import { publicKeyObject } from './keys.js';
import type { Signer } from './signer.js';
import { rawEcdsaToDer } from './cosign.js';
import { TimestampError } from './timestamp.js';

export const IN_TOTO_STATEMENT = 'https://in-toto.io/Statement/v1';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const TAG_PREDICATE = 'https://trustgate.dev/attestations/signed-tag/v1';
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

export interface TagStatementInput {
  repository: string;
  digest: string;
  tag?: string;
  role?: string;
  signedAt?: Date;
}

/** An in-toto statement saying which image (by digest) trustgate signed, and for which tag. */
export function tagStatement(i: TagStatementInput): Buffer {
  const hex = /^sha256:([0-9a-f]{64})$/.exec(i.digest)?.[1];
  if (!hex) throw new Error(`not a sha256 digest: ${i.digest}`);
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT,
      subject: [{ name: i.repository, digest: { sha256: hex } }],
      predicateType: TAG_PREDICATE,
      predicate: {
        ...(i.tag ? { tag: i.tag } : {}),
        ...(i.role ? { role: i.role } : {}),
        signedAt: (i.signedAt ?? new Date()).toISOString(),
      },
    }),
  );
}

function publicPem(signer: Signer): string {
  return publicKeyObject(signer.key).export({ type: 'spki', format: 'pem' }).toString();
}

/** Adapts a trustgate Signer to the @sigstore/sign Signer interface (DER ECDSA signatures). */
export function sigstoreSigner(signer: Signer): SigstoreSigner {
  const pem = publicPem(signer);
  return {
    sign: async (data: Buffer) => {
      const raw = await signer.sign(data);
      const signature = signer.key.keytype.startsWith('ecdsa') ? rawEcdsaToDer(raw) : raw;
      return { signature, key: { $case: 'publicKey', publicKey: pem, hint: signer.id } };
    },
  };
}

/** Gets an RFC 3161 timestamp over a DSSE signature: the DER TimeStampResp a bundle embeds. */
export type Timestamper = (signature: Buffer) => Promise<Buffer>;

export interface BundleOptions {
  timestamp?: Timestamper;
  /** The TSA's chain (DER, timeStamping certificate first): a timestamped bundle must verify with it before it is returned. */
  tsaChain?: Buffer[];
}

/** Signs an in-toto statement into a Sigstore bundle (DSSE, public-key verification material, and a timestamp when asked). */
export async function createBundle(signer: Signer, statement: Buffer, opts: BundleOptions = {}): Promise<Bundle> {
  const { DSSEBundleBuilder } = await import('@sigstore/sign');
  const stamp = opts.timestamp;
  const witnesses: Witness[] = stamp
    ? [
        {
          // @sigstore/verify checks the timestamp's imprint against the envelope's first signature.
          testify: async (content) => {
            if (content.$case !== 'dsseEnvelope') throw new Error('a bundle without a DSSE envelope');
            return { rfc3161Timestamps: [{ signedTimestamp: await stamp(content.dsseEnvelope.signatures[0]!.sig) }] };
          },
        },
      ]
    : [];
  const builder = new DSSEBundleBuilder({ signer: sigstoreSigner(signer), witnesses });
  const bundle = await builder.create({ data: statement, type: IN_TOTO_PAYLOAD_TYPE });
  if (stamp && opts.tsaChain) {
    try {
      verifyBundle(bundle, { hint: signer.id, key: publicKeyObject(signer.key) }, { tsaChain: opts.tsaChain });
    } catch (e) {
      throw new TimestampError(`the TSA's timestamp does not verify with its configured certificate chain: ${(e as Error).message}`);
    }
  }
  return bundle;
}

const EMPTY_TRUSTED_ROOT = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};

/**
 * Verifies a bundle with @sigstore/verify against one trusted public key (by its hint, the TUF
 * key ID), requiring no transparency log. With `tsaChain` (DER, timeStamping certificate first)
 * it also requires a timestamp by that TSA, as a default verifier does; without, timestamps are
 * not looked at. Returns the statement.
 */
export function verifyBundle(
  bundle: Bundle,
  trusted: { hint: string; key: KeyObject | string },
  opts: { tsaChain?: Buffer[] } = {},
): { statement: Record<string, unknown> } {
  const key = typeof trusted.key === 'string' ? createPublicKey(trusted.key) : trusted.key;
  const root = opts.tsaChain
    ? { ...EMPTY_TRUSTED_ROOT, timestampAuthorities: [{ certChain: { certificates: opts.tsaChain.map((rawBytes) => ({ rawBytes })) } }] }
    : EMPTY_TRUSTED_ROOT;
  const material = toTrustMaterial(
    root as never,
    {
      [trusted.hint]: {
        rawBytes: key.export({ type: 'spki', format: 'der' }),
        keyDetails: 'PKIX_ECDSA_P256_SHA_256' as never,
        validFor: undefined,
      },
    } as never,
  );
  const verifier = new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: opts.tsaChain ? 1 : 0 });
  const entity = toSignedEntity(bundle);
  // Key only: a timestamp that cannot be checked without its TSA's chain is left aside, not refused.
  verifier.verify(opts.tsaChain ? entity : { ...entity, timestamps: [] });
  if (bundle.content.$case !== 'dsseEnvelope') throw new Error('bundle holds no DSSE envelope');
  const payload = bundle.content.dsseEnvelope.payload;
  return { statement: JSON.parse(payload.toString('utf8')) as Record<string, unknown> };
}
