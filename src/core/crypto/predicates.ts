// Predicate types and what each must hold, shared by the signing API, the CLI (which checks a
// predicate before sending it) and the proxy policy. Pure and light: no crypto libraries.

export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const SPDX_DOCUMENT = 'https://spdx.dev/Document';
export const CYCLONEDX_BOM = 'https://cyclonedx.org/bom';

/** Largest predicate signed (its envelope, base64 and all, stays under MAX_ATTESTATION_BYTES). */
export const MAX_PREDICATE_BYTES = 512 * 1024;
/** Largest envelope or bundle a verifier reads (cosign's unbounded reads: CVE-2023-46737, CVE-2024-29902). */
export const MAX_ATTESTATION_BYTES = 1024 * 1024;

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Why a predicate cannot be signed as `predicateType`, or undefined. Any type takes any JSON
 * object; the three well-known ones must have the fields their specifications require.
 */
export function predicateProblem(predicateType: string, predicate: unknown): string | undefined {
  if (!isObj(predicate)) return 'predicate must be a JSON object';
  const p = predicate as Record<string, Record<string, unknown> | undefined>;
  switch (predicateType) {
    case SLSA_PROVENANCE_V1:
      if (!isObj(p.buildDefinition) || typeof p.buildDefinition.buildType !== 'string')
        return 'SLSA provenance v1 needs buildDefinition.buildType (a string)';
      if (!isObj(p.runDetails) || !isObj(p.runDetails.builder) || typeof p.runDetails.builder.id !== 'string')
        return 'SLSA provenance v1 needs runDetails.builder.id (a string)';
      return undefined;
    case SPDX_DOCUMENT:
      return typeof p.spdxVersion === 'string' && (p.spdxVersion as string).startsWith('SPDX-')
        ? undefined
        : 'an SPDX document needs spdxVersion (SPDX-<version>)';
    case CYCLONEDX_BOM:
      return (p.bomFormat as unknown) === 'CycloneDX' ? undefined : 'a CycloneDX BOM needs bomFormat "CycloneDX"';
    default:
      return undefined;
  }
}

/** The top-level fields of a SLSA provenance v1 predicate: a condition path must start with one. */
export const SLSA_V1_FIELDS: readonly string[] = ['buildDefinition', 'runDetails'];
