// OCI content digests (`sha256:<hex>`), as registries name manifests and blobs.
import { createHash } from 'node:crypto';

export const ociDigest = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
