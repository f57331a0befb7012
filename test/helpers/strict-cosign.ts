// An independent strict verifier of cosign simple-signing signatures, written for tests from
// containers/image's rules (signature/internal/sigstore_payload.go, signature/internal/json.go,
// signature/policy_reference_match.go, docker/reference, go-digest), not from trustgate's code:
// its own JSON reader (keeps duplicate keys so they can be refused), its own docker reference
// parser, node:crypto for ECDSA. It throws StrictError with containers/image's kind of reason.
import { createHash, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';

export class StrictError extends Error {
  override name = 'StrictError';
}
const fail = (m: string): never => {
  throw new StrictError(m);
};

// ---------------------------------------------------------------------------------------------
// JSON, RFC 8259, objects kept as their entry lists

type Node =
  | { t: 'object'; entries: Array<[string, Node]> }
  | { t: 'array'; items: Node[] }
  | { t: 'string'; v: string }
  | { t: 'number'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'null' };

function readJson(text: string): Node {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    if (text[i] !== '"') fail(`JSON: string expected at ${i}`);
    const start = i++;
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail('JSON: control character in string');
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('JSON: bad \\u escape');
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? '')) fail('JSON: bad escape');
      }
      i++;
    }
    if (text[i] !== '"') fail('JSON: unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): Node => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: Array<[string, Node]> = [];
      ws();
      if (text[i] === '}') {
        i++;
        return { t: 'object', entries };
      }
      for (;;) {
        ws();
        const k = str();
        ws();
        if (text[i++] !== ':') fail('JSON: colon expected');
        entries.push([k, value()]);
        ws();
        const d = text[i++];
        if (d === '}') return { t: 'object', entries };
        if (d !== ',') fail('JSON: comma or } expected');
      }
    }
    if (c === '[') {
      i++;
      const items: Node[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return { t: 'array', items };
      }
      for (;;) {
        items.push(value());
        ws();
        const d = text[i++];
        if (d === ']') return { t: 'array', items };
        if (d !== ',') fail('JSON: comma or ] expected');
      }
    }
    if (c === '"') return { t: 'string', v: str() };
    for (const [word, node] of [
      ['true', { t: 'bool', v: true }],
      ['false', { t: 'bool', v: false }],
      ['null', { t: 'null' }],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return node;
      }
    }
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?/.exec(text.slice(i));
    if (!m) fail(`JSON: value expected at ${i}`);
    i += m![0].length;
    return { t: 'number', v: Number(m![0]) };
  };
  const root = value();
  ws();
  if (i !== text.length) fail('Unexpected data after JSON object');
  return root;
}

/** ParanoidUnmarshalJSONObject: an object, no key twice, every key known to `fields`. */
function paranoid(n: Node, known: (k: string) => boolean): Map<string, Node> {
  if (n.t !== 'object') fail(`JSON object expected, got ${n.t}`);
  const out = new Map<string, Node>();
  for (const [k, v] of (n as { entries: Array<[string, Node]> }).entries) {
    if (out.has(k)) fail(`Duplicate key "${k}"`);
    if (!known(k)) fail(`Unknown key "${k}"`);
    out.set(k, v);
  }
  return out;
}

/** ParanoidUnmarshalJSONObjectExactFields. */
function exact(n: Node, fields: string[]): Map<string, Node> {
  const m = paranoid(n, (k) => fields.includes(k));
  for (const f of fields) if (!m.has(f)) fail(`Key "${f}" missing in a JSON object`);
  return m;
}

/** Go's decoding of a JSON value into a string: a string, or null (which leaves ""). */
const goString = (n: Node): string => (n.t === 'string' ? n.v : n.t === 'null' ? '' : fail(`cannot unmarshal ${n.t} into string`));

// ---------------------------------------------------------------------------------------------
// go-digest and docker/reference

const DIGEST_LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
function parseDigest(d: string): string {
  const colon = d.indexOf(':');
  const alg = d.slice(0, colon);
  const hex = d.slice(colon + 1);
  if (colon < 1 || hex === '') fail(`invalid digest ${d}`);
  const len = DIGEST_LENGTHS[alg];
  if (len === undefined) fail(`unsupported digest algorithm ${d}`);
  if (hex.length !== len || /[^a-f0-9]/.test(hex)) fail(`invalid digest ${d}`);
  return d;
}

export interface Ref {
  name: string;
  tag?: string;
  digest?: string;
}
const refString = (r: Ref) => r.name + (r.tag ? `:${r.tag}` : '') + (r.digest ? `@${r.digest}` : '');
const nameOnly = (r: Ref) => !r.tag && !r.digest;

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$/;
const TAG = /^\w[\w.-]{0,127}$/;

