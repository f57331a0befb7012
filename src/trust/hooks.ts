// Extension points of the proxy that other modules fill in: the audit log, cosign-format
// signature verification and attestation verification. All are optional; without them the proxy
// logs, and refuses what needs the missing verifier.
import type { Verdict } from './verifier.js';
import type { SignedIdentity } from '../core/signed-identity.js';

export interface AuditEntryInput {
  actor: { id: string; name: string };
  action: string;
  outcome: 'success' | 'denied' | 'failure' | 'pending';
  gun?: string;
  role?: string;
  detail?: Record<string, string | number | boolean | string[] | null>;
}

/** Where signing events and refused pushes go (trustgate's audit log fits it: `AuditTrail`); `append` may return a promise. */
export interface AuditSink {
  append(entry: AuditEntryInput): unknown;
  /** A refusal, written at most once per actor, action and `kind` in a time window (AuditTrail.appendDenial). */
  appendDenial?(entry: AuditEntryInput, kind: Record<string, string>): unknown;
}

/**
 * Cosign-format verification, consulted for repositories whose policy accepts cosign when the
 * TUF check fails. It resolves the reference upstream and checks a `sha256-<hex>.sig` signature
 * whose identity `identity` accepts for `<gun>:<pulled>` (or `<gun>@<pulled>`); an allowing
 * verdict names the digest to serve.
 */
export interface CosignHook {
  verify(req: {
    gun: string;
    repository: string;
    reference: string;
    /** The tag or digest the client asked for (default `reference`). */
    pulled?: string;
    /** The policy rule's signedIdentity; undefined is the default. */
    identity?: SignedIdentity;
  }): Promise<Verdict>;
}

/** One attestation a policy rule requires of a pulled digest (api/policy.schema.json `require.attestations`). */
export interface AttestationRequirement {
  predicateType: string;
  /** Delegations (or `targets`) whose keys count; default any key the trust data names. */
  signers?: string[];
  /** Key IDs that count (each must also be named by the trust data). */
  keys?: string[];
  /** Dotted paths into the predicate and the JSON value each must equal. */
  conditions?: Record<string, unknown>;
}

/** The attestation check: whether `digest` has, for each requirement, an attestation that meets it. */
export type AttestationCheck =
  | { ok: true; matched: Array<{ predicateType: string; keyId: string; role: string; via: 'att' | 'referrer' }> }
  | { ok: false; unavailable?: boolean; message: string };

/**
 * Attestation verification for pulls under rules that require attestations. `onWritten` tells
 * of attestations written through trustgate, so verdicts that lacked them are dropped.
 */
export interface AttestationHook {
  verify(req: { gun: string; repository: string; digest: string; require: readonly AttestationRequirement[] }): Promise<AttestationCheck>;
  onWritten?(listener: (gun: string) => void): void;
}
