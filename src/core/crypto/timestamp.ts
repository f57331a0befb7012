// RFC 3161 time-stamp requests and replies (ASN.1 by @peculiar/asn1-tsp), for Sigstore bundles:
// the imprint is SHA-256 over the DSSE signature bytes, which is what @sigstore/verify checks a
// bundle's `rfc3161Timestamps` against. Pure: the HTTP exchange with the TSA is src/tsa/.
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { SignedData, id_signedData } from '@peculiar/asn1-cms';
import { MessageImprint, PKIStatus, TSTInfo, TimeStampReq, TimeStampResp, id_ct_tstInfo } from '@peculiar/asn1-tsp';
import { pemDecodeAll } from './pem.js';

const SHA256_OID = '2.16.840.1.101.3.4.2.1';

/** A TSA that could not be reached (`unavailable`) or whose reply was refused. */
export class TimestampError extends Error {
  override name = 'TimestampError';
  constructor(
    message: string,
    readonly unavailable = false,
  ) {
    super(message);
  }
}

export interface TimestampRequest {
  /** DER TimeStampReq, sent as application/timestamp-query. */
  der: Buffer;
  imprint: Buffer;
  nonce: Buffer;
}

/** A request for a timestamp over SHA-256(`data`), with a fresh 64-bit nonce and the TSA's certificate asked for. */
export function timestampRequest(data: Buffer): TimestampRequest {
  const imprint = createHash('sha256').update(data).digest();
  const nonce = randomBytes(8);
  nonce[0] = (nonce[0]! & 0x7f) | 0x01; // a positive INTEGER with no leading zero byte: it comes back byte for byte
  const req = new TimeStampReq({
    version: 1,
    messageImprint: new MessageImprint({
      hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA256_OID }),
      hashedMessage: new OctetString(imprint),
    }),
    nonce: new Uint8Array(nonce).buffer,
    certReq: true,
  });
  return { der: Buffer.from(AsnConvert.serialize(req)), imprint, nonce };
}

/**
 * Checks a TSA's reply to `req`: status granted, a signed TSTInfo whose imprint (SHA-256) and
 * nonce are the request's. Returns the reply's genTime; the DER reply itself is what a bundle
 * embeds. The token's signature is checked against the TSA's chain by verifying the bundle.
 */
export function checkTimestampReply(reply: Buffer, req: TimestampRequest): { genTime: Date } {
  let resp: TimeStampResp;
  try {
    resp = AsnConvert.parse(reply, TimeStampResp);
  } catch {
    throw new TimestampError(`the TSA's reply is not an RFC 3161 TimeStampResp (${reply.length} bytes)`);
  }
  const status = resp.status.status;
  if (status !== PKIStatus.granted && status !== PKIStatus.grantedWithMods) {
    const text = resp.status.statusString?.join('; ');
    throw new TimestampError(`the TSA refused the request: status ${PKIStatus[status] ?? status}${text ? ` (${text})` : ''}`);
  }
  const token = resp.timeStampToken;
  if (!token || token.contentType !== id_signedData) throw new TimestampError('the TSA granted the request but sent no signed token');
  let info: TSTInfo;
  try {
    const signed = AsnConvert.parse(token.content, SignedData);
    const content = signed.encapContentInfo;
    if (content.eContentType !== id_ct_tstInfo || !content.eContent?.single) throw new Error('no TSTInfo');
    info = AsnConvert.parse(content.eContent.single.buffer, TSTInfo);
    if (signed.signerInfos.length !== 1) throw new Error(`${signed.signerInfos.length} signers`);
  } catch (e) {
    throw new TimestampError(`the TSA's token is malformed: ${(e as Error).message}`);
  }
  const mi = info.messageImprint;
  if (mi.hashAlgorithm.algorithm !== SHA256_OID || !Buffer.from(mi.hashedMessage.buffer).equals(req.imprint))
    throw new TimestampError("the TSA timestamped another message: the token's message imprint is not the signature's SHA-256");
  if (!info.nonce || !Buffer.from(info.nonce).equals(req.nonce))
    throw new TimestampError("the TSA's token does not carry the request's nonce (a replayed or mixed-up reply)");
  return { genTime: info.genTime };
}

const TIME_STAMPING = '1.3.6.1.5.5.7.3.8';

/**
 * A TSA's certificate chain from PEM (any order) as DER, from the timeStamping certificate up to
 * its self-signed root: a trusted root's `timestampAuthorities[].certChain` matches the token's
 * signer to its first entry, and @sigstore/verify needs the path to end at a root.
 */
export function tsaChainFromPem(pem: string): Buffer[] {
  let certs: X509Certificate[];
  try {
    certs = pemDecodeAll(pem)
      .filter((b) => b.type === 'CERTIFICATE')
      .map((b) => new X509Certificate(b.bytes));
  } catch (e) {
    throw new TimestampError(`the TSA chain is not valid PEM: ${(e as Error).message}`);
  }
  const leaf = certs.find((c) => !c.ca && (c.keyUsage ?? []).includes(TIME_STAMPING));
  if (!leaf) throw new TimestampError('the TSA chain holds no certificate for time stamping (extendedKeyUsage timeStamping)');
  const path = [leaf];
  for (let c = leaf; !(c.checkIssued(c) && c.verify(c.publicKey));) {
    const issuer = certs.find((i) => i.ca && !path.includes(i) && c.checkIssued(i) && c.verify(i.publicKey));
    if (!issuer)
      throw new TimestampError(
        `the TSA chain does not lead from ${leaf.subject.replace(/\n/g, ', ')} to a self-signed root: add its CA certificates`,
      );
    path.push((c = issuer));
  }
  return path.map((c) => Buffer.from(c.raw));
}
