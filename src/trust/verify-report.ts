// The verify answer for REST clients and admission controllers: the proxy's verification
// service (src/trust/verifier.ts, the same code that decides pulls) asked about an image
// reference, with its verdict turned into a self-contained report: verdict, digest, the roles
// that signed with their key IDs, versions and expiries, and the reason when it fails.
import type { FailureReason, TargetRequirement, VerifiedRepo, VerifyFailure } from '../core/tuf/verify.js';
import type { Verdict as ProxyVerdict } from './verifier.js';

/** The part of the proxy's Verifier that signing uses. */
export interface ImageVerifier {
  repository(gun: string): Promise<VerifiedRepo | VerifyFailure>;
  verifyTag(gun: string, tag: string, req?: TargetRequirement): Promise<ProxyVerdict>;
  verifyDigest(gun: string, digest: string, req?: TargetRequirement): Promise<ProxyVerdict>;
}

export interface RoleEvidence {
  role: string;
  version: number;
  expires: string;
  /** Key IDs whose valid signatures on this role's file count. */
  keyIds: string[];
}

export interface VerifyReport {
  verdict: 'signed' | 'denied';
  image: string;
  gun: string;
  tag?: string;
  digest?: string;
  size?: number;
  /** For a digest: the tags it is signed for. */
  tags?: string[];
  /** Roles that list the image with this digest, lookup order first. */
  roles: RoleEvidence[];
  /** Key IDs that signed it (in those roles). */
  keyIds: string[];
  versions: Record<string, number>;
  expiries: Record<string, string>;
  /** Until when the verdict may be relied on. */
  validUntil?: string;
  reason?: FailureReason;
  failedRole?: string;
  message?: string;
  checkedAt: string;
}

/**
 * Verifies `gun` at a tag, a digest, or both (the tag must then be signed as that digest).
 * The verdict is the proxy verifier's; the report adds per-role key IDs from the same verified
 * repository.
 */
export async function verifyImage(
  v: ImageVerifier,
  image: string,
  gun: string,
  ref: { tag?: string; digest?: string },
  req: TargetRequirement = {},
): Promise<VerifyReport> {
  let verdict: ProxyVerdict;
  if (ref.tag) verdict = await v.verifyTag(gun, ref.tag, req);
  else verdict = await v.verifyDigest(gun, ref.digest!, req);
  const ev = verdict.evidence;
  const base = {
    image,
    gun,
    ...(ref.tag ? { tag: ref.tag } : {}),
    versions: { ...(ev.versions ?? {}) },
    expiries: { ...(ev.expiries ?? {}) },
    checkedAt: ev.checkedAt,
  };
  if (verdict.ok && ref.tag && ref.digest && verdict.digest !== ref.digest) {
    return {
      ...base,
      verdict: 'denied',
      digest: ref.digest,
      roles: [],
      keyIds: [],
      reason: 'digest-mismatch',
      ...(verdict.role ? { failedRole: verdict.role } : {}),
      message: `tag ${ref.tag} is signed as ${verdict.digest}, not ${ref.digest}`,
    };
  }
  if (!verdict.ok) {
    return {
      ...base,
      verdict: 'denied',
      ...(ref.digest ? { digest: ref.digest } : verdict.digest ? { digest: verdict.digest } : {}),
      roles: [],
      keyIds: [],
      ...(verdict.reason ? { reason: verdict.reason } : {}),
      ...(verdict.role ? { failedRole: verdict.role } : {}),
      ...(verdict.message ? { message: verdict.message } : {}),
    };
  }
  const repo = await v.repository(gun);
  const roles: RoleEvidence[] = (ev.roles ?? []).map((r) => {
    const vr = repo.ok ? repo.roles.get(r) : undefined;
    return {
      role: r,
      version: vr?.version ?? ev.versions?.[r] ?? 0,
      expires: vr?.expires ?? ev.expiries?.[r] ?? '',
      keyIds: vr ? [...vr.signers] : [],
    };
  });
  return {
    ...base,
    verdict: 'signed',
    digest: verdict.digest!,
    ...(verdict.length !== undefined ? { size: verdict.length } : {}),
    ...(ev.tags ? { tags: ev.tags } : {}),
    roles,
    keyIds: [...verdict.signers],
    ...(verdict.expiresAtMs !== undefined ? { validUntil: new Date(verdict.expiresAtMs).toISOString() } : {}),
  };
}
