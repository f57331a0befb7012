// Attestation verification for the proxy (its AttestationHook), for rules with
// `require.attestations`. Candidates are read from the digest's cosign `.att` tag (DSSE layers),
// then, if those do not meet the rule, from its referrers (Sigstore bundles; listReferrers falls
// back to the tag schema): each source newest first, those whose annotation names a required
// predicate type before the rest. At most MAX_CANDIDATES are read per pull, each at most
// MAX_ATTESTATION_BYTES. One counts only if its
// DSSE signature verifies with an ECDSA key the GUN's verified trust data names (for `targets`
// or a delegation), its statement is about this digest and of the required predicate type, and
// its predicate meets the conditions.
import { bundleFromJSON } from '@sigstore/bundle';
import { publicKeyObject } from '../core/crypto/keys.js';
import { MAX_ATTESTATION_BYTES } from '../core/crypto/predicates.js';
import {
  PREDICATE_TYPE_ANNOTATION,
  attestationLayers,
  attestationTag,
  checkStatement,
  parseEnvelope,
  unmetCondition,
  verifyEnvelope,
} from '../core/crypto/attestation.js';
import { BUNDLE_MEDIA_TYPE, verifyBundle } from '../core/crypto/sigstore.js';
import { listReferrers, type RegistryClient } from '../registry/artifacts.js';
import type { AttestationCheck, AttestationHook, AttestationRequirement } from '../trust/hooks.js';
import type { TrustService } from '../trust/service.js';
import type { ImageVerifier } from '../trust/verify-report.js';
import { trustedEcdsaKeys, type TrustedKey } from './trusted-keys.js';

/** Attestations (envelopes and bundles together) read per pull. */
export const MAX_CANDIDATES = 16;

export interface AttestationVerifierDeps {
  trust: TrustService;
  verifier: ImageVerifier;
  registry: RegistryClient;
  /** Attestations read per pull (default MAX_CANDIDATES). */
  maxCandidates?: number;
}

/** Whether a key may make an attestation for `r`: named by key ID, or held by a named signer (`ci` is `targets/ci`). */
function keyFits(r: AttestationRequirement, id: string, k: TrustedKey): string | undefined {
  if (r.keys && !r.keys.includes(id)) return undefined;
  if (!r.signers) return [...k.roles][0];
  for (const s of r.signers) {
    const role = s === 'targets' || s.startsWith('targets/') ? s : `targets/${s}`;
    if (k.roles.has(role)) return role;
  }
  return undefined;
}

interface Candidate {
  via: 'att' | 'referrer';
  /** Manifest (referrer) or blob (`.att` layer) digest to read. */
  digest: string;
  size: number;
  claimedType?: string;
}

/** A DSSE payload whose signature verified, and the key that made it. */
interface Verified {
  keyId: string;
  payloadType: string;
  payload: Buffer;
}

