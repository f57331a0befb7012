// Reads a Notary publish body: multipart/form-data whose parts are role files. The role comes
// from the raw `filename` parameter with slashes kept (`targets/releases`); Go's
// Part.FileName() strips it (notary#1630), so this parses Content-Disposition itself.
//
// The body is bounded (maxBytes) and buffered, then split the way Go's mime/multipart reads it:
// a preamble before the first delimiter line is skipped, a part ends at CRLF (or LF) + delimiter,
// the close delimiter ends the body and anything after it is ignored. A body that ends before
// the close delimiter is malformed. A part whose Content-Disposition is missing, unparseable or
// has no filename comes back with filename '' (the handler answers NO_FILENAME in part order).
import type { IncomingMessage } from 'node:http';
import { BodyError as MultipartError, readBody } from '../http/body.js';

// One error class for the body and its parts: the handler answers both the same way.
export { BodyError as MultipartError, type BodyFailure as MultipartFailure } from '../http/body.js';

export interface Part {
  /** The raw filename parameter; '' when the part has none. */
  filename: string;
  bytes: Buffer;
}

export const MAX_PARTS = 1000;
/** Bytes of headers per part (Go's textproto has no fixed limit; this only bounds work). */
const MAX_PART_HEADER_BYTES = 16 * 1024;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * RFC 2045/2183 media type parameters as Go's mime.ParseMediaType reads them: `type; k=v; k="q"`,
 * names case-insensitive, a duplicate name is an error, `k*=charset'lang'pct-encoded` decoded.
 * Returns undefined when the value does not parse.
 */
