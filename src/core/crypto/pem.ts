// PEM and private-key files in the notary client's format, so that `notary key import` and
// `docker trust key load` accept our exports and we accept `notary key generate`, `notary key
// export` and `docker trust key generate` output. Pure: no I/O.
//
// What notary 0.7 writes (tuf/utils/pkcs8.go, checked against /usr/bin/notary):
//   -----BEGIN ENCRYPTED PRIVATE KEY-----
//   gun: example.com/app          (targets/snapshot/timestamp keys only)
//   path: <key id>                (only in `notary key export` output)
//   role: targets
//
//   <base64 EncryptedPrivateKeyInfo, 64 columns>
//   -----END ENCRYPTED PRIVATE KEY-----
// EncryptedPrivateKeyInfo = PBES2 { PBKDF2 { salt: 8 random bytes, iterations: 2048, no keyLength,
// no prf (so HMAC-SHA1) }, AES-256-CBC { iv: 16 random bytes } }. Notary's reader ignores any
// `prf` field and always derives with HMAC-SHA1, so a file that names hmacWithSHA256 (what
// OpenSSL 3 and node's KeyObject.export write) decrypts to garbage in notary ("pkcs8: incorrect
// password"). That is why this module does its own PBES2 instead of using KeyObject.export.
// Ed25519 keys use notary's own PKCS#8 form: OID 1.3.6.1.4.1.11591.15.1 and the 96-byte
// public‖seed‖public as the private key octets; notary rejects the RFC 8410 form.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  pbkdf2Sync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { isX509, keyId, publicKeyObject, type TufKey } from './keys.js';
import { tufKeyFromPublic } from './signer.js';

// ---------------------------------------------------------------------------------------------
// Errors

export type PemErrorCode = 'malformed-pem' | 'wrong-passphrase' | 'passphrase-required' | 'unsupported-key';

/** A private key file could not be read or written. Messages never contain the passphrase. */
export class PrivateKeyPemError extends Error {
  override name = 'PrivateKeyPemError';
  constructor(
    readonly code: PemErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const malformed = (detail?: string) => new PrivateKeyPemError('malformed-pem', detail ? `malformed PEM: ${detail}` : 'malformed PEM');
const unsupported = (detail?: string) => new PrivateKeyPemError('unsupported-key', detail ? `unsupported key: ${detail}` : 'unsupported key');
const wrongPassphrase = () => new PrivateKeyPemError('wrong-passphrase', 'wrong passphrase');

// ---------------------------------------------------------------------------------------------
// Minimal DER (definite lengths only), enough for PKCS#8, PBES2 and certificate outer fields.

export interface DerNode {
  /** The full identifier octet (class, constructed bit and tag number; tag numbers < 31 only). */
  tag: number;
  /** Header plus contents. */
  raw: Buffer;
  /** Contents only. */
  value: Buffer;
}

export const DER = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export class DerError extends Error {
  override name = 'DerError';
}

/** Reads one TLV at `offset`. Throws DerError on truncated or indefinite-length input. */
export function derRead(buf: Buffer, offset = 0): DerNode {
  if (offset + 2 > buf.length) throw new DerError('truncated DER');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let len = buf[offset + 1]!;
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('DER length too large');
    if (offset + 2 + n > buf.length) throw new DerError('truncated DER');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    hdr += n;
  }
  const end = offset + hdr + len;
  if (end > buf.length) throw new DerError('truncated DER');
  return { tag, raw: buf.subarray(offset, end), value: buf.subarray(offset + hdr, end) };
}

/** Reads a whole buffer as exactly one TLV (no trailing bytes). */
export function derReadExact(buf: Buffer): DerNode {
  const n = derRead(buf, 0);
  if (n.raw.length !== buf.length) throw new DerError('trailing data after DER value');
  return n;
}

/** The TLVs inside a constructed value. */
export function derChildren(node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let off = 0; off < node.value.length; ) {
    const c = derRead(node.value, off);
    out.push(c);
    off += c.raw.length;
  }
  return out;
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Encodes a TLV; an array of contents is concatenated (for SEQUENCE/SET). */
export function derEncode(tag: number, content: Buffer | Buffer[]): Buffer {
  const body = Array.isArray(content) ? Buffer.concat(content) : content;
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

/** DER INTEGER of a non-negative safe integer. */
export function derInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new DerError('only non-negative safe integers are supported');
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length === 0 || bytes[0]! & 0x80) bytes.unshift(0);
  return derEncode(DER.INTEGER, Buffer.from(bytes));
}

