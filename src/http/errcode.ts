// docker/distribution `errcode` envelopes, shared by the Notary API and the registry proxy:
// `{"errors":[{"code","message","detail"}]}` and a newline, JSON content type.
import type { ServerResponse } from 'node:http';

export interface ErrorCode {
  code: string;
  status: number;
  message: string;
}

const def = (code: string, status: number, message: string): ErrorCode => ({ code, status, message });

/** Notary server codes (spec §2.3), with notary's exact messages. */
export const NotaryErrors = {
  METADATA_NOT_FOUND: def('METADATA_NOT_FOUND', 404, 'You have requested metadata that does not exist.'),
  INVALID_UPDATE: def('INVALID_UPDATE', 400, 'Update sent by the client is invalid.'),
  MALFORMED_UPLOAD: def('MALFORMED_UPLOAD', 400, 'The body of your request is malformed.'),
  MALFORMED_JSON: def('MALFORMED_JSON', 400, 'JSON sent by the client could not be parsed by the server'),
  NO_FILENAME: def('NO_FILENAME', 400, 'No file/role name provided.'),
  INVALID_ROLE: def('INVALID_ROLE', 400, 'The role you are attempting to operate on is invalid.'),
  VERSION: def('VERSION', 400, 'A newer version of metadata is already available.'),
  INVALID_GUN: def('INVALID_GUN', 400, 'The server does not support actions on images of this name.'),
  INVALID_PARAMETERS: def('INVALID_PARAMETERS', 400, 'The parameters provided are not valid.'),
  TOO_LARGE: def('MALFORMED_UPLOAD', 413, 'The body of your request is malformed.'),
  UPDATING: def('UPDATING', 500, 'An error has occurred while updating the TUF repository.'),
  UNAUTHORIZED: def('UNAUTHORIZED', 401, 'authentication required'),
  DENIED: def('DENIED', 403, 'requested access to the resource is denied'),
  UNKNOWN: def('UNKNOWN', 500, 'unknown error'),
  UNAVAILABLE: def('UNAVAILABLE', 503, 'service unavailable'),
} as const;

/** Notary's JSON answers (errors, health) carry this type. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** The body of an error answer; `detail` is left out when undefined. */
export function errorBody(e: ErrorCode, detail?: unknown, message = e.message): string {
  const item: Record<string, unknown> = { code: e.code, message };
  if (detail !== undefined) item.detail = detail;
  return JSON.stringify({ errors: [item] }) + '\n';
}

export function sendError(
  res: ServerResponse,
  e: ErrorCode,
  detail?: unknown,
  headers: Record<string, string> = {},
  message?: string,
): void {
  const body = errorBody(e, detail, message);
  res.writeHead(e.status, { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}
