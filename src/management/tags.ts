// The management API's tag routes run on the signing service (src/signing/service.ts): this is
// what they need of it, and how its errors read in the management API's error vocabulary.
import type { SigningService } from '../signing/service.js';
import { SigningError } from '../signing/service.js';
import { SigningInputError } from '../signing/validate.js';
import { ApiError, badRequest, conflict, notFound } from './errors.js';

export type TagSigning = Pick<SigningService, 'signItems' | 'revokeTag'>;

/** A single-item request's messages without the batch's `items[0]` prefix. */
const unbatched = (m: string) => m.replace(/^items\[0\](?::\s*|\.)/, '');

/** The management API's error for an error of the signing service. */
export function signingToApiError(e: unknown): unknown {
  if (e instanceof SigningInputError) return badRequest(/(^|\.)role$/.test(e.field) ? 'INVALID_ROLE' : 'INVALID_REQUEST', unbatched(e.message));
  if (!(e instanceof SigningError)) return e;
  const message = unbatched(e.message);
  switch (e.code) {
    case 'REPOSITORY_NOT_FOUND':
    case 'TAG_NOT_FOUND':
    case 'PENDING_NOT_FOUND':
      return notFound('NOT_FOUND', message);
    case 'ROLE_NOT_FOUND':
      return notFound('ROLE_NOT_FOUND', message);
    case 'FORBIDDEN':
      return new ApiError(403, 'FORBIDDEN', message);
    case 'VERSION_CONFLICT':
      return conflict('VERSION_CONFLICT', message);
    case 'UNSUPPORTED_KEY':
      return badRequest('UNSUPPORTED_KEY', message);
    case 'UPSTREAM_ERROR':
      return new ApiError(502, 'UPSTREAM_ERROR', message);
    default:
      // DIGEST_UNKNOWN, SIZE_MISMATCH and other refusals of the input; 409 when no pending change can be kept.
      return e.status === 409 ? conflict('CONFLICT', message) : new ApiError(e.status, 'INVALID_REQUEST', message);
  }
}

/** Runs a call into the signing service, answering its errors as the management API does. */
export async function fromSigning<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw signingToApiError(e);
  }
}
