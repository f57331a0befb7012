// X.509 certificates as notary uses them: root keys (and optionally delegation keys) are PEM
// certificate bundles whose text is hashed into the key ID, so PEM output must match Go's
// encoding/pem byte for byte. Validation mirrors notary 0.7 (trustpinning/certs.go and
// tuf/utils/x509.go ValidateCertificate). Notary never verifies certificate signatures: the
// certificate is only a key container with a name (CN = GUN) and a validity window. Pure: no I/O.
import 'reflect-metadata'; // @peculiar/x509 (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { createPublicKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { isX509, makeKey, MIN_RSA_BITS, type TufKey } from './keys.js';
import { decodeStdBase64, derChildren, derReadExact, oidToString, pemDecodeAll, pemEncode } from './pem.js';

const wc = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(wc);

export class CertificateError extends Error {
  override name = 'CertificateError';
}

// ---------------------------------------------------------------------------------------------
// PEM

/**
 * Go's pem.Encode of each DER certificate in order: `-----BEGIN CERTIFICATE-----\n`, 64-column
 * base64 lines, `-----END CERTIFICATE-----\n`, no headers. Key IDs of x509 keys hash this text.
 */
export function pemEncodeCertificates(ders: Buffer[]): string {
  return ders.map((der) => pemEncode({ type: 'CERTIFICATE', bytes: der })).join('');
}

// ---------------------------------------------------------------------------------------------
// Parsing

export interface ParsedCert {
  /** The DER bytes exactly as found. */
  der: Buffer;
  /** Subject common name (the last CN attribute, as Go reads it); '' if there is none. */
  commonName: string;
  /** Issuer common name; '' if there is none. */
  issuerCommonName: string;
  notBefore: Date;
  notAfter: Date;
  /** BasicConstraints cA (Go's IsCA): false when the extension is absent. */
  isCA: boolean;
  /** Outer signatureAlgorithm OID, e.g. 1.2.840.10045.4.3.2. */
  signatureAlgorithmOid: string;
  /** Its usual name, e.g. `ecdsa-with-SHA256`, or the OID when unknown. */
  signatureAlgorithm: string;
  publicKey: KeyObject;
  /** node's asymmetricKeyType: `ec`, `rsa`, `ed25519`, ... */
  keyAlgorithm: string;
  /** Modulus bits for RSA, curve bits for EC (256/384/521), 256 for Ed25519, else 0. */
  keySize: number;
  /** EC only: node's curve name (`prime256v1`, `secp384r1`, `secp521r1`). */
  namedCurve?: string;
}

const SIGNATURE_ALGORITHMS: Record<string, string> = {
  '1.2.840.113549.1.1.2': 'md2WithRSAEncryption',
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'rsassa-pss',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.10040.4.3': 'dsa-with-SHA1',
  '2.16.840.1.101.3.4.3.2': 'dsa-with-SHA256',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.3.101.112': 'Ed25519',
};

/** The signature algorithms notary refuses (Go's SHA1WithRSA, DSAWithSHA1, ECDSAWithSHA1). */
const SHA1_SIGNATURES = new Set(['1.2.840.113549.1.1.5', '1.2.840.10040.4.3', '1.2.840.10045.4.1']);

const CURVE_BITS: Record<string, number> = { prime256v1: 256, secp384r1: 384, secp521r1: 521 };

/** Parses one DER certificate. Throws CertificateError. */
export function parseCertificate(der: Buffer): ParsedCert {
  try {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature }
    const [, sigAlg] = derChildren(derReadExact(der));
    const signatureAlgorithmOid = oidToString(derChildren(sigAlg!)[0]!);
    const cert = new x509.X509Certificate(new Uint8Array(der));
    const node = new X509Certificate(der);
    const publicKey = node.publicKey;
    const details = publicKey.asymmetricKeyDetails ?? {};
    const keyAlgorithm = publicKey.asymmetricKeyType ?? 'unknown';
    const keySize =
      keyAlgorithm === 'rsa' || keyAlgorithm === 'rsa-pss'
        ? (details.modulusLength ?? 0)
        : keyAlgorithm === 'ec'
          ? (CURVE_BITS[details.namedCurve ?? ''] ?? 0)
          : keyAlgorithm === 'ed25519'
            ? 256
            : 0;
    const last = (xs: string[]) => (xs.length > 0 ? xs[xs.length - 1]! : '');
    return {
      der: Buffer.from(der),
      commonName: last(cert.subjectName.getField('CN')),
      issuerCommonName: last(cert.issuerName.getField('CN')),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      isCA: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
      signatureAlgorithmOid,
      signatureAlgorithm: SIGNATURE_ALGORITHMS[signatureAlgorithmOid] ?? signatureAlgorithmOid,
      publicKey,
      keyAlgorithm,
      keySize,
      ...(keyAlgorithm === 'ec' && details.namedCurve ? { namedCurve: details.namedCurve } : {}),
    };
  } catch (e) {
    throw new CertificateError(`could not parse certificate: ${(e as Error).message}`);
  }
}

