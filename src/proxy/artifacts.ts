// Which manifests pass the proxy as artifacts (signatures, attestations, SBOMs) of another
// digest. An artifact is an image manifest whose artifact type, config and every layer are of
// types the policy allows, types no container runtime unpacks or runs; an index, or a manifest
// with a layer of any other type, is never one, whatever its `subject` or `artifactType` says.

/** Allowed unless a policy rule lists its own `artifactTypes`. */
export const DEFAULT_ARTIFACT_TYPES: readonly string[] = [
  // cosign signatures: the tag layout's layers, and the OCI 1.1 artifact (and config) type
  'application/vnd.dev.cosign.simplesigning.v1+json',
  'application/vnd.dev.cosign.artifact.sig.v1+json',
  // cosign attestations (DSSE envelopes of in-toto statements)
  'application/vnd.dsse.envelope.v1+json',
  'application/vnd.in-toto+json',
  // Sigstore bundles (trustgate's own referrers, cosign's new format)
  'application/vnd.dev.sigstore.bundle.v0.3+json',
  // SBOMs
  'application/spdx+json',
  'text/spdx',
  'text/spdx+json',
  'application/vnd.cyclonedx',
  'application/vnd.cyclonedx+json',
  'application/vnd.cyclonedx+xml',
];

/** The OCI empty descriptor (`{}`): a placeholder config or layer, allowed in any artifact. */
export const EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';

/** Configs of runnable images. A manifest with one is an artifact only if every layer is an allowed artifact type (cosign's tag layout). */
const RUNNABLE_CONFIGS = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);
export const IMAGE_MANIFESTS = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);

/** Media types a policy may not allow as artifacts: image configs, layers, manifests and indexes, and the empty type (always allowed as a placeholder). */
export const NOT_ARTIFACT_TYPE =
  /^application\/vnd\.(oci\.image\.|oci\.empty\.|docker\.(image\.rootfs|container\.image|distribution\.manifest|plugin))/;

export type ArtifactCheck = { ok: true; type: string; subject?: string } | { ok: false; why: string };

const typeOf = (d: unknown): string | undefined => {
  const t = (d as { mediaType?: unknown } | null)?.mediaType;
  return typeof t === 'string' ? t.toLowerCase() : undefined;
};

/**
 * Whether a parsed manifest is an artifact of an allowed type; with the digest its `subject`
 * names, if it names one (cosign's tag layout has none: the tag names the signed digest).
 */
export function checkArtifact(doc: Record<string, unknown> | undefined, allowed: ReadonlySet<string>): ArtifactCheck {
  if (!doc) return { ok: false, why: 'not a manifest' };
  const mediaType = typeOf(doc);
  if (Array.isArray(doc.manifests) || (mediaType !== undefined && !IMAGE_MANIFESTS.has(mediaType)))
    return { ok: false, why: 'an index or another non-image manifest is never an artifact' };
  const config = typeOf(doc.config);
  if (config === undefined || !Array.isArray(doc.layers)) return { ok: false, why: 'not an image manifest' };
  const layers: string[] = [];
  for (const l of doc.layers as unknown[]) {
    const t = typeOf(l);
    if (t === undefined) return { ok: false, why: 'a layer without a media type' };
    if (t === EMPTY_TYPE) continue;
    if (!allowed.has(t)) return { ok: false, why: `it has a layer of type ${t}, not an allowed artifact type` };
    layers.push(t);
  }
  const runnable = RUNNABLE_CONFIGS.has(config);
  if (runnable && layers.length === 0) return { ok: false, why: `a runnable image config (${config}) without artifact layers` };
  if (!runnable && config !== EMPTY_TYPE && !allowed.has(config))
    return { ok: false, why: `its config type ${config} is not an allowed artifact type` };
  if (doc.artifactType !== undefined && typeof doc.artifactType !== 'string') return { ok: false, why: 'a malformed artifactType' };
  const declared = typeof doc.artifactType === 'string' ? doc.artifactType.toLowerCase() : undefined;
  const type = declared ?? (!runnable && config !== EMPTY_TYPE ? config : layers[0]);
  if (type === undefined) return { ok: false, why: 'it has no artifact type' };
  if (!allowed.has(type)) return { ok: false, why: `artifact type ${type} is not allowed` };
  if (doc.subject === undefined) return { ok: true, type };
  const subject = (doc.subject as { digest?: unknown } | null)?.digest;
  if (typeof subject !== 'string') return { ok: false, why: 'a malformed subject' };
  return { ok: true, type, subject };
}