/** Reads a small non-negative DER INTEGER. */
export function derReadInteger(node: DerNode): number {
  if (node.tag !== DER.INTEGER || node.value.length === 0) throw new DerError('expected INTEGER');
  if (node.value[0]! & 0x80) throw new DerError('negative INTEGER');
  if (node.value.length > 7) throw new DerError('INTEGER too large');
  let n = 0;
  for (const b of node.value) n = n * 256 + b;
  return n;
}

export function oidToString(node: DerNode): string {
  if (node.tag !== DER.OID || node.value.length === 0) throw new DerError('expected OBJECT IDENTIFIER');
  const arcs: number[] = [];
  let v = 0;
  for (const b of node.value) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  const first = arcs.shift()!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs].join('.');
}

export function derOid(oid: string): Buffer {
  const arcs = oid.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new DerError(`bad OID ${oid}`);
  const out: number[] = [];
  const push = (a: number) => {
    const tmp = [a & 0x7f];
    for (a = Math.floor(a / 128); a > 0; a = Math.floor(a / 128)) tmp.unshift((a & 0x7f) | 0x80);
    out.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  arcs.slice(2).forEach(push);
  return derEncode(DER.OID, Buffer.from(out));
}

// ---------------------------------------------------------------------------------------------
// PEM, byte-compatible with Go's encoding/pem.

export interface PemBlock {
  type: string;
  headers: Record<string, string>;
  bytes: Buffer;
}

/**
 * Go's pem.Encode: `-----BEGIN T-----\n`, headers (Proc-Type first, the rest sorted by key) and a
 * blank line if there are any, 64-column base64 lines, `-----END T-----\n`.
 */
export function pemEncode(block: { type: string; bytes: Buffer; headers?: Record<string, string> }): string {
  const headers = block.headers ?? {};
  const keys = Object.keys(headers);
  let out = `-----BEGIN ${block.type}-----\n`;
  if (keys.length > 0) {
    const ordered = [...(keys.includes('Proc-Type') ? ['Proc-Type'] : []), ...keys.filter((k) => k !== 'Proc-Type').sort()];
    for (const k of ordered) {
      const v = headers[k]!;
      if (k.includes(':') || /[\r\n]/.test(k) || /[\r\n]/.test(v)) throw malformed(`invalid header ${JSON.stringify(k)}`);
      out += `${k}: ${v}\n`;
    }
    out += '\n';
  }
  const b64 = block.bytes.toString('base64');
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  out += `-----END ${block.type}-----\n`;
  return out;
}

const PEM_BLOCK = /-----BEGIN ([^\r\n]*?)-----[ \t]*\r?\n([\s\S]*?)-----END ([^\r\n]*?)-----/g;
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 (padding required, whitespace removed first), as Go's StdEncoding. */
export function decodeStdBase64(text: string): Buffer | undefined {
  const s = text.replace(/[\s]/g, '');
  return STD_BASE64.test(s) ? Buffer.from(s, 'base64') : undefined;
}

/**
 * All PEM blocks in `text`, in order, with their headers (`key: value` lines before the first
 * line without a colon, as Go's pem.Decode reads them). Text around blocks is ignored; a block
 * with a bad body or a mismatched END line throws `malformed PEM`.
 */
export function pemDecodeAll(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const [, type, body, endType] = m;
    if (type !== endType) throw malformed(`BEGIN ${type} ended by END ${endType}`);
    const lines = body!.split(/\r?\n/);
    const headers: Record<string, string> = {};
    let i = 0;
    for (; i < lines.length; i++) {
      const c = lines[i]!.indexOf(':');
      if (c < 0) break;
      headers[lines[i]!.slice(0, c).trim()] = lines[i]!.slice(c + 1).trim();
    }
    const bytes = decodeStdBase64(lines.slice(i).join(''));
    if (!bytes) throw malformed(`bad base64 in ${type} block`);
    out.push({ type: type!, headers, bytes });
  }
  return out;
}

