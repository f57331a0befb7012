// The error vocabulary of the signing API (/api/v1/signing): `{"error":{"code","message",…}}`
// with the status and code below; `extra` adds its fields to the error object.
export type SigningErrorCode =
  | 'INVALID_REQUEST'
  | 'ROLE_NOT_FOUND'
  | 'REPOSITORY_NOT_FOUND'
  | 'FORBIDDEN'
  | 'DIGEST_UNKNOWN'
  | 'SIZE_MISMATCH'
  | 'SIZE_REQUIRED'
  | 'TAG_NOT_FOUND'
  | 'SOURCE_NOT_VERIFIED'
  | 'UPSTREAM_REQUIRED'
  | 'UPSTREAM_ERROR'
  | 'TSA_ERROR'
  | 'UNSUPPORTED_KEY'
  | 'VERSION_CONFLICT'
  | 'PENDING_NOT_FOUND'
  | 'PENDING_STALE'
  | 'COPY_FAILED';

export class SigningError extends Error {
  override name = 'SigningError';
  constructor(
    readonly status: number,
    readonly code: SigningErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}
