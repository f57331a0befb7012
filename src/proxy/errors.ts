// The registry proxy's error vocabulary: distribution's `errcode` codes, in its envelope
// (http/errcode.ts), with the Docker-Distribution-Api-Version header every answer carries.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { errorBody, JSON_CONTENT_TYPE } from '../http/errcode.js';

export const E = {
  DENIED: { code: 'DENIED', status: 403, message: 'requested access to the resource is denied' },
  UNAUTHORIZED: { code: 'UNAUTHORIZED', status: 401, message: 'authentication required' },
  UNAVAILABLE: { code: 'UNAVAILABLE', status: 503, message: 'service unavailable' },
  NAME_INVALID: { code: 'NAME_INVALID', status: 404, message: 'invalid repository name or route' },
  SIZE_INVALID: { code: 'SIZE_INVALID', status: 413, message: 'manifest too large' },
  UNSUPPORTED: { code: 'UNSUPPORTED', status: 405, message: 'The operation is unsupported.' },
  REPEATED_PARAMETER: { code: 'UNSUPPORTED', status: 400, message: 'a query parameter is given more than once' },
  UNKNOWN: { code: 'UNKNOWN', status: 500, message: 'unknown error' },
} as const;
export type Err = (typeof E)[keyof typeof E];

export const DAPI = { 'Docker-Distribution-Api-Version': 'registry/2.0' };

/** An error answer (no body for HEAD); once headers went out, the connection is cut instead. */
export function send(res: ServerResponse, e: Err, detail?: unknown, message?: string, headers: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(e, detail, message);
  res.writeHead(e.status, { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), ...DAPI, ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
