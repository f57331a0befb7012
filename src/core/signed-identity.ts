// Which identity a signature may claim for the image being pulled: containers/image's
// `signedIdentity` (containers-policy.json(5); signature/policy_reference_match.go), compared on
// references parsed and normalized by docker-reference.ts. Pure: no I/O.
import {
  DOMAIN_NAME_RE,
  DOMAIN_RE,
  isNameOnly,
  parseNamed,
  parseNormalizedNamed,
  referenceString,
  type DockerReference,
} from './docker-reference.js';

export type SignedIdentity =
  | { type: 'matchExact' }
  | { type: 'matchRepoDigestOrExact' }
  | { type: 'matchRepository' }
  | { type: 'exactReference'; dockerReference: string }
  | { type: 'exactRepository'; dockerRepository: string }
  | { type: 'remapIdentity'; prefix: string; signedPrefix: string };

const tryParse = (s: string): DockerReference | undefined => {
  try {
    return parseNormalizedNamed(s);
  } catch {
    return undefined;
  }
};

/** Why `identity` cannot be used (as containers/image refuses it when loading a policy), or undefined. */
export function identityProblem(identity: SignedIdentity): string | undefined {
  const parses = (what: string, s: string): string | undefined => {
    try {
      parseNormalizedNamed(s);
      return undefined;
    } catch (e) {
      return `${what} ${JSON.stringify(s)} is not a docker reference: ${(e as Error).message}`;
    }
  };
  switch (identity.type) {
    case 'exactReference': {
      const bad = parses('dockerReference', identity.dockerReference);
      if (bad) return bad;
      return isNameOnly(parseNormalizedNamed(identity.dockerReference))
        ? `dockerReference ${JSON.stringify(identity.dockerReference)} has neither a tag nor a digest`
        : undefined;
    }
    case 'exactRepository':
      return parses('dockerRepository', identity.dockerRepository);
    case 'remapIdentity':
      for (const p of [identity.prefix, identity.signedPrefix])
        if (!DOMAIN_RE.test(p) && !DOMAIN_NAME_RE.test(p))
          return `remapIdentity prefix ${JSON.stringify(p)} is not a host[:port], namespace or repository`;
      return undefined;
    default:
      return undefined;
  }
}

/** Same tag-or-digest rule as containers/image's matchRepoDigestOrExact: a tag exactly, a digest by repository. */
function repoDigestOrExact(intended: DockerReference, signed: DockerReference): boolean {
  if (isNameOnly(signed)) return false;
  if (intended.tag !== undefined) return referenceString(signed) === referenceString(intended);
  if (intended.digest !== undefined) return signed.name === intended.name;
  return false;
}

function remap(prefix: string, signedPrefix: string, ref: DockerReference): DockerReference {
  const { name } = ref;
  const matches = name === prefix || (name.length > prefix.length && name.startsWith(prefix) && name[prefix.length] === '/');
  if (!matches) return ref;
  // containers/image replaces the prefix's first occurrence in the whole reference string.
  return parseNamed(referenceString(ref).replace(prefix, signedPrefix));
}

/**
 * The test for a signature's `docker-reference` when `intended` (a full reference with a tag or a
 * digest: the image as the client asked for it) is pulled. `identity` undefined is the proxy's
 * default: matchRepoDigestOrExact, and also a reference naming only the repository (what cosign
 * and trustgate write) for any pull of that repository.
 */
export function identityMatcher(identity: SignedIdentity | undefined, intended: string): (signed: string) => boolean {
  const want = tryParse(intended);
  return (signedText: string): boolean => {
    const signed = tryParse(signedText);
    if (!signed) return false;
    switch (identity?.type) {
      case undefined:
        if (!want) return false;
        return isNameOnly(signed) ? signed.name === want.name : repoDigestOrExact(want, signed);
      case 'matchExact':
        return !!want && !isNameOnly(want) && !isNameOnly(signed) && referenceString(signed) === referenceString(want);
      case 'matchRepoDigestOrExact':
        return !!want && repoDigestOrExact(want, signed);
      case 'matchRepository':
        return !!want && signed.name === want.name;
      case 'exactReference': {
        const fixed = tryParse(identity.dockerReference);
        return !!fixed && !isNameOnly(fixed) && !isNameOnly(signed) && referenceString(signed) === referenceString(fixed);
      }
      case 'exactRepository': {
        const fixed = tryParse(identity.dockerRepository);
        return !!fixed && signed.name === fixed.name;
      }
      case 'remapIdentity': {
        if (!want) return false;
        let mapped: DockerReference;
        try {
          mapped = remap(identity.prefix, identity.signedPrefix, want);
        } catch {
          return false;
        }
        return repoDigestOrExact(mapped, signed);
      }
    }
  };
}

/** The mode's name for messages: `matchRepository`, or `default` when the policy names none. */
export const identityName = (identity: SignedIdentity | undefined): string =>
  identity?.type ?? 'default (matchRepoDigestOrExact or repository)';
