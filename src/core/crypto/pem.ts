// PEM and private-key files in the notary client's format, so that notary and docker accept our
// exports and we accept theirs. Pure: no I/O. PBES2 is laid out by hand because notary always
// derives with HMAC-SHA1, whatever PRF the file names (docs/notary-compatibility.md).
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  getCipherInfo,
  pbkdf2Sync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import forge from 'node-forge';
import { isX509, keyId, publicKeyObject, type TufKey } from './keys.js';
import { tufKeyFromPublic } from './signer.js';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;

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
const unsupported = (detail?: string) =>
  new PrivateKeyPemError('unsupported-key', detail ? `unsupported key: ${detail}` : 'unsupported key');
const wrongPassphrase = () => new PrivateKeyPemError('wrong-passphrase', 'wrong passphrase');

// ---------------------------------------------------------------------------------------------
// DER, parsed by forge.asn1

export class DerError extends Error {
  override name = 'DerError';
}

// @types/node-forge only declares the boolean form of fromDer's options.
const fromDer = asn1.fromDer as unknown as (
  bytes: forge.util.ByteBuffer,
  options: { parseAllBytes: boolean; decodeBitStrings: boolean },
) => Asn1;

/** Runs a forge decoder, turning its plain Errors into DerErrors. */
function decoding<R>(fn: () => R): R {
  try {
    return fn();
  } catch (e) {
    throw new DerError((e as Error).message);
  }
}

/** One DER value as forge's tree. */
const parseDer = (der: Buffer): Asn1 =>
  decoding(() => fromDer(forge.util.createBuffer(der.toString('binary')), { parseAllBytes: true, decodeBitStrings: false }));
/** forge throws on sub-identifiers over 53 bits but silently drops an unfinished last one. */
function toOid(contents: string): string {
  if (!contents || contents.charCodeAt(contents.length - 1) & 0x80) throw new DerError('truncated OBJECT IDENTIFIER');
  return decoding(() => asn1.derToOid(contents));
}

const derBytes = (node: Asn1) => Buffer.from(asn1.toDer(node).getBytes(), 'binary');

// Builders for the few structures written here.
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;
const seq = (...kids: Asn1[]) => asn1.create(U, T.SEQUENCE, true, kids);
const oid = (dotted: string) => asn1.create(U, T.OID, false, asn1.oidToDer(dotted).getBytes());
const octets = (b: Buffer) => asn1.create(U, T.OCTETSTRING, false, b.toString('binary'));
const int = (n: number) => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());

// Readers: each checks the universal type it expects and throws DerError otherwise.
function children(node: Asn1 | undefined, min: number): Asn1[] {
  if (node?.tagClass !== U || node.type !== T.SEQUENCE || !Array.isArray(node.value) || node.value.length < min)
    throw new DerError('expected SEQUENCE');
  return node.value;
}
function contents(node: Asn1 | undefined, type: forge.asn1.Type): string {
  if (node?.tagClass !== U || node.type !== type || typeof node.value !== 'string') throw new DerError(`expected universal type ${type}`);
  return node.value;
}
const readOid = (node?: Asn1) => toOid(contents(node, T.OID));
const readOctets = (node?: Asn1) => Buffer.from(contents(node, T.OCTETSTRING), 'binary');
/** A non-negative INTEGER; forge reads at most 32 bits. */
function readUint(node?: Asn1): number {
  const v = contents(node, T.INTEGER);
  if (v.length === 0 || v.length > 4 || v.charCodeAt(0) & 0x80) throw new DerError('expected a small non-negative INTEGER');
  return asn1.derToInteger(v);
}

// The Buffer view below is what x509.ts and management/material.ts read DER with.