/** The hook, and `written` to call when trustgate itself wrote an attestation (its listeners drop cached verdicts). */
export function attestationHook(d: AttestationVerifierDeps): AttestationHook & { written(gun: string): void } {
  const cap = d.maxCandidates ?? MAX_CANDIDATES;
  const listeners: Array<(gun: string) => void> = [];

  /** Candidates of one source, newest first, those whose annotation names a wanted type before the rest. */
  async function listed(via: Candidate['via'], repository: string, digest: string, wanted: Set<string>): Promise<Candidate[]> {
    const all: Candidate[] = [];
    if (via === 'att') {
      const att = await d.registry.getManifest(repository, attestationTag(digest));
      for (const l of att ? attestationLayers(att.bytes) : [])
        all.push({ via, digest: l.digest, size: l.size, ...claimed(l.annotations?.[PREDICATE_TYPE_ANNOTATION]) });
    } else {
      // A fallback index that is not JSON lists nothing (anyone who may push can write one); an unreachable registry throws.
      const refs = await listReferrers(d.registry, repository, digest).catch((e: unknown) => {
        if (e instanceof SyntaxError) return [];
        throw e;
      });
      for (const r of (Array.isArray(refs) ? refs : []).reverse())
        if (r?.artifactType === BUNDLE_MEDIA_TYPE && typeof r.digest === 'string' && DIGEST.test(r.digest) && typeof r.size === 'number')
          all.push({ via, digest: r.digest, size: r.size, ...claimed(r.annotations?.['dev.sigstore.bundle.predicateType']) });
    }
    const preferred = (c: Candidate) => c.claimedType !== undefined && wanted.has(c.claimedType);
    return [...all.filter(preferred), ...all.filter((c) => !preferred(c))];
  }

  /** Reads and verifies one candidate against the trusted keys; the statement, or why not. */
  async function open(repository: string, c: Candidate, keys: Map<string, TrustedKey>): Promise<Verified | string> {
    if (c.size > MAX_ATTESTATION_BYTES) return `larger than ${MAX_ATTESTATION_BYTES} bytes`;
    if (c.via === 'att') {
      const blob = await d.registry.getBlob(repository, c.digest, MAX_ATTESTATION_BYTES);
      if (!blob) return 'envelope unreadable';
      const env = parseEnvelope(blob);
      if (typeof env === 'string') return env;
      const hinted = env.signatures.map((s) => s.keyid).filter((k): k is string => !!k && keys.has(k));
      for (const id of hinted.length ? hinted : keys.keys()) {
        const k = keys.get(id)!;
        const payload = verifyEnvelope(publicKeyObject(k.key), env);
        if (payload) return { keyId: id, payloadType: env.payloadType, payload };
      }
      return 'no key the trust data names verifies it';
    }
    const m = await d.registry.getManifest(repository, c.digest);
    if (!m || m.digest !== c.digest) return 'referrer manifest unreadable';
    let layer: { mediaType?: unknown; digest?: unknown; size?: unknown } | undefined;
    try {
      layer = (JSON.parse(m.bytes.toString('utf8')) as { layers?: Array<typeof layer> }).layers?.[0];
    } catch {
      return 'referrer manifest is not JSON';
    }
    if (layer?.mediaType !== BUNDLE_MEDIA_TYPE || typeof layer.digest !== 'string') return 'referrer holds no bundle';
    if (typeof layer.size !== 'number' || layer.size > MAX_ATTESTATION_BYTES) return `bundle larger than ${MAX_ATTESTATION_BYTES} bytes`;
    const blob = await d.registry.getBlob(repository, layer.digest, MAX_ATTESTATION_BYTES);
    if (!blob) return 'bundle unreadable';
    let bundle: ReturnType<typeof bundleFromJSON>;
    try {
      bundle = bundleFromJSON(JSON.parse(blob.toString('utf8')));
    } catch {
      return 'not a Sigstore bundle';
    }
    if (bundle.content.$case !== 'dsseEnvelope') return 'bundle holds no DSSE envelope';
    const material = bundle.verificationMaterial.content;
    const hint = material.$case === 'publicKey' ? material.publicKey.hint : undefined;
    for (const id of hint && keys.has(hint) ? [hint] : keys.keys()) {
      const k = keys.get(id)!;
      try {
        verifyBundle(bundle, { hint: hint ?? id, key: publicKeyObject(k.key) });
      } catch {
        continue;
      }
      const env = bundle.content.dsseEnvelope;
      return { keyId: id, payloadType: env.payloadType, payload: env.payload };
    }
    return 'no key the trust data names verifies it';
  }

  return {
    onWritten: (l) => void listeners.push(l),
    written: (gun) => listeners.forEach((l) => l(gun)),
    async verify({ gun, repository, digest, require }): Promise<AttestationCheck> {
      const wanted = new Set(require.map((r) => r.predicateType));
      // The `.att` tag is read while the trust data is checked; referrers only when it is not enough.
      const att = listed('att', repository, digest, wanted).then(
        (list) => ({ list }),
        (e: Error) => ({ error: e }),
      );
      const repo = await d.verifier.repository(gun);
      if (!repo.ok) return { ok: false, message: `attestations: the trust data of ${gun} does not verify: ${repo.message}` };
      const keys = await trustedEcdsaKeys(d.trust, gun);
      const open_ = new Set(require.map((_, i) => i));
      const matched: Extract<AttestationCheck, { ok: true }>['matched'] = [];
      const why = new Map<number, string>();
      let read = 0;
      let total = 0;
      let listedAll = true;
      for (const via of ['att', 'referrer'] as const) {
        if (open_.size === 0 || read >= cap) {
          listedAll = false;
          break;
        }
        const got =
          via === 'att'
            ? await att
            : await listed(via, repository, digest, wanted).then(
                (list) => ({ list }),
                (e: Error) => ({ error: e }),
              );
        if ('error' in got)
          return { ok: false, unavailable: true, message: `attestations of ${digest} could not be listed: ${got.error.message}` };
        total += got.list.length;
        for (const c of got.list) {
          if (open_.size === 0 || read >= cap) break;
          read++;
          let v: Verified | string;
          try {
            v = await open(repository, c, keys);
          } catch (e) {
            return { ok: false, unavailable: true, message: `an attestation of ${digest} could not be read: ${(e as Error).message}` };
          }
          for (const i of open_) {
            const r = require[i]!;
            if (typeof v === 'string') {
              if (!why.has(i) && c.claimedType === r.predicateType) why.set(i, v);
              continue;
            }
            const st = checkStatement(v.payloadType, v.payload, digest, r.predicateType);
            if (!st.ok) {
              if (!why.has(i) && (c.claimedType === r.predicateType || !st.why.startsWith('its predicate type'))) why.set(i, st.why);
              continue;
            }
            const role = keyFits(r, v.keyId, keys.get(v.keyId)!);
            if (!role) {
              if (!why.has(i))
                why.set(i, `signed by key ${v.keyId.slice(0, 12)}, which the rule's ${r.keys ? 'keys' : 'signers'} do not name`);
              continue;
            }
            const unmet = r.conditions ? unmetCondition(st.statement.predicate, r.conditions) : undefined;
            if (unmet) {
              if (!why.has(i)) why.set(i, `its predicate fails a condition: ${unmet}`);
              continue;
            }
            open_.delete(i);
            matched.push({ predicateType: r.predicateType, keyId: v.keyId, role, via: c.via });
          }
        }
      }
      if (open_.size === 0) return { ok: true, matched };
      const bound =
        read < total || !listedAll ? ` (read ${read} of ${total}${listedAll ? '' : '+'}: at most ${cap} are read per pull)` : '';
      const missing = [...open_].map((i) => {
        const r = require[i]!;
        const w = why.get(i);
        return `${r.predicateType}${w ? ` (${w})` : ''}`;
      });
      return { ok: false, message: `no valid attestation of ${digest} for ${missing.join('; ')}${bound}` };
    },
  };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const claimed = (t: string | undefined): { claimedType?: string } => (typeof t === 'string' ? { claimedType: t } : {});
