// Extension points of the proxy that other modules fill in: the audit log and cosign-format
// signature verification. Both are optional; without them the proxy logs and refuses cosign.
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