export interface DerNode {
  /** The full identifier octet (class, constructed bit and tag number; tag numbers < 31 only). */
  tag: number;
  /** Header plus contents, exactly as found. */
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

/**
 * Every TLV in `bytes`, in order, as slices of it. Forge does the parsing (each value's whole
 * subtree, so nested garbage is refused up front); its read position gives the slice ends.
 */
function derNodes(bytes: Buffer): DerNode[] {
  const buf = forge.util.createBuffer(bytes.toString('binary'));
  const out: DerNode[] = [];
  while (buf.length() > 0) {
    const start = bytes.length - buf.length();
    const node = decoding(() => fromDer(buf, { parseAllBytes: false, decodeBitStrings: false }));
    const raw = bytes.subarray(start, bytes.length - buf.length());
    // forge takes tag number 31 as a tag rather than the start of a multi-octet one, and reads
    // BER's indefinite length (0x80); neither appears in what we read.
    if ((raw[0]! & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
    if (raw[1] === 0x80) throw new DerError('indefinite length is not DER');
    // The length octet, or 0x80|n and n length octets. forge reads an odd-length BMPString one
    // byte too far, so what it consumed must match what the header says.
    const n = raw[1]! & 0x80 ? raw[1]! & 0x7f : 0;
    const header = 2 + n;
    if (raw.length !== header + (n ? raw.readUIntBE(2, n) : raw[1]!)) throw new DerError('malformed DER');
    out.push({ tag: node.tagClass | (node.constructed ? 0x20 : 0) | node.type, raw, value: raw.subarray(header) });
  }
  return out;
}

/** Reads a whole buffer as exactly one TLV (no trailing bytes). Throws DerError. */
export function derReadExact(buf: Buffer): DerNode {
  const nodes = derNodes(buf);
  if (nodes.length !== 1) throw new DerError(nodes.length ? 'trailing data after DER value' : 'empty DER');
  return nodes[0]!;
}

/** The TLVs inside a constructed value (or inside a primitive's contents). */
export function derChildren(node: DerNode): DerNode[] {
  return derNodes(node.value);
}

export function oidToString(node: DerNode): string {
  if (node.tag !== DER.OID) throw new DerError('expected OBJECT IDENTIFIER');
  return toOid(node.value.toString('binary'));
}

// ---------------------------------------------------------------------------------------------
// PEM, byte-compatible with Go's encoding/pem. Hand-written because forge.pem.decode rejects a
// first header other than Proc-Type (notary's `role:`) and forge.pem.encode writes CRLF, folds
// long headers and omits the blank line after non-Proc-Type headers.

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
  out += block.bytes.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `${out}-----END ${block.type}-----\n`;
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
  aes256cbc: '2.16.840.1.101.3.4.1.42',
} as const;

const PRFS: Record<string, string> = {
  '1.2.840.113549.2.7': 'sha1',
  '1.2.840.113549.2.8': 'sha224',
  '1.2.840.113549.2.9': 'sha256',
  '1.2.840.113549.2.10': 'sha384',
  '1.2.840.113549.2.11': 'sha512',
};

/** PBES2 encryption schemes by OID; key and IV sizes come from node's getCipherInfo. */
const PBES2_CIPHERS: Record<string, string> = {
  '2.16.840.1.101.3.4.1.2': 'aes-128-cbc',
  '2.16.840.1.101.3.4.1.22': 'aes-192-cbc',
  [OID.aes256cbc]: 'aes-256-cbc',
  '1.2.840.113549.3.7': 'des-ede3-cbc',
};

/** PBKDF2 work above this is refused rather than burning CPU on a hostile file. */
const MAX_PBKDF2_ITERATIONS = 10_000_000;
/** notary 0.7's iteration count (tuf/utils/pkcs8.go). */
export const NOTARY_PBKDF2_ITERATIONS = 2048;

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

/** An Ed25519 key's raw seed (`d`) and public key (`x`), via JWK so no DER offsets are involved. */
function ed25519Raw(key: KeyObject): { seed: Buffer; pub: Buffer } {
  const { d, x } = key.export({ format: 'jwk' });
  return { seed: Buffer.from(d!, 'base64url'), pub: Buffer.from(x!, 'base64url') };
}

/**
 * Notary's serialised Ed25519 private key: public‖seed‖public (96 bytes: the public key, then Go's
 * 64-byte ed25519.PrivateKey). Go's bare 64-byte seed‖public is accepted too.
 */
function ed25519FromNotaryBytes(bytes: Buffer): KeyObject {
  if (bytes.length !== 96 && bytes.length !== 64) throw new DerError('ed25519 private key must be 96 bytes (public, seed, public)');
  const seed = bytes.subarray(bytes.length - 64, bytes.length - 32);
  const pubs = [bytes.subarray(bytes.length - 32), ...(bytes.length === 96 ? [bytes.subarray(0, 32)] : [])];
  // node derives the public key from `d` alone, so the stored copies are checked against it.
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: pubs[0]!.toString('base64url') },
    format: 'jwk',
  });
  const { pub } = ed25519Raw(key);
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
  const [version, alg, privateKey] = children(parseDer(der), 3);
  readUint(version);
  const algOid = readOid(children(alg, 1)[0]);
  const inner = readOctets(privateKey);
  switch (algOid) {
    case OID.rsaEncryption:
      return createPrivateKey({ key: inner, format: 'der', type: 'pkcs1' });
    case OID.ecPublicKey:
      // Re-wrap as version 0 with the same AlgorithmIdentifier, which every OpenSSL accepts.
      return createPrivateKey({ key: derBytes(seq(int(0), alg!, privateKey!)), format: 'der', type: 'pkcs8' });
    case OID.ed25519:
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    case OID.notaryEd25519:
      return ed25519FromNotaryBytes(inner);
    default:
      throw unsupported(`private key algorithm ${algOid}`);
  }
}