/** The first PEM block in `text`, or undefined if there is none. */
export function pemDecode(text: string): PemBlock | undefined {
  return pemDecodeAll(text)[0];
}

// ---------------------------------------------------------------------------------------------
// Public keys

/**
 * PEM for a metadata key: the certificate text itself for x509 keys (exactly the bytes the key
 * ID hashes), otherwise a `PUBLIC KEY` block of the SubjectPublicKeyInfo, with a `role` header
 * when given, as `notary key generate -o` and `docker trust key generate` write `<name>.pub`.
 */
export function exportPublicKeyPem(key: TufKey, opts: { role?: string } = {}): string {
  if (isX509(key)) {
    const text = Buffer.from(key.keyval.public, 'base64').toString('utf8');
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw unsupported(`${key.keytype} key holds no certificate`);
    return text;
  }
  let spki: Buffer;
  try {
    spki = publicKeyObject(key).export({ type: 'spki', format: 'der' });
  } catch (e) {
    throw unsupported((e as Error).message);
  }
  return pemEncode({ type: 'PUBLIC KEY', bytes: spki, headers: opts.role ? { role: opts.role } : {} });
}

// ---------------------------------------------------------------------------------------------
// PKCS#8

const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
  ed25519: '1.3.101.112',
  notaryEd25519: '1.3.6.1.4.1.11591.15.1',
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  aes128cbc: '2.16.840.1.101.3.4.1.2',
  aes192cbc: '2.16.840.1.101.3.4.1.22',
  aes256cbc: '2.16.840.1.101.3.4.1.42',
  desEde3cbc: '1.2.840.113549.3.7',
} as const;

const PRFS: Record<string, string> = {
  '1.2.840.113549.2.7': 'sha1',
  '1.2.840.113549.2.8': 'sha224',
  '1.2.840.113549.2.9': 'sha256',
  '1.2.840.113549.2.10': 'sha384',
  '1.2.840.113549.2.11': 'sha512',
};

const PBES2_CIPHERS: Record<string, { name: string; keyLen: number; ivLen: number }> = {
  [OID.aes128cbc]: { name: 'aes-128-cbc', keyLen: 16, ivLen: 16 },
  [OID.aes192cbc]: { name: 'aes-192-cbc', keyLen: 24, ivLen: 16 },
  [OID.aes256cbc]: { name: 'aes-256-cbc', keyLen: 32, ivLen: 16 },
  [OID.desEde3cbc]: { name: 'des-ede3-cbc', keyLen: 24, ivLen: 8 },
};

/** PBKDF2 work above this is refused rather than burning CPU on a hostile file. */
const MAX_PBKDF2_ITERATIONS = 10_000_000;
/** notary 0.7's iteration count (tuf/utils/pkcs8.go). */
export const NOTARY_PBKDF2_ITERATIONS = 2048;

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SUPPORTED_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

function checkSupported(key: KeyObject): KeyObject {
  switch (key.asymmetricKeyType) {
    case 'ed25519':
    case 'rsa':
      return key;
    case 'ec':
      if (SUPPORTED_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '')) return key;
      throw unsupported(`elliptic curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}`);
    default:
      throw unsupported(`${key.asymmetricKeyType ?? 'unknown'} keys`);
  }
}

/**
 * Notary's serialised Ed25519 private key: public‖seed‖public (96 bytes: the public key, then Go's
 * 64-byte ed25519.PrivateKey). Go's bare 64-byte seed‖public is accepted too.
 */