/**
 * Every certificate of a PEM bundle, in order (Go's LoadCertBundleFromPEM): any block that is not
 * a CERTIFICATE is an error, and so is a bundle without certificates.
 */
export function parseCertificateBundle(pem: string): ParsedCert[] {
  let blocks;
  try {
    blocks = pemDecodeAll(pem);
  } catch (e) {
    throw new CertificateError((e as Error).message);
  }
  const certs = blocks.map((b) => {
    if (b.type !== 'CERTIFICATE') throw new CertificateError(`invalid pem block type: ${b.type}`);
    return parseCertificate(b.bytes);
  });
  if (certs.length === 0) throw new CertificateError('no valid certificates found');
  return certs;
}

// ---------------------------------------------------------------------------------------------
// Validation

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Go's MatchCNToGun: a CN ending in `*` matches every GUN starting with the CN minus its trailing
 * asterisks (so a CN of `*` matches any GUN); otherwise the CN must equal the GUN.
 */
export function matchCommonNameToGun(commonName: string, gun: string): boolean {
  if (commonName.endsWith('*')) return gun.startsWith(commonName.replace(/\*+$/, ''));
  return commonName === gun;
}

/**
 * Notary's ValidateCertificate: validity window, no SHA-1 signature, RSA ≥ 2048 bits and, with
 * checkExpiry, not expired (NotBefore may be up to one day in the future). Returns the problem,
 * or undefined if there is none.
 */
export function certificateProblem(c: ParsedCert, now: Date, checkExpiry: boolean): string | undefined {
  if (c.notBefore.getTime() > c.notAfter.getTime()) return 'certificate validity window is invalid';
  if (SHA1_SIGNATURES.has(c.signatureAlgorithmOid)) {
    return `certificate with CN ${c.commonName} uses invalid SHA1 signature algorithm`;
  }
  if ((c.keyAlgorithm === 'rsa' || c.keyAlgorithm === 'rsa-pss') && c.keySize < MIN_RSA_BITS) return 'RSA bit length is too short';
  if (checkExpiry) {
    const t = now.getTime();
    if (c.notBefore.getTime() > t + DAY_MS || t > c.notAfter.getTime()) return `certificate with CN ${c.commonName} is expired`;
  }
  return undefined;
}

function x509KeyType(c: ParsedCert): 'ecdsa-x509' | 'rsa-x509' | undefined {
  return c.keyAlgorithm === 'ec' ? 'ecdsa-x509' : c.keyAlgorithm === 'rsa' ? 'rsa-x509' : undefined;
}

function bundleText(key: TufKey): string | undefined {
  const bytes = decodeStdBase64(key.keyval.public);
  return bytes?.toString('utf8');
}

export type RootKeyResult = { ok: true; key: TufKey; leaf: ParsedCert; intermediates: ParsedCert[] } | { ok: false; reason: string };

/**
 * Checks a root key the way notary-server does (spec §3 step 2) and rebuilds it as Go does: the
 * leaf and the intermediates that pass (expired ones are dropped), re-PEM-encoded, typed by the
 * leaf's key algorithm. The rebuilt key's ID equals the uploaded one only if the uploaded PEM was
 * byte-identical to Go's output, and only such keys can count towards the root threshold.
 */