/** reference.ParseNormalizedNamed, by splitting rather than one regular expression. */
export function parseNormalized(s: string): Ref {
  if (/^[a-f0-9]{64}$/.test(s)) fail('cannot specify 64-byte hexadecimal strings');
  const slash = s.indexOf('/');
  const first = slash < 0 ? '' : s.slice(0, slash);
  let domain = 'docker.io';
  let rest = s;
  if (slash >= 0 && (/[.:]/.test(first) || first === 'localhost')) {
    domain = first;
    rest = s.slice(slash + 1);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  if (!DOMAIN.test(domain)) fail(`invalid domain in ${s}`);
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/.test(digest)) fail(`invalid reference format: ${s}`);
    parseDigest(digest);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`invalid tag in ${s}`);
  }
  if (rest.toLowerCase() !== rest) fail('repository name must be lowercase');
  if (!rest.split('/').every((c) => COMPONENT.test(c))) fail(`invalid reference format: ${s}`);
  const name = `${domain}/${rest}`;
  if (name.length > 255) fail('repository name too long');
  return { name, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

// ---------------------------------------------------------------------------------------------
// signedIdentity (containers-policy.json(5))

export type Identity =
  | { type: 'matchExact' | 'matchRepoDigestOrExact' | 'matchRepository' }
  | { type: 'exactReference'; dockerReference: string }
  | { type: 'exactRepository'; dockerRepository: string }
  | { type: 'remapIdentity'; prefix: string; signedPrefix: string };

function repoDigestOrExact(intended: Ref, signed: Ref): boolean {
  if (nameOnly(signed)) return false;
  if (intended.tag) return refString(signed) === refString(intended);
  if (intended.digest) return signed.name === intended.name;
  return false;
}

/** Whether a signature claiming `claimed` is accepted for an image pulled as `intended`. */
export function identityAccepts(identity: Identity, intended: string, claimed: string): boolean {
  const parse = (s: string) => {
    try {
      return parseNormalized(s);
    } catch {
      return undefined;
    }
  };
  const want = parse(intended);
  const sig = parse(claimed);
  if (!sig) return false;
  switch (identity.type) {
    case 'matchExact':
      return !!want && !nameOnly(want) && !nameOnly(sig) && refString(sig) === refString(want);
    case 'matchRepoDigestOrExact':
      return !!want && repoDigestOrExact(want, sig);
    case 'matchRepository':
      return !!want && sig.name === want.name;
    case 'exactReference': {
      const fixed = parse(identity.dockerReference);
      return !!fixed && !nameOnly(fixed) && !nameOnly(sig) && refString(fixed) === refString(sig);
    }
    case 'exactRepository': {
      const fixed = parse(identity.dockerRepository);
      return !!fixed && fixed.name === sig.name;
    }
    case 'remapIdentity': {
      if (!want) return false;
      const { prefix, signedPrefix } = identity;
      const hit = want.name === prefix || (want.name.startsWith(prefix) && want.name[prefix.length] === '/');
      let mapped = want;
      if (hit) {
        const text = refString(want).replace(prefix, signedPrefix);
        const re = parse(text);
        if (!re || refString(re) !== text) return false; // reference.ParseNamed: must already be normalized
        mapped = re;
      }
      return repoDigestOrExact(mapped, sig);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The whole check

export interface StrictInput {
  publicKey: string | KeyObject;
  payload: Buffer;
  /** The `dev.cosignproject.cosign/signature` annotation. */
  signature: string;
  /** The manifest bytes being pulled; the signed digest must be theirs. */
  manifest: Buffer;
  /** The image as pulled, `host/repo:tag` or `host/repo@digest`. */
  intended: string;
  /** Default: matchRepoDigestOrExact, as containers/image. */
  identity?: Identity;
}

export interface StrictClaims {
  dockerReference: string;
  digest: string;
  creator?: string;
  timestamp?: number;
}

/** Reads a payload as containers/image's UntrustedSigstorePayload.strictUnmarshalJSON does. */
export function strictPayload(payload: Buffer): StrictClaims {
  const top = exact(readJson(payload.toString('utf8')), ['critical', 'optional']);
  const out: Partial<StrictClaims> = {};
  const optional = top.get('optional')!;
  if (optional.t !== 'null') {
    const o = paranoid(optional, () => true);
    const creator = o.get('creator');
    if (creator) out.creator = goString(creator);
    const ts = o.get('timestamp');
    if (ts) {
      if (ts.t !== 'number' && ts.t !== 'null') fail('cannot unmarshal optional.timestamp into float64');
      const v = ts.t === 'number' ? ts.v : 0;
      if (!Number.isInteger(v)) fail('Field optional.timestamp is not an integer');
      out.timestamp = v;
    }
  }
  const critical = exact(top.get('critical')!, ['type', 'image', 'identity']);
  const type = goString(critical.get('type')!);
  if (type !== 'cosign container image signature') fail(`Unrecognized signature type ${type}`);
  const image = exact(critical.get('image')!, ['docker-manifest-digest']);
  out.digest = parseDigest(goString(image.get('docker-manifest-digest')!));
  const identity = exact(critical.get('identity')!, ['docker-reference']);
  out.dockerReference = goString(identity.get('docker-reference')!);
  return out as StrictClaims;
}

/** VerifySigstorePayload with a sigstoreSigned policy's key: signature, payload, digest, identity. */
export function strictVerify(i: StrictInput): StrictClaims {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(i.signature.replace(/[\r\n]/g, '')))
    fail('base64 decoding: illegal base64 data');
  const key = typeof i.publicKey === 'string' ? createPublicKey(i.publicKey) : i.publicKey;
  if (key.asymmetricKeyType !== 'ec') fail('only ECDSA keys are used here');
  let good = false;
  try {
    good = nodeVerify('sha256', i.payload, { key, dsaEncoding: 'der' }, Buffer.from(i.signature, 'base64'));
  } catch {
    good = false;
  }
  if (!good) fail('cryptographic signature verification failed');
  const claims = strictPayload(i.payload);
  const [alg, hex] = claims.digest.split(':') as [string, string];
  if (createHash(alg).update(i.manifest).digest('hex') !== hex) fail(`Signature for digest ${claims.digest} does not match`);
  const identity = i.identity ?? { type: 'matchRepoDigestOrExact' };
  if (!identityAccepts(identity, i.intended, claims.dockerReference))
    fail(`Signature for identity "${claims.dockerReference}" is not accepted`);
  return claims;
}

// ---------------------------------------------------------------------------------------------
// Writing and reading signatures as other tools do

/** The payload containers/image (podman, skopeo) writes: Go's json.Marshal of maps, so keys sorted. */
export function podmanPayload(
  dockerReference: string,
  digest: string,
  creator = 'containers/image 5.36.1',
  timestamp = 1795864366,
): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': dockerReference },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: { creator, timestamp },
    }),
  );
}