function ed25519FromNotaryBytes(bytes: Buffer): KeyObject {
  let seed: Buffer;
  let pubs: Buffer[];
  if (bytes.length === 96) {
    seed = bytes.subarray(32, 64);
    pubs = [bytes.subarray(0, 32), bytes.subarray(64)];
  } else if (bytes.length === 64) {
    seed = bytes.subarray(0, 32);
    pubs = [bytes.subarray(32)];
  } else {
    throw new DerError('ed25519 private key must be 96 bytes (public, seed, public)');
  }
  const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const pub = createPublicKey(key).export({ type: 'spki', format: 'der' }).subarray(12);
  if (!pubs.every((p) => p.equals(pub))) throw new DerError('ed25519 public key does not match the private key');
  return key;
}

/**
 * Parses an unencrypted PKCS#8 PrivateKeyInfo as notary writes it: RSA without NULL parameters,
 * EC with version 1, Ed25519 under notary's private OID; the standard forms are accepted too.
 * DER errors (which, after decryption, mean a wrong passphrase) propagate as DerError or a
 * node error; an unknown algorithm is `unsupported key`.
 */
function parsePkcs8(der: Buffer): KeyObject {
  const kids = derChildren(derReadExact(der));
  if (kids.length < 3 || kids[1]!.tag !== DER.SEQUENCE || kids[2]!.tag !== DER.OCTET_STRING) throw new DerError('not a PrivateKeyInfo');
  derReadInteger(kids[0]!);
  const alg = derChildren(kids[1]!);
  const oid = oidToString(alg[0]!);
  const inner = kids[2]!.value;
  switch (oid) {
    case OID.rsaEncryption:
      return createPrivateKey({ key: inner, format: 'der', type: 'pkcs1' });
    case OID.ecPublicKey:
      // Re-wrap as version 0 with the same AlgorithmIdentifier, which every OpenSSL accepts.
      return createPrivateKey({
        key: derEncode(DER.SEQUENCE, [derInteger(0), kids[1]!.raw, kids[2]!.raw]),
        format: 'der',
        type: 'pkcs8',
      });
    case OID.ed25519:
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    case OID.notaryEd25519:
      return ed25519FromNotaryBytes(inner);
    default:
      throw unsupported(`private key algorithm ${oid}`);
  }
}

/** Notary's PKCS#8 bytes for a key (see the header comment for the Ed25519 form). */
function toNotaryPkcs8(key: KeyObject, ed25519Format: 'notary' | 'rfc8410'): Buffer {
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType !== 'ed25519' || ed25519Format === 'rfc8410') return pkcs8;
  const seed = pkcs8.subarray(pkcs8.length - 32);
  const pub = createPublicKey(key).export({ type: 'spki', format: 'der' }).subarray(12);
  return derEncode(DER.SEQUENCE, [
    derInteger(0),
    derEncode(DER.SEQUENCE, derOid(OID.notaryEd25519)),
    derEncode(DER.OCTET_STRING, Buffer.concat([pub, seed, pub])),
  ]);
}

/** PBES2 / PBKDF2-HMAC-SHA1 / AES-256-CBC, laid out exactly as notary's convertTUFKeyToPKCS8Encrypted. */
function encryptPkcs8(plain: Buffer, passphrase: string, iterations: number): Buffer {
  const salt = randomBytes(8);
  const iv = randomBytes(16);
  const key = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, iterations, 32, 'sha1');
  const c = createCipheriv('aes-256-cbc', key, iv);
  const encrypted = Buffer.concat([c.update(plain), c.final()]);
  key.fill(0);
  return derEncode(DER.SEQUENCE, [
    derEncode(DER.SEQUENCE, [
      derOid(OID.pbes2),
      derEncode(DER.SEQUENCE, [
        derEncode(DER.SEQUENCE, [
          derOid(OID.pbkdf2),
          derEncode(DER.SEQUENCE, [derEncode(DER.OCTET_STRING, salt), derInteger(iterations)]),
        ]),
        derEncode(DER.SEQUENCE, [derOid(OID.aes256cbc), derEncode(DER.OCTET_STRING, iv)]),
      ]),
    ]),
    derEncode(DER.OCTET_STRING, encrypted),
  ]);
}