export function validateRootKey(key: TufKey, gun: string, now: Date, opts: { checkExpiry?: boolean } = {}): RootKeyResult {
  const checkExpiry = opts.checkExpiry ?? true;
  if (!isX509(key)) return { ok: false, reason: `root key must be an x509 certificate, not ${key.keytype}` };
  const text = bundleText(key);
  if (text === undefined) return { ok: false, reason: 'root key is not valid base64' };
  let certs: ParsedCert[];
  try {
    certs = parseCertificateBundle(text);
  } catch (e) {
    return { ok: false, reason: `error while parsing root certificate: ${(e as Error).message}` };
  }
  const leaves = certs.filter((c) => !c.isCA);
  if (leaves.length !== 1) {
    return { ok: false, reason: `invalid chain: expected exactly one leaf certificate, found ${leaves.length}` };
  }
  if (certs[0]!.isCA) return { ok: false, reason: 'invalid chain: the leaf certificate must come first' };
  const leaf = leaves[0]!;
  if (!matchCommonNameToGun(leaf.commonName, gun)) {
    return { ok: false, reason: `leaf certificate CN ${JSON.stringify(leaf.commonName)} does not match the GUN ${JSON.stringify(gun)}` };
  }
  const problem = certificateProblem(leaf, now, checkExpiry);
  if (problem) return { ok: false, reason: problem };
  const keytype = x509KeyType(leaf);
  if (!keytype) return { ok: false, reason: `unsupported certificate key algorithm ${leaf.keyAlgorithm}` };
  // Intermediates are always checked for expiry, whatever checkExpiry says (as in Go).
  const intermediates = certs.filter((c) => c.isCA && certificateProblem(c, now, true) === undefined);
  const pem = pemEncodeCertificates([leaf.der, ...intermediates.map((c) => c.der)]);
  return { ok: true, key: makeKey(keytype, Buffer.from(pem, 'utf8')), leaf, intermediates };
}

/**
 * The check notary applies to certificates in delegation keys: the first certificate's validity
 * window, signature algorithm and RSA size, never its expiry (the role's own `expires` governs).
 * Keys that are not x509 pass. Unlike Go, which skips a certificate it cannot parse, an x509 key
 * without a parseable certificate is refused.
 */
