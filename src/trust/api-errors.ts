// The /api/v1 error for a domain error: how the management and signing APIs answer a refusal of
// the change pipeline, the editor, the key parsers or the stores below them.
import { KeyError } from '../core/crypto/keys.js';
import { PrivateKeyPemError } from '../core/crypto/pem.js';
import { CertificateError } from '../core/crypto/x509.js';
import { MalformedMetadataError, TufValidationError } from '../core/tuf/errors.js';
import { KeyStoreError, KeyStoreUnavailableError } from '../keystore/types.js';
import { StoreUnavailableError, VersionConflictError } from '../storage/types.js';
import { TrustChangeError } from './changes.js';
import { EditorError } from './editor.js';
import { ApiError, badRequest, conflict, notFound } from '../http/api-error.js';

/** The /api/v1 answer to a refusal of the change pipeline. */
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
    return conflict(
      'CONFLICT',
      'a client holds the snapshot key of this repository: rotate the snapshot key to the server first (POST …/keys/snapshot/rotate)',
    );
  }
  if (e instanceof TufValidationError || e instanceof MalformedMetadataError) return badRequest('INVALID_METADATA', e.message);
  if (e instanceof VersionConflictError) return conflict('VERSION_CONFLICT', `${e.message}; another change was published first, retry`);
  if (e instanceof StoreUnavailableError)
    return new ApiError(
      503,
      'UNAVAILABLE',
      'the metadata store is unavailable; retry later (a change in flight may have been saved: check before repeating it)',
    );
  if (e instanceof KeyStoreUnavailableError)
    return new ApiError(
      503,
      'UNAVAILABLE',
      'the keystore is unavailable; retry later (a change in flight may have been saved: check before repeating it)',
    );
  if (e instanceof KeyStoreError) return new ApiError(500, 'INTERNAL', 'keystore error');
  return new ApiError(500, 'INTERNAL', 'internal error');
}