/** Notary's PKCS#8 bytes for a key (see the header comment for the Ed25519 form). */
function toNotaryPkcs8(key: KeyObject, ed25519Format: 'notary' | 'rfc8410'): Buffer {
  if (key.asymmetricKeyType !== 'ed25519' || ed25519Format === 'rfc8410') return key.export({ type: 'pkcs8', format: 'der' });
  const { seed, pub } = ed25519Raw(key);
  const body = Buffer.concat([pub, seed, pub]);
  try {
    return derBytes(seq(int(0), seq(oid(OID.notaryEd25519)), octets(body)));
  } finally {
    seed.fill(0);
    body.fill(0);
  }
}

/** PBES2 / PBKDF2-HMAC-SHA1 / AES-256-CBC, laid out exactly as notary's convertTUFKeyToPKCS8Encrypted. */
function encryptPkcs8(plain: Buffer, passphrase: string, iterations: number): Buffer {
  const salt = randomBytes(8);
  const iv = randomBytes(16);
  const key = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, iterations, 32, 'sha1');
  const c = createCipheriv('aes-256-cbc', key, iv);
  const encrypted = Buffer.concat([c.update(plain), c.final()]);
  key.fill(0);
  return derBytes(
    seq(
      seq(
        oid(OID.pbes2),
        seq(
          // PBKDF2-params with neither keyLength nor prf: notary always derives with HMAC-SHA1.
          seq(oid(OID.pbkdf2), seq(octets(salt), int(iterations))),
          seq(oid(OID.aes256cbc), octets(iv)),
        ),
      ),
      octets(encrypted),
    ),
  );
}