/** Decrypts an EncryptedPrivateKeyInfo. PBES2 is done here (honouring `prf`); others go to OpenSSL. */
function decryptPkcs8(der: Buffer, passphrase: string): KeyObject {
  let kids: DerNode[];
  let algOid: string;
  try {
    kids = derChildren(derReadExact(der));
    if (kids.length !== 2 || kids[1]!.tag !== DER.OCTET_STRING) throw new DerError('not an EncryptedPrivateKeyInfo');
    algOid = oidToString(derChildren(kids[0]!)[0]!);
  } catch (e) {
    if (e instanceof DerError) throw malformed('not an EncryptedPrivateKeyInfo');
    throw e;
  }
  if (algOid !== OID.pbes2) return decryptWithOpenSsl(der, passphrase);

  let prf = 'sha1';
  let salt: Buffer, iterations: number, keyLen: number | undefined, cipherOid: string, iv: Buffer;
  try {
    const [kdf, scheme] = derChildren(derChildren(kids[0]!)[1]!);
    const [kdfOid, kdfParams] = derChildren(kdf!);
    if (oidToString(kdfOid!) !== OID.pbkdf2) throw unsupported('PBES2 key derivation other than PBKDF2');
    const p = derChildren(kdfParams!);
    if (p[0]!.tag !== DER.OCTET_STRING) throw unsupported('PBKDF2 salt source');
    salt = p[0]!.value;
    iterations = derReadInteger(p[1]!);
    for (const extra of p.slice(2)) {
      if (extra.tag === DER.INTEGER) keyLen = derReadInteger(extra);
      else if (extra.tag === DER.SEQUENCE) {
        const prfOid = oidToString(derChildren(extra)[0]!);
        const h = PRFS[prfOid];
        if (!h) throw unsupported(`PBKDF2 PRF ${prfOid}`);
        prf = h;
      }
    }
    const [encOid, ivNode] = derChildren(scheme!);
    cipherOid = oidToString(encOid!);
    if (!ivNode || ivNode.tag !== DER.OCTET_STRING) throw new DerError('missing IV');
    iv = ivNode.value;
  } catch (e) {
    if (e instanceof PrivateKeyPemError) throw e;
    throw malformed('bad PBES2 parameters');
  }
  const cipher = PBES2_CIPHERS[cipherOid];
  if (!cipher) throw unsupported(`key encryption ${cipherOid}`);
  if (iv.length !== cipher.ivLen) throw malformed('bad PBES2 IV');
  if (keyLen !== undefined && keyLen !== cipher.keyLen) throw malformed('bad PBKDF2 key length');
  if (iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) throw unsupported(`PBKDF2 iteration count ${iterations}`);

  const key = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, iterations, cipher.keyLen, prf);
  let plain: Buffer;
  try {
    const d = createDecipheriv(cipher.name, key, iv);
    plain = Buffer.concat([d.update(kids[1]!.value), d.final()]);
  } catch {
    throw wrongPassphrase(); // bad CBC padding
  } finally {
    key.fill(0);
  }
  try {
    return parsePkcs8(plain);
  } catch (e) {
    if (e instanceof PrivateKeyPemError) throw e;
    throw wrongPassphrase(); // decrypted bytes are not a key
  } finally {
    plain.fill(0);
  }
}

function decryptWithOpenSsl(der: Buffer, passphrase: string): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8', passphrase });
  } catch (e) {
    const msg = (e as Error).message ?? '';
    if (/bad decrypt|wrong|password|passphrase/i.test(msg)) throw wrongPassphrase();
    throw unsupported('key encryption');
  }
}

// Legacy OpenSSL PEM encryption (Proc-Type/DEK-Info), as Go's x509.DecryptPEMBlock and notary <0.4 wrote it.
const LEGACY_CIPHERS: Record<string, { name: string; keyLen: number; ivLen: number }> = {
  'DES-CBC': { name: 'des-cbc', keyLen: 8, ivLen: 8 },
  'DES-EDE3-CBC': { name: 'des-ede3-cbc', keyLen: 24, ivLen: 8 },
  'AES-128-CBC': { name: 'aes-128-cbc', keyLen: 16, ivLen: 16 },
  'AES-192-CBC': { name: 'aes-192-cbc', keyLen: 24, ivLen: 16 },
  'AES-256-CBC': { name: 'aes-256-cbc', keyLen: 32, ivLen: 16 },
};