/** Signs a payload as cosign and containers/image do: ECDSA P-256, SHA-256, ASN.1 DER, base64. */
export function cosignSign(privateKey: KeyObject, payload: Buffer): string {
  return nodeSign('sha256', payload, { key: privateKey, dsaEncoding: 'der' }).toString('base64');
}

export interface AttachmentLayer {
  payload: Buffer;
  signature: string;
}

/** The `.sig` attachment of `digest` read from a registry with plain HTTP, as cosign reads it. */
export async function readAttachment(registryUrl: string, repo: string, digest: string): Promise<AttachmentLayer[]> {
  const tag = `${digest.replace(':', '-')}.sig`;
  const m = await fetch(`${registryUrl}/v2/${repo}/manifests/${tag}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (m.status !== 200) fail(`no attachment ${tag}: ${m.status}`);
  const manifest = JSON.parse(await m.text()) as {
    layers: Array<{ mediaType: string; digest: string; annotations?: Record<string, string> }>;
  };
  const out: AttachmentLayer[] = [];
  for (const l of manifest.layers) {
    if (l.mediaType !== 'application/vnd.dev.cosign.simplesigning.v1+json') continue;
    const b = await fetch(`${registryUrl}/v2/${repo}/blobs/${l.digest}`);
    const payload = Buffer.from(await b.arrayBuffer());
    if (`sha256:${createHash('sha256').update(payload).digest('hex')}` !== l.digest) fail('payload blob does not match its digest');
    out.push({ payload, signature: l.annotations?.['dev.cosignproject.cosign/signature'] ?? '' });
  }
  return out;
}

/** The manifest bytes of `repo@digest` in a registry. */
export async function readManifest(registryUrl: string, repo: string, digest: string): Promise<Buffer> {
  const r = await fetch(`${registryUrl}/v2/${repo}/manifests/${digest}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
  });
  if (r.status !== 200) fail(`no manifest ${repo}@${digest}: ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}
