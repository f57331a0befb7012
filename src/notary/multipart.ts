// Reads a Notary publish body: multipart/form-data whose parts are role files. The role comes
// from the raw `filename` parameter with slashes kept (`targets/releases`), which busboy keeps
// only with `preservePath` (Go's Part.FileName() strips it: notary#1630).
import busboy from 'busboy';
import type { IncomingMessage } from 'node:http';

export type MultipartFailure = 'MALFORMED_UPLOAD' | 'NO_FILENAME' | 'TOO_LARGE';

export class MultipartError extends Error {
  constructor(readonly kind: MultipartFailure, message: string) {
    super(message);
  }
}

export interface Part {
  filename: string;
  bytes: Buffer;
}

export const MAX_PARTS = 1000;

/** Collects the file parts in order, bounded by `maxBytes` in total. */
export function readMultipart(req: IncomingMessage, maxBytes: number): Promise<Part[]> {
  return new Promise((resolve, reject) => {
    const ct = req.headers['content-type'] ?? '';
    if (!/^multipart\/form-data\s*;/i.test(ct)) {
      req.resume();
      reject(new MultipartError('MALFORMED_UPLOAD', 'not multipart/form-data'));
      return;
    }
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: req.headers, preservePath: true, limits: { parts: MAX_PARTS, files: MAX_PARTS, fields: MAX_PARTS, fileSize: maxBytes } });
    } catch (e) {
      req.resume();
      reject(new MultipartError('MALFORMED_UPLOAD', (e as Error).message));
      return;
    }
    const parts: Part[] = [];
    let total = 0;
    let failed: MultipartError | undefined;
    const fail = (e: MultipartError) => {
      if (failed) return;
      failed = e;
      req.unpipe(bb);
      req.resume(); // drain the rest so the connection can answer
      reject(e);
    };
    bb.on('file', (_name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => {
        total += c.length;
        if (total > maxBytes) fail(new MultipartError('TOO_LARGE', `body exceeds ${maxBytes} bytes`));
        else chunks.push(c);
      });
      stream.on('limit', () => fail(new MultipartError('TOO_LARGE', `body exceeds ${maxBytes} bytes`)));
      stream.on('end', () => {
        if (!info.filename) fail(new MultipartError('NO_FILENAME', 'a part has no filename'));
        else parts.push({ filename: info.filename, bytes: Buffer.concat(chunks) });
      });
    });
    // A part without a filename arrives as a field.
    bb.on('field', () => fail(new MultipartError('NO_FILENAME', 'a part has no filename')));
    bb.on('partsLimit', () => fail(new MultipartError('TOO_LARGE', 'too many parts')));
    bb.on('filesLimit', () => fail(new MultipartError('TOO_LARGE', 'too many parts')));
    bb.on('error', (e) => fail(new MultipartError('MALFORMED_UPLOAD', (e as Error).message)));
    bb.on('close', () => {
      if (!failed) resolve(parts);
    });
    req.on('error', (e) => fail(new MultipartError('MALFORMED_UPLOAD', e.message)));
    req.pipe(bb);
  });
}