function decryptLegacy(block: PemBlock, passphrase: string): Buffer {
  const dek = block.headers['DEK-Info'] ?? '';
  const [name, ivHex] = dek.split(',').map((s) => s.trim());
  const cipher = LEGACY_CIPHERS[name?.toUpperCase() ?? ''];
  if (!cipher) throw unsupported(`PEM encryption ${name || '(none)'}`);
  if (!ivHex || !/^[0-9a-fA-F]+$/.test(ivHex) || ivHex.length !== cipher.ivLen * 2) throw malformed('bad DEK-Info IV');
  const iv = Buffer.from(ivHex, 'hex');
  // EVP_BytesToKey(MD5, 1 round, salt = first 8 bytes of the IV)
  const pass = Buffer.from(passphrase, 'utf8');
  const parts: Buffer[] = [];
  let prev = Buffer.alloc(0);
  while (Buffer.concat(parts).length < cipher.keyLen) {
    prev = createHash('md5').update(Buffer.concat([prev, pass, iv.subarray(0, 8)])).digest();
    parts.push(prev);
  }
  const key = Buffer.concat(parts).subarray(0, cipher.keyLen);
  try {
    const d = createDecipheriv(cipher.name, key, iv);
    return Buffer.concat([d.update(block.bytes), d.final()]);
  } catch (e) {
    if (/unsupported|unknown cipher/i.test((e as Error).message)) throw unsupported(`PEM encryption ${name}`);
    throw wrongPassphrase();
  }
}

// ---------------------------------------------------------------------------------------------
// Private key files

export interface ExportPrivateKeyOptions {
  /** Must not be empty: notary only writes unencrypted keys to hardware tokens. */
  passphrase: string;
  /** `root`, `targets`, `snapshot`, `timestamp`, or a delegation/signer name. */
  role: string;
  /** Written only for targets/snapshot/timestamp keys, the only roles notary files under a GUN. */
  gun?: string;
  /**
   * The `path` header (the key ID file name) that `notary key export` writes. `notary key import`
   * skips an encrypted block without one ("key may be encrypted and does not contain path
   * header"), so it is written by default with the notary key ID. Pass `false` to leave it out,
   * e.g. for `docker trust key load`, which only decrypts (and so checks the passphrase) when
   * there is no path. A string is used as given.
   */
  path?: string | false;
  /** PBKDF2 iterations; notary writes 2048 and reads whatever the file says. */
  iterations?: number;
  /** Ed25519 PKCS#8 flavour: notary's private OID and 96-byte key (default, what notary reads) or RFC 8410. */
  ed25519Format?: 'notary' | 'rfc8410';
}

const GUN_ROLES = new Set(['targets', 'snapshot', 'timestamp']);

/** The ID notary files a private key under (and `notary key list` shows): the plain public key's TUF ID. */
export function notaryKeyId(privateOrPublic: KeyObject): string {
  const pub = privateOrPublic.type === 'private' ? createPublicKey(privateOrPublic) : privateOrPublic;
  return keyId(tufKeyFromPublic(pub));
}