export function validateDelegationCert(key: TufKey, now: Date = new Date()): { ok: true } | { ok: false; reason: string } {
  if (!isX509(key)) return { ok: true };
  const text = bundleText(key);
  if (text === undefined) return { ok: false, reason: 'delegation key is not valid base64' };
  let first: ParsedCert;
  try {
    first = parseCertificateBundle(text)[0]!;
  } catch (e) {
    return { ok: false, reason: `invalid delegation certificate: ${(e as Error).message}` };
  }
  const problem = certificateProblem(first, now, false);
  return problem ? { ok: false, reason: problem } : { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Creation

const YEAR_MS = 365 * DAY_MS; // notary.Year

export interface CreateCertificateOptions {
  /** Subject CN (and issuer CN unless issuerCommonName is given). */
  commonName: string;
  /** Signs the certificate: EC P-256/P-384/P-521 or RSA ≥ 2048 bits. */
  privateKey: KeyObject;
  /** The certified key; defaults to the private key's own public key (self-signed). */
  publicKey?: KeyObject;
  issuerCommonName?: string;
  /** Defaults to now; truncated to whole seconds. */
  notBefore?: Date;
  /** Validity in 365-day years (notary's `Year`), default 10; ignored when notAfter is given. */
  years?: number;
  notAfter?: Date;
  /** A CA certificate (BasicConstraints CA:TRUE, keyCertSign) instead of notary's leaf profile. */
  ca?: boolean;
}

function signingParams(priv: KeyObject): {
  importAlg: Parameters<typeof webcrypto.subtle.importKey>[2];
  signAlg: { name: string; hash: string };
} {
  switch (priv.asymmetricKeyType) {
    case 'ec': {
      const curve = priv.asymmetricKeyDetails?.namedCurve;
      // Go's x509.CreateCertificate pairs each curve with the matching hash.
      const map: Record<string, [string, string]> = {
        prime256v1: ['P-256', 'SHA-256'],
        secp384r1: ['P-384', 'SHA-384'],
        secp521r1: ['P-521', 'SHA-512'],
      };
      const m = map[curve ?? ''];
      if (!m) throw new CertificateError(`unsupported elliptic curve ${curve}`);
      return { importAlg: { name: 'ECDSA', namedCurve: m[0] }, signAlg: { name: 'ECDSA', hash: m[1] } };
    }
    case 'rsa': {
      const bits = priv.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new CertificateError(`RSA keys must have at least ${MIN_RSA_BITS} bits`);
      return {
        importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
        signAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      };
    }
    default:
      throw new CertificateError(`cannot make certificates with ${priv.asymmetricKeyType} keys`);
  }
}

/** A Name with one CN, string type chosen as Go does (PrintableString if possible, else UTF8String). */
function cnName(cn: string): x509.Name {
  const value = x509.Name.isPrintableString(cn) ? { printableString: cn } : { utf8String: cn };
  return new x509.Name([{ CN: [value] }]);
}

/** Positive random 128-bit serial, minimally encoded (Go: rand.Int(2^128)). */
function randomSerialHex(): string {
  let b = randomBytes(16);
  while (b.every((x) => x === 0)) b = randomBytes(16);
  return b.toString('hex');
}

/**
 * Makes an X.509 v3 certificate with notary's profile (cryptoservice/certificate.go): random
 * serial, KeyUsage critical digitalSignature|keyEncipherment, EKU codeSigning, BasicConstraints
 * critical CA:FALSE, signed ecdsa-with-SHA256 (P-256) or sha256WithRSAEncryption. Returns the
 * PEM text and the x509 metadata key whose `public` is that text.
 */
export async function createCertificateForKey(opts: CreateCertificateOptions): Promise<{ pem: string; der: Buffer; key: TufKey }> {
  if (opts.privateKey.type !== 'private') throw new CertificateError('privateKey must be a private key');
  const publicKey = opts.publicKey ?? createPublicKey(opts.privateKey);
  const keytype = publicKey.asymmetricKeyType === 'ec' ? 'ecdsa-x509' : publicKey.asymmetricKeyType === 'rsa' ? 'rsa-x509' : undefined;
  if (!keytype) throw new CertificateError(`cannot certify ${publicKey.asymmetricKeyType} keys`);
  if (keytype === 'rsa-x509' && (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new CertificateError(`RSA keys must have at least ${MIN_RSA_BITS} bits`);
  }
  const { importAlg, signAlg } = signingParams(opts.privateKey);
  const signingKey = await wc.subtle.importKey(
    'pkcs8',
    opts.privateKey.export({ type: 'pkcs8', format: 'der' }),
    importAlg as never,
    false,
    ['sign'],
  );
  const notBefore = new Date(Math.floor((opts.notBefore ?? new Date()).getTime() / 1000) * 1000);
  const notAfter = opts.notAfter
    ? new Date(Math.floor(opts.notAfter.getTime() / 1000) * 1000)
    : new Date(notBefore.getTime() + (opts.years ?? 10) * YEAR_MS);
  const usages = opts.ca
    ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
    : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: cnName(opts.commonName),
      issuer: cnName(opts.issuerCommonName ?? opts.commonName),
      notBefore,
      notAfter,
      publicKey: publicKey.export({ type: 'spki', format: 'der' }),
      signingKey,
      signingAlgorithm: signAlg as never,
      extensions: [
        new x509.KeyUsagesExtension(usages, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning], false),
        new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
      ],
    },
    wc,
  );
  const der = Buffer.from(cert.rawData);
  const pem = pemEncodeCertificates([der]);
  return { pem, der, key: makeKey(keytype, Buffer.from(pem, 'utf8')) };
}

export interface CreateRootCertificateOptions {
  gun: string;
  /** The root private key: EC P-256 (notary's choice) or RSA ≥ 2048 bits. */
  privateKey: KeyObject;
  publicKey?: KeyObject;
  notBefore?: Date;
  /** Default 10 (notary's root certificate lifetime, in 365-day years). */
  years?: number;
}

/**
 * Notary's root certificate for a GUN (spec §5.8): self-signed, CN = GUN, valid from now for 10
 * years. The returned key (`ecdsa-x509` or `rsa-x509`) is what goes into root.json.
 */
export async function createRootCertificate(opts: CreateRootCertificateOptions): Promise<{ pem: string; key: TufKey }> {
  const { pem, key } = await createCertificateForKey({
    commonName: opts.gun,
    privateKey: opts.privateKey,
    ...(opts.publicKey ? { publicKey: opts.publicKey } : {}),
    ...(opts.notBefore ? { notBefore: opts.notBefore } : {}),
    years: opts.years ?? 10,
  });
  return { pem, key };
}
