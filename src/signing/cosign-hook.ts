// Cosign-format verification for the proxy (its CosignHook), for repositories whose policy
// accepts cosign signatures: the reference is resolved in the upstream, the digest's
// `sha256-<hex>.sig` attachment is read, and a simple-signing layer must verify (node:crypto,
// src/core/crypto/cosign.ts) with an ECDSA key that the GUN's verified trust data names for
// `targets` or one of its delegations, name this digest, and claim an identity that the rule's
// signedIdentity accepts for the image as pulled (src/core/signed-identity.ts). So cosign trust
// follows TUF trust: a key stops counting when the trust data drops it, and a signature pushed by
// anyone else is just bytes.
import { publicKeyObject } from '../core/crypto/keys.js';
import { fail } from '../core/tuf/verify.js';
import type { CosignHook } from '../trust/hooks.js';
import type { Verdict } from '../trust/verifier.js';
import type { TrustService } from '../trust/service.js';
import { signatureLayers, signatureTag, verifySimpleSigning } from '../core/crypto/cosign.js';
import type { RegistryClient } from '../registry/artifacts.js';
import type { ImageVerifier } from '../trust/verify-report.js';
import { identityMatcher, identityName } from '../core/signed-identity.js';
import { trustedEcdsaKeys, type TrustedKey } from './trusted-keys.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_PAYLOAD = 64 * 1024;

export interface CosignVerifierDeps {
  trust: TrustService;
  verifier: ImageVerifier & { failure(gun: string, reference: string, f: ReturnType<typeof fail>): Verdict };
  registry: RegistryClient;
  now?: () => number;
}

/** The role a key signs as: `targets`, else the first delegation that lists it. */
const firstRole = (k: TrustedKey) => [...k.roles][0]!;

export function cosignHook(d: CosignVerifierDeps): CosignHook {
  const now = d.now ?? Date.now;
  return {
    async verify({ gun, repository, reference, pulled = reference, identity }): Promise<Verdict> {
      const refuse = (reason: Parameters<typeof fail>[0], message: string) => d.verifier.failure(gun, reference, fail(reason, message));
      // The trust data must verify before any of its keys are believed.
      const repo = await d.verifier.repository(gun);
      if (!repo.ok) return refuse(repo.reason, `cosign: ${repo.message}`);
      const head = await d.registry.headManifest(repository, reference);
      if (!head) return refuse('not-signed', `cosign: ${repository}:${reference} is not in the upstream`);
      const digest = DIGEST.test(reference) ? reference : head.digest;
      if (!DIGEST.test(digest)) return refuse('not-signed', `cosign: ${reference} has no sha256 digest`);
      const sig = await d.registry.getManifest(repository, signatureTag(digest));
      if (!sig) return refuse('not-signed', `cosign: no cosign signature for ${digest}`);
      const keys = await trustedEcdsaKeys(d.trust, gun);
      // The image as the client named it: the GUN is the repository's public name.
      const intended = `${gun}${pulled.includes(':') ? '@' : ':'}${pulled}`;
      const accepts = identityMatcher(identity, intended);
      let claimed: string | undefined;
      for (const layer of signatureLayers(sig.bytes)) {
        if (layer.size > MAX_PAYLOAD) continue;
        const payload = await d.registry.getBlob(repository, layer.digest, MAX_PAYLOAD);
        if (!payload) continue;
        for (const [id, k] of keys) {
          const r = verifySimpleSigning(publicKeyObject(k.key), payload, layer.signature, digest, accepts);
          if (!r.ok) {
            claimed ??= r.dockerReference;
            continue;
          }
          return {
            ok: true,
            digest,
            length: head.size,
            role: firstRole(k),
            signers: [id],
            expiresAtMs: repo.expiresAtMs,
            evidence: {
              gun,
              reference,
              via: 'cosign',
              roles: [firstRole(k)],
              versions: repo.versions,
              expiries: repo.expiries,
              checkedAt: new Date(now()).toISOString(),
            },
          };
        }
      }
      // A trusted key's payload may still be long: its name is cut for the answer.
      const shown = claimed && (claimed.length > 256 ? `${claimed.slice(0, 256)}…` : claimed);
      const why = shown
        ? `; a trusted signature names ${shown}, which signedIdentity ${identityName(identity)} does not accept for ${intended}`
        : '';
      return refuse('not-signed', `cosign: no signature on ${digest} verifies with a key the trust data of ${gun} names${why}`);
    },
  };
}