export function parseMediaType(v: string): { type: string; params: Map<string, string> } | undefined {
  const i = v.indexOf(';');
  const type = (i < 0 ? v : v.slice(0, i)).trim().toLowerCase();
  if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+(\/[!#$%&'*+\-.^_`|~0-9a-z]+)?$/.test(type)) return undefined;
  const params = new Map<string, string>();
  const ext = new Map<string, string>();
  let rest = i < 0 ? '' : v.slice(i);
  while (rest.length > 0) {
    rest = rest.replace(/^[ \t]+/, '');
    if (rest === '') break;
    if (rest[0] !== ';') return undefined;
    rest = rest.slice(1).replace(/^[ \t]+/, '');
    if (rest === '') break; // a trailing semicolon is allowed
    const eq = rest.indexOf('=');
    if (eq <= 0) return undefined;
    const name = rest.slice(0, eq).trim().toLowerCase();
    if (!TOKEN.test(name)) return undefined;
    rest = rest.slice(eq + 1).replace(/^[ \t]+/, '');
    let value: string;
    if (rest[0] === '"') {
      let j = 1;
      value = '';
      for (; j < rest.length && rest[j] !== '"'; j++) {
        if (rest[j] === '\\' && j + 1 < rest.length) j++;
        value += rest[j];
      }
      if (j >= rest.length) return undefined; // unterminated quoted string
      rest = rest.slice(j + 1);
    } else {
      const m = /^[^;\s]*/.exec(rest)![0];
      if (m === '' || !TOKEN.test(m.replace(/[%']/g, 'x'))) return undefined;
      value = m;
      rest = rest.slice(m.length);
    }
    const target = name.endsWith('*') ? ext : params;
    if (target.has(name)) return undefined;
    target.set(name, value);
  }
  // RFC 2231 extended values win over plain ones (Go does the same).
  for (const [name, value] of ext) {
    const m = /^([^']*)'[^']*'(.*)$/.exec(value);
    if (!m) continue;
    const charset = m[1]!.toLowerCase();
    if (charset !== 'utf-8' && charset !== 'us-ascii') continue;
    try {
      params.set(name.slice(0, -1), decodeURIComponent(m[2]!));
    } catch {
      // an undecodable value is left out
    }
  }
  return { type, params };
}

/** The boundary of a multipart/form-data Content-Type, or undefined if it is not one. */
export function formDataBoundary(contentType: string | undefined): string | undefined {
  const mt = parseMediaType(contentType ?? '');
  if (!mt || mt.type !== 'multipart/form-data') return undefined;
  const b = mt.params.get('boundary');
  return b && b.length <= 70 ? b : undefined;
}

const isBlank = (b: Buffer, from: number, to: number) => {
  for (let i = from; i < to; i++) if (b[i] !== 0x20 && b[i] !== 0x09) return false;
  return true;
};

/** End of the line starting at `from` (index of '\n'), or -1. */
const lineEnd = (b: Buffer, from: number) => b.indexOf(0x0a, from);

/**
 * Classifies the text right after a delimiter `--boundary` that ends at `at`: 'close' for `--`,
 * 'next' for optional blanks and a newline (returns where the part headers start), else undefined.
 */
function afterDelimiter(b: Buffer, at: number): { kind: 'close' } | { kind: 'next'; start: number } | undefined {
  if (b[at] === 0x2d && b[at + 1] === 0x2d) return { kind: 'close' };
  const nl = lineEnd(b, at);
  if (nl < 0) return undefined;
  const stop = nl > at && b[nl - 1] === 0x0d ? nl - 1 : nl;
  return isBlank(b, at, stop) ? { kind: 'next', start: nl + 1 } : undefined;
}

function parseHeaders(block: string): Map<string, string> {
  const headers = new Map<string, string>();
  let last: string | undefined;
  for (const line of block.split(/\r?\n/)) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && last) {
      headers.set(last, `${headers.get(last)} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError('MALFORMED_UPLOAD', 'malformed part header');
    last = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(last)) headers.set(last, line.slice(colon + 1).trim());
  }
  return headers;
}

/** The raw filename of a part (Go reads any disposition type's `filename`), or ''. */
function filenameOf(headers: Map<string, string>): string {
  const cd = headers.get('content-disposition');
  if (cd === undefined) return '';
  return parseMediaType(cd)?.params.get('filename') ?? '';
}

/** Splits a complete multipart body into its parts. Throws MultipartError('MALFORMED_UPLOAD'). */
export function parseMultipart(body: Buffer, boundary: string): Part[] {
  const delim = Buffer.from(`--${boundary}`);
  const bad = (why: string) => new MultipartError('MALFORMED_UPLOAD', why);

  // Preamble: skip lines until a delimiter line.
  let pos = 0;
  let state: ReturnType<typeof afterDelimiter>;
  for (;;) {
    if (pos >= body.length) throw bad('no multipart delimiter found');
    if (body.subarray(pos, pos + delim.length).equals(delim) && (state = afterDelimiter(body, pos + delim.length))) break;
    const nl = lineEnd(body, pos);
    if (nl < 0) throw bad('no multipart delimiter found');
    pos = nl + 1;
  }

  const parts: Part[] = [];
  while (state.kind === 'next') {
    if (parts.length >= MAX_PARTS) throw new MultipartError('TOO_LARGE', `more than ${MAX_PARTS} parts`);
    const start = state.start;
    // Headers end at the first empty line.
    const m = /\r?\n\r?\n/.exec(body.subarray(start, start + MAX_PART_HEADER_BYTES + 4).toString('latin1'));
    let headerEnd: number;
    let contentStart: number;
    if (body[start] === 0x0a || (body[start] === 0x0d && body[start + 1] === 0x0a)) {
      headerEnd = start; // no headers at all
      contentStart = start + (body[start] === 0x0d ? 2 : 1);
    } else {
      if (!m) throw bad(body.length - start > MAX_PART_HEADER_BYTES ? 'part headers too large' : 'unterminated part headers');
      headerEnd = start + m.index;
      contentStart = headerEnd + m[0].length;
    }
    const headers = parseHeaders(body.subarray(start, headerEnd).toString('utf8'));

    // Content runs to the next newline + delimiter that is followed by `--` or a line end.
    let search = contentStart;
    let next: ReturnType<typeof afterDelimiter>;
    let contentEnd: number;
    for (;;) {
      const at = body.indexOf(delim, search);
      if (at < 0) throw bad('multipart body ended before its close delimiter');
      const lf = at >= 1 && body[at - 1] === 0x0a && at - 1 >= contentStart - 1;
      if (lf && (next = afterDelimiter(body, at + delim.length))) {
        contentEnd = at - 1;
        if (contentEnd > contentStart && body[contentEnd - 1] === 0x0d) contentEnd--;
        if (contentEnd < contentStart) contentEnd = contentStart;
        break;
      }
      search = at + 1;
    }
    parts.push({ filename: filenameOf(headers), bytes: Buffer.from(body.subarray(contentStart, contentEnd)) });
    state = next;
  }
  return parts;
}

/** Reads and splits a publish body, bounded by `maxBytes` in total. */
export async function readMultipart(req: IncomingMessage, maxBytes: number): Promise<Part[]> {
  const boundary = formDataBoundary(req.headers['content-type']);
  if (boundary === undefined) {
    req.resume();
    throw new MultipartError('MALFORMED_UPLOAD', 'not multipart/form-data');
  }
  return parseMultipart(await readBody(req, maxBytes), boundary);
}
