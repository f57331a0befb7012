// Reading a request body with a bound on its size.
import type { IncomingMessage } from 'node:http';

export type BodyFailure = 'MALFORMED_UPLOAD' | 'TOO_LARGE';

export class BodyError extends Error {
  constructor(
    readonly kind: BodyFailure,
    message: string,
  ) {
    super(message);
  }
}

/** Reads the request body, at most maxBytes of it; beyond that the rest is drained and TOO_LARGE thrown. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      req.resume();
      reject(new BodyError('TOO_LARGE', `body of ${declared} bytes exceeds ${maxBytes}`));
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      total += c.length;
      if (total > maxBytes) {
        failed = true;
        chunks.length = 0;
        reject(new BodyError('TOO_LARGE', `body exceeds ${maxBytes} bytes`));
        return; // keep reading (and dropping) so the answer can be delivered
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, total));
    });
    req.on('error', (e) => {
      if (failed) return;
      failed = true;
      reject(new BodyError('MALFORMED_UPLOAD', e.message));
    });
  });
}
