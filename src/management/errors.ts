// Errors of the management API: one JSON shape, `{"error":{"code","message"}}`, and a mapping
// from the domain errors below it. Messages never echo request values that could be secret.
import { KeyError } from '../core/crypto/keys.js';
import { PrivateKeyPemError } from '../core/crypto/pem.js';
import { CertificateError } from '../core/crypto/x509.js';
import { MalformedMetadataError, TufValidationError } from '../core/tuf/errors.js';
import { KeyStoreError } from '../keystore/types.js';
import { VersionConflictError } from '../storage/types.js';
import { TrustChangeError } from '../trust/changes.js';
import { EditorError } from '../trust/editor.js';

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

/** The management API's answer to a refusal of the change pipeline. */
function fromTrust(e: TrustChangeError): ApiError {
  switch (e.code) {
    case 'REPOSITORY_NOT_FOUND':
    case 'PENDING_NOT_FOUND':
      return notFound('NOT_FOUND', e.message);
    case 'ROLE_NOT_FOUND':
    case 'KEY_NOT_FOUND':
      return notFound(e.code, e.message);
    case 'FORBIDDEN':
      return new ApiError(403, 'FORBIDDEN', e.message);
    case 'VERSION_CONFLICT':
      return conflict('VERSION_CONFLICT', e.message);
    case 'PENDING_DROPPED':
      return conflict(e.extra.versionConflict ? 'VERSION_CONFLICT' : 'CONFLICT', e.message);
    case 'THRESHOLD_NOT_MET':
    case 'SNAPSHOT_KEY_HELD':
    case 'PENDING_GONE':
      return conflict('CONFLICT', e.message);
    case 'INVALID_METADATA':
    case 'KEY_NOT_IN_ROLE':
    case 'INVALID_SIGNATURE':
      return badRequest(e.code, e.message);
    case 'AFTER_PUBLISH':
      return new ApiError(502, 'UPSTREAM_ERROR', e.message);
    default:
      return badRequest('INVALID_REQUEST', e.message);
  }
}

/** The API error for any thrown value; unknown errors become a bare 500. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof TrustChangeError) return fromTrust(e);
  if (e instanceof PrivateKeyPemError) {
    switch (e.code) {
      case 'malformed-pem':
        return badRequest('MALFORMED_PEM', e.message);
      case 'wrong-passphrase':
        return badRequest('WRONG_PASSPHRASE', 'wrong passphrase for the private key');
      case 'passphrase-required':
        return badRequest('PASSPHRASE_REQUIRED', e.message);
      default:
        return badRequest('UNSUPPORTED_KEY', e.message);
    }
  }
  if (e instanceof KeyError) return badRequest(/RSA keys must have/.test(e.message) ? 'WEAK_KEY' : 'UNSUPPORTED_KEY', e.message);
  if (e instanceof CertificateError) return badRequest(/RSA/.test(e.message) ? 'WEAK_KEY' : 'UNSUPPORTED_KEY', e.message);
  if (e instanceof EditorError) {
    if (e.code === 'NOT_FOUND') return notFound('NOT_FOUND', e.message);
    if (e.code === 'CONFLICT') return conflict('CONFLICT', e.message);
    return badRequest('INVALID_REQUEST', e.message);
  }
  if (e instanceof TufValidationError && e.missing === 'snapshot') {
    return conflict('CONFLICT', 'a client holds the snapshot key of this repository: rotate the snapshot key to the server first (POST …/keys/snapshot/rotate)');
  }
  if (e instanceof TufValidationError || e instanceof MalformedMetadataError) return badRequest('INVALID_METADATA', e.message);
  if (e instanceof VersionConflictError) return conflict('VERSION_CONFLICT', `${e.message}; another change was published first, retry`);
  if (e instanceof KeyStoreError) return new ApiError(500, 'INTERNAL', 'keystore error');
  return new ApiError(500, 'INTERNAL', 'internal error');
}

/** A 4xx the JSON body parser raised (http-errors marks those `expose`), not one of our own errors. */
export function isBodyParserError(err: unknown): boolean {
  const e = err as { status?: unknown; expose?: unknown };
  return !(err instanceof ApiError) && e?.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500;
}

export function errorBody(e: ApiError): ErrorBody {
  return { error: { code: e.code, message: e.message } };
}
