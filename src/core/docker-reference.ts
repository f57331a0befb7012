// Docker image references as containers/image reads them (its docker/reference package, a fork
// of distribution/reference): `[domain/]path[:tag][@digest]`, normalized the way
// ParseNormalizedNamed does (no domain → docker.io, a single docker.io segment → library/…).
// Used to compare the identity a signature claims with the image being pulled. Pure: no I/O.

const ALNUM = '[a-z0-9]+';
// The fork writes the separator as `(?:[._]|__|[-]*)` repeated; an empty `-*` only continues the
// alphanumeric run, so `-+` with the repetition made optional is the same language, and it does
// not backtrack exponentially in JavaScript's regex engine.
const NAME_COMPONENT = `${ALNUM}(?:(?:[._]|__|-+)${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const PATH = `${NAME_COMPONENT}(?:/${NAME_COMPONENT})*`;
const REFERENCE = new RegExp(`^((?:${DOMAIN}/)?${PATH})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const ANCHORED_NAME = new RegExp(`^(?:(${DOMAIN})/)?(${PATH})$`);
const IDENTIFIER = /^[a-f0-9]{64}$/;
/** go-digest's algorithms and their hex lengths; anything else is refused. */
const DIGEST_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
const NAME_MAX = 255;
/** Longer than any valid reference (name 255, tag 128, a sha512 digest 135): refused unparsed. */
const INPUT_MAX = 1024;

export interface DockerReference {
  domain: string;
  path: string;
  /** `domain/path`. */
  name: string;
  tag?: string;
  digest?: string;
}

export class ReferenceError extends Error {
  override name = 'ReferenceError';
}

/** `name[:tag][@digest]`, as containers/image prints a reference. */
export function referenceString(r: DockerReference): string {
  return `${r.name}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** Neither a tag nor a digest: a repository alone. */
export const isNameOnly = (r: DockerReference): boolean => r.tag === undefined && r.digest === undefined;

/** go-digest's Parse: a registered algorithm with lower-case hex of its length. */
function checkDigest(d: string): void {
  const i = d.indexOf(':');
  const want = DIGEST_HEX[d.slice(0, i)];
  if (want === undefined) throw new ReferenceError(`unsupported digest algorithm in ${d}`);
  const hex = d.slice(i + 1);
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) throw new ReferenceError(`invalid digest ${d}`);
}

/** reference.Parse: the grammar, with no normalization. */
function parse(s: string): DockerReference {
  const m = s.length <= INPUT_MAX ? REFERENCE.exec(s) : null;
  if (!m) {
    if (s === '') throw new ReferenceError('repository name must have at least one component');
    if (s.length <= INPUT_MAX && REFERENCE.test(s.toLowerCase())) throw new ReferenceError('repository name must be lowercase');
    throw new ReferenceError('invalid reference format');
  }
  const name = m[1]!;
  if (name.length > NAME_MAX) throw new ReferenceError(`repository name must not be more than ${NAME_MAX} characters`);
  const n = ANCHORED_NAME.exec(name)!;
  const out: DockerReference = { domain: n[1] ?? '', path: n[2]!, name };
  if (m[2] !== undefined) out.tag = m[2];
  if (m[3] !== undefined) {
    checkDigest(m[3]);
    out.digest = m[3];
  }
  return out;
}

/** reference.ParseNormalizedNamed: a familiar or full reference, normalized; throws ReferenceError. */
export function parseNormalizedNamed(s: string): DockerReference {
  if (IDENTIFIER.test(s)) throw new ReferenceError(`invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`);
  const i = s.indexOf('/');
  let domain: string;
  let rest: string;
  if (i < 0 || (!/[.:]/.test(s.slice(0, i)) && s.slice(0, i) !== 'localhost')) {
    domain = 'docker.io';
    rest = s;
  } else {
    domain = s.slice(0, i);
    rest = s.slice(i + 1);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  const colon = rest.indexOf(':');
  const remote = colon < 0 ? rest : rest.slice(0, colon);
  if (remote.toLowerCase() !== remote) throw new ReferenceError('invalid reference format: repository name must be lowercase');
  return parse(`${domain}/${rest}`);
}

/** reference.ParseNamed: like parseNormalizedNamed, but `s` must already be in normalized form. */
export function parseNamed(s: string): DockerReference {
  const r = parseNormalizedNamed(s);
  if (referenceString(r) !== s) throw new ReferenceError(`repository name must be canonical: ${s}`);
  return r;
}

/** The domain alone (`host[:port]`), as remapIdentity's prefixes may be. */
export const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
/** A name that starts with a domain: `host[:port]/path`. */
export const DOMAIN_NAME_RE = new RegExp(`^${DOMAIN}/${PATH}$`);