/** Decrypts an EncryptedPrivateKeyInfo. PBES2 is done here (honouring `prf`); others go to OpenSSL. */
function decryptPkcs8(der: Buffer, passphrase: string): KeyObject {
  let algOid: string, params: Asn1 | undefined, data: Buffer;
  try {
    const kids = children(parseDer(der), 2);
    if (kids.length !== 2) throw new DerError('not an EncryptedPrivateKeyInfo');
    const [algId, algParams] = children(kids[0], 1);
    [algOid, params, data] = [readOid(algId), algParams, readOctets(kids[1])];
  } catch (e) {
    if (e instanceof DerError) throw malformed('not an EncryptedPrivateKeyInfo');
    throw e;
  }
  if (algOid !== OID.pbes2) return decryptWithOpenSsl(der, passphrase);

  let prf = 'sha1';
  let salt: Buffer, iterations: number, keyLen: number | undefined, cipherOid: string, iv: Buffer;
  try {
    const [kdf, scheme] = children(params, 2);
    const [kdfOid, kdfParams] = children(kdf, 2);
    if (readOid(kdfOid) !== OID.pbkdf2) throw unsupported('PBES2 key derivation other than PBKDF2');
    const [saltNode, iterationsNode, ...extra] = children(kdfParams, 2);
    if (saltNode!.type !== T.OCTETSTRING) throw unsupported('PBKDF2 salt source');
    salt = readOctets(saltNode);
    iterations = readUint(iterationsNode);
    for (const x of extra) {
      if (x.type === T.INTEGER) keyLen = readUint(x);
      else if (x.type === T.SEQUENCE) {
        const prfOid = readOid(children(x, 1)[0]);
        const hash = PRFS[prfOid];
        if (!hash) throw unsupported(`PBKDF2 PRF ${prfOid}`);
        prf = hash;
      }
    }
    const [encOid, ivNode] = children(scheme, 2);
    cipherOid = readOid(encOid);
    iv = readOctets(ivNode);
  } catch (e) {
    if (e instanceof PrivateKeyPemError) throw e;
    throw malformed('bad PBES2 parameters');
  }
  const cipher = getCipherInfo(PBES2_CIPHERS[cipherOid] ?? '');
  if (!cipher) throw unsupported(`key encryption ${cipherOid}`);
  if (iv.length !== cipher.ivLength) throw malformed('bad PBES2 IV');
  if (keyLen !== undefined && keyLen !== cipher.keyLength) throw malformed('bad PBKDF2 key length');
  if (iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) throw unsupported(`PBKDF2 iteration count ${iterations}`);

  const key = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, iterations, cipher.keyLength, prf);
  let plain: Buffer;
  try {
    const d = createDecipheriv(cipher.name, key, iv);
    plain = Buffer.concat([d.update(data), d.final()]);
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
const LEGACY_CIPHERS = new Set(['DES-CBC', 'DES-EDE3-CBC', 'AES-128-CBC', 'AES-192-CBC', 'AES-256-CBC']);

// EVP_BytesToKey (MD5, one round), which @types/node-forge does not declare.
const { opensslDeriveBytes } = (
  forge.pki as unknown as { pbe: { opensslDeriveBytes(password: string, salt: string, dkLen: number): string } }
).pbe;

function decryptLegacy(block: PemBlock, passphrase: string): Buffer {
  const dek = block.headers['DEK-Info'] ?? '';
  const [name, ivHex] = dek.split(',').map((s) => s.trim());
  const cipher = LEGACY_CIPHERS.has(name?.toUpperCase() ?? '') ? getCipherInfo(name!.toLowerCase()) : undefined;
  if (!cipher) throw unsupported(`PEM encryption ${name || '(none)'}`);
  if (!ivHex || !/^[0-9a-fA-F]+$/.test(ivHex) || ivHex.length !== (cipher.ivLength ?? 0) * 2) throw malformed('bad DEK-Info IV');
  const iv = Buffer.from(ivHex, 'hex');
  const pass = Buffer.from(passphrase, 'utf8').toString('binary');
  const key = Buffer.from(opensslDeriveBytes(pass, iv.subarray(0, 8).toString('binary'), cipher.keyLength), 'binary');
  try {
    const d = createDecipheriv(cipher.name, key, iv);
    return Buffer.concat([d.update(block.bytes), d.final()]);
  } catch (e) {
    if (/unsupported|unknown cipher/i.test((e as Error).message)) throw unsupported(`PEM encryption ${name}`);
    throw wrongPassphrase();
  } finally {
    key.fill(0);
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
