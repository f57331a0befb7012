// The RFC 3161 client that timestamps Sigstore bundles (TRUSTGATE_TSA_URL): the request and the
// checks of the reply are core/crypto/timestamp.ts; this file only speaks HTTP
// (application/timestamp-query in, application/timestamp-reply out), bounded in time and size.
import { checkTimestampReply, timestampRequest, TimestampError } from '../core/crypto/timestamp.js';
import type { BundleOptions } from '../core/crypto/sigstore.js';

export interface TsaOptions {
  url: string;
  /** The whole exchange; default 10 s. */
  timeoutMs?: number;
  /** The TSA's chain (DER, timeStamping certificate first), when configured (TRUSTGATE_TSA_CA). */
  chain?: Buffer[];
}

/** Largest reply read: a token with its certificate chain is a few KB. */
const MAX_REPLY = 256 * 1024;

/** Posts a time-stamp query and checks the reply (status, imprint, nonce); resolves to the DER reply. */
export async function requestTimestamp(url: string, data: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  const req = timestampRequest(data);
  let res: Response;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/timestamp-query', accept: 'application/timestamp-reply' },
      body: new Uint8Array(req.der),
      signal,
      redirect: 'error',
    });
  } catch (e) {
    throw unreachable(url, e, timeoutMs);
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => undefined);
    throw new TimestampError(`the TSA at ${url} answered HTTP ${res.status}`, res.status >= 500 || res.status === 429);
  }
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/timestamp-reply') {
    await res.body?.cancel().catch(() => undefined);
    throw new TimestampError(`the TSA at ${url} answered ${type || 'no content type'}, not application/timestamp-reply`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body ?? []) {
      size += (chunk as Uint8Array).length;
      if (size > MAX_REPLY) throw new TimestampError(`the TSA at ${url} sent a reply larger than ${MAX_REPLY} bytes`);
      chunks.push(Buffer.from(chunk as Uint8Array));
    }
  } catch (e) {
    if (e instanceof TimestampError) throw e;
    throw unreachable(url, e, timeoutMs);
  }
  const reply = Buffer.concat(chunks);
  checkTimestampReply(reply, req);
  return reply;
}

function unreachable(url: string, e: unknown, timeoutMs: number): TimestampError {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError')
    return new TimestampError(`the TSA at ${url} did not answer within ${timeoutMs} ms`, true);
  return new TimestampError(`cannot reach the TSA at ${url}: ${err.cause?.code ?? err.cause?.message ?? err.message}`, true);
}

/** What createBundle needs to timestamp its bundles with this TSA (and check them against its chain). */
export function tsaBundleOptions(o: TsaOptions): BundleOptions {
  return {
    timestamp: (signature) => requestTimestamp(o.url, signature, o.timeoutMs),
    ...(o.chain ? { tsaChain: o.chain } : {}),
  };
}
