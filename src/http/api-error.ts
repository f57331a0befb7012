// The error vocabulary of the /api/v1 APIs (management and signing): one JSON shape,
// `{"error":{"code","message"}}`. Messages never echo request values that could be secret.
export type ErrorCode =
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'INVALID_REQUEST'
  | 'INVALID_JSON'
  | 'INVALID_GUN'
  | 'INVALID_ROLE'
  | 'ROLE_NOT_FOUND'
  | 'KEY_NOT_FOUND'
  | 'KEY_EXISTS'
  | 'KEY_IN_USE'
  | 'UNKNOWN_ALGORITHM'
  | 'WEAK_KEY'
  | 'UNSUPPORTED_KEY'
  | 'MALFORMED_PEM'
  | 'WRONG_PASSPHRASE'
  | 'PASSPHRASE_REQUIRED'
  | 'ROLE_MISMATCH'
  | 'GUN_MISMATCH'
  | 'KEY_NOT_IN_ROLE'
  | 'THRESHOLD_TOO_HIGH'
  | 'NOT_ENOUGH_KEYS'
  | 'NOT_EXPORTABLE'
  | 'INVALID_SIGNATURE'
  | 'INVALID_METADATA'
  | 'VERSION_CONFLICT'
  | 'PENDING_EXPIRED'
  | 'LAST_ADMIN_TOKEN'
  | 'BACKUP_UNSUPPORTED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UPSTREAM_ERROR'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (code: ErrorCode, message: string) => new ApiError(400, code, message);
export const notFound = (code: ErrorCode, message: string) => new ApiError(404, code, message);
export const conflict = (code: ErrorCode, message: string) => new ApiError(409, code, message);

export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** A 4xx the JSON body parser raised (http-errors marks those `expose`), not one of our own errors. */
export function isBodyParserError(err: unknown): boolean {
  const e = err as { status?: unknown; expose?: unknown };
  return !(err instanceof ApiError) && e?.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500;
}

export function errorBody(e: ApiError): ErrorBody {
  return { error: { code: e.code, message: e.message } };
}