/** A passphrase-encrypted PKCS#8 `ENCRYPTED PRIVATE KEY` PEM with notary's headers. */
export function exportPrivateKeyPem(privateKey: KeyObject, opts: ExportPrivateKeyOptions): string {
  if (privateKey.type !== 'private') throw unsupported('not a private key');
  checkSupported(privateKey);
  if (!opts.passphrase) throw new PrivateKeyPemError('passphrase-required', 'a passphrase is required to export a private key');
  const role = opts.role.trim();
  if (!role || /[\r\n]/.test(role)) throw unsupported('invalid role name');
  const headers: Record<string, string> = { role };
  const gun = opts.gun?.trim();
  if (gun && GUN_ROLES.has(role)) {
    if (/[\r\n]/.test(gun)) throw unsupported('invalid GUN');
    headers.gun = gun;
  }
  if (opts.path !== false) {
    const path = opts.path ?? notaryKeyId(privateKey);
    if (/[\r\n]/.test(path)) throw unsupported('invalid path');
    headers.path = path;
  }
  const iterations = opts.iterations ?? NOTARY_PBKDF2_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) {
    throw unsupported(`PBKDF2 iteration count ${iterations}`);
  }
  const plain = toNotaryPkcs8(privateKey, opts.ed25519Format ?? 'notary');
  try {
    return pemEncode({ type: 'ENCRYPTED PRIVATE KEY', headers, bytes: encryptPkcs8(plain, opts.passphrase, iterations) });
  } finally {
    plain.fill(0);
  }
}

export interface ImportedPrivateKey {
  privateKey: KeyObject;
  /** The `role` header, if any (notary key files always have one). */
  role?: string;
  /** The `gun` header, if any. */
  gun?: string;
  /** Whether the file was passphrase-protected. */
  encrypted: boolean;
  /** All PEM headers (e.g. `path` from `notary key export`). */
  headers: Record<string, string>;
}

const PRIVATE_TYPES = new Set(['ENCRYPTED PRIVATE KEY', 'PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY', 'ED25519 PRIVATE KEY']);

/**
 * Reads the first PEM block of a private key file: `ENCRYPTED PRIVATE KEY` (PBES2, as notary and
 * docker write it, or any scheme OpenSSL knows), `PRIVATE KEY` (PKCS#8, including notary's
 * Ed25519 form), and the legacy `EC PRIVATE KEY` / `RSA PRIVATE KEY` / `ED25519 PRIVATE KEY`
 * blocks, optionally with Proc-Type/DEK-Info encryption. The passphrase is ignored for
 * unencrypted keys. Throws PrivateKeyPemError (`malformed PEM`, `wrong passphrase`,
 * `passphrase required`, `unsupported key`).
 */
export function importPrivateKeyPem(pem: string, passphrase?: string): ImportedPrivateKey {
  const block = pemDecode(pem);
  if (!block) throw malformed('no PEM block found');
  if (!PRIVATE_TYPES.has(block.type)) throw unsupported(`PEM block type ${JSON.stringify(block.type)}`);
  const legacyEncrypted = /ENCRYPTED/i.test(block.headers['Proc-Type'] ?? '');
  const encrypted = block.type === 'ENCRYPTED PRIVATE KEY' || legacyEncrypted;
  if (encrypted && !passphrase) throw new PrivateKeyPemError('passphrase-required', 'the key is encrypted and no passphrase was given');

  let key: KeyObject;
  if (block.type === 'ENCRYPTED PRIVATE KEY') {
    key = decryptPkcs8(block.bytes, passphrase!);
  } else {
    const der = legacyEncrypted ? decryptLegacy(block, passphrase!) : block.bytes;
    try {
      switch (block.type) {
        case 'PRIVATE KEY':
          key = parsePkcs8(der);
          break;
        case 'EC PRIVATE KEY':
          key = createPrivateKey({ key: der, format: 'der', type: 'sec1' });
          break;
        case 'RSA PRIVATE KEY':
          key = createPrivateKey({ key: der, format: 'der', type: 'pkcs1' });
          break;
        default: // ED25519 PRIVATE KEY: notary's legacy raw public‖seed‖public
          key = ed25519FromNotaryBytes(der);
      }
    } catch (e) {
      if (e instanceof PrivateKeyPemError) throw e;
      throw legacyEncrypted ? wrongPassphrase() : malformed(`cannot parse ${block.type}`);
    } finally {
      if (legacyEncrypted) der.fill(0);
    }
  }
  checkSupported(key);
  const { role, gun } = block.headers;
  return {
    privateKey: key,
    ...(role ? { role } : {}),
    ...(gun ? { gun } : {}),
    encrypted,
    headers: { ...block.headers },
  };
}
