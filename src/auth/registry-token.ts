// Docker registry token auth for the Notary API (spec §2.5; off unless TRUSTGATE_AUTH=token).
// Each route needs an access set: `repository:<gun>:<actions>`, or `registry:catalog:*` for
// routes without a GUN. A request carries `Authorization: Bearer <JWT>`; the JWT must be
// RS256/ES256 (or the 384/512 variants), signed by a key whose certificate is in the trusted
// bundle (TRUSTGATE_AUTH_ROOT_CERT_BUNDLE) — named by an `x5c` chain that ends in the bundle, or
// by a `kid` in libtrust form matching a bundle certificate — with `iss` = TRUSTGATE_AUTH_ISSUER,
// `aud` = TRUSTGATE_AUTH_SERVICE, valid `exp`/`nbf`, and an `access` claim covering every action
// (`*` in a token covers every action on that resource). Otherwise: 401 with
//   WWW-Authenticate: Bearer realm="…",service="…",scope="repository:<gun>:push,pull"[,error="…"]
// (`invalid_token` for a bad token, `insufficient_scope` for a good one that lacks access, none
// when there was no token) and the UNAUTHORIZED body listing the access needed. Tokens are never
// logged. Health and metrics are not routed through here (handler.ts).
import { X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { RegistryAuthConfig } from '../config/registry-auth.js';
import { NotaryErrors, sendError } from '../http/errcode.js';
import type { Logger } from '../observability/log.js';
import { TokenIssuer } from './jwt-issuer.js';
import { libtrustKeyId, type AccessEntry } from './jwt-keys.js';

export { libtrustKeyId, type AccessEntry };

export const TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'] as const;
const CLOCK_SKEW_SECONDS = 60;

export class TokenError extends Error {
  override name = 'TokenError';
}

/** The certificates of a PEM bundle. */
export function parseCertBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/** Parses an `access` claim; anything not shaped like the docker token spec's list is refused. */
function parseAccess(claim: unknown): AccessEntry[] {
  if (claim === undefined || claim === null) return [];
  if (!Array.isArray(claim)) throw new TokenError('access claim is not a list');
  return claim.map((e) => {
    const x = e as { type?: unknown; name?: unknown; actions?: unknown };
    if (
      typeof x?.type !== 'string' ||
      typeof x.name !== 'string' ||
      !Array.isArray(x.actions) ||
      !x.actions.every((a) => typeof a === 'string')
    ) {
      throw new TokenError('malformed access entry');
    }
    return { type: x.type, name: x.name, actions: x.actions as string[] };
  });
}

/** Whether granted access covers `need`: same type and name, and each action (or `*`) granted. */
export function covers(granted: readonly AccessEntry[], need: AccessEntry): boolean {
  const have = new Set<string>();
  for (const g of granted) if (g.type === need.type && g.name === need.name) for (const a of g.actions) have.add(a);
  return have.has('*') || need.actions.every((a) => have.has(a));
}

/** The access set a Notary route needs: its GUN's repository, or the catalog. */
export function requiredAccess(gun: string | undefined, actions: readonly string[]): AccessEntry {
  return gun === undefined
    ? { type: 'registry', name: 'catalog', actions: ['*'] }
    : { type: 'repository', name: gun, actions: [...actions] };
}

const quote = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;

export function challengeHeader(
  cfg: Pick<RegistryAuthConfig, 'realm' | 'service'>,
  need: AccessEntry,
  error?: 'invalid_token' | 'insufficient_scope',
): string {
  let h = `Bearer realm=${quote(cfg.realm)},service=${quote(cfg.service)},scope=${quote(`${need.type}:${need.name}:${need.actions.join(',')}`)}`;
  if (error) h += `,error=${quote(error)}`;
  return h;
}

/** Checks registry tokens against the trusted bundle, issuer and service. */
export class RegistryTokenVerifier {
  private trusted: X509Certificate[];
  private byKid = new Map<string, X509Certificate>();
  private fingerprints: Set<string>;

  constructor(
    private cfg: Pick<RegistryAuthConfig, 'issuer' | 'service'>,
    bundlePem: string,
    private now: () => number = Date.now,
  ) {
    this.trusted = parseCertBundle(bundlePem);
    if (this.trusted.length === 0) throw new TokenError('the root certificate bundle holds no certificate');
    for (const c of this.trusted) this.byKid.set(libtrustKeyId(c.publicKey), c);
    this.fingerprints = new Set(this.trusted.map((c) => c.fingerprint256));
  }

  private checkValidity(c: X509Certificate): void {
    const t = this.now();
    if (t < Date.parse(c.validFrom) - CLOCK_SKEW_SECONDS * 1000 || t > Date.parse(c.validTo) + CLOCK_SKEW_SECONDS * 1000) {
      throw new TokenError('token signing certificate is not valid now');
    }
  }

  /** The public key that must have signed a token with this header. */
  private keyFor(header: { x5c?: unknown; kid?: unknown }): KeyObject {
    if (header.x5c !== undefined) {
      if (
        !Array.isArray(header.x5c) ||
        header.x5c.length === 0 ||
        header.x5c.length > 10 ||
        !header.x5c.every((c) => typeof c === 'string')
      ) {
        throw new TokenError('malformed x5c header');
      }
      let chain: X509Certificate[];
      try {
        chain = (header.x5c as string[]).map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
      } catch {
        throw new TokenError('malformed certificate in x5c header');
      }
      for (let i = 0; i < chain.length; i++) {
        const c = chain[i]!;
        this.checkValidity(c);
        if (this.fingerprints.has(c.fingerprint256)) return chain[0]!.publicKey; // reached a trusted certificate
        const issuer = chain[i + 1] ?? this.trusted.find((t) => t.ca && c.checkIssued(t) && c.verify(t.publicKey));
        if (!issuer || !issuer.ca || !c.checkIssued(issuer) || !c.verify(issuer.publicKey)) break;
        if (!chain[i + 1]) return chain[0]!.publicKey; // issued by a trusted certificate
      }
      throw new TokenError('x5c chain does not lead to a trusted certificate');
    }
    if (typeof header.kid === 'string') {
      const c = this.byKid.get(header.kid);
      if (!c) throw new TokenError('token key ID is not trusted');
      this.checkValidity(c);
      return c.publicKey;
    }
    throw new TokenError('token names no signing key (x5c or kid)');
  }

  /** Whether a certificate is in the bundle or issued by one in it. */
  trusts(cert: X509Certificate): boolean {
    return this.fingerprints.has(cert.fingerprint256) || this.trusted.some((t) => t.ca && cert.checkIssued(t) && cert.verify(t.publicKey));
  }

  /** Verifies a token and returns its subject and access; throws TokenError. */
  async verify(token: string): Promise<{ subject: string; access: AccessEntry[] }> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, async (header) => this.keyFor(header as { x5c?: unknown; kid?: unknown }), {
        issuer: this.cfg.issuer,
        audience: this.cfg.service,
        algorithms: [...TOKEN_ALGORITHMS],
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp'],
        currentDate: new Date(this.now()),
      }));
    } catch (e) {
      if (e instanceof TokenError) throw e;
      if (e instanceof joseErrors.JOSEError) throw new TokenError(`invalid token: ${e.code}`);
      throw new TokenError('invalid token');
    }
    return { subject: typeof payload.sub === 'string' ? payload.sub : '', access: parseAccess((payload as { access?: unknown }).access) };
  }
}

/** A request refused for its token (not for lacking one): what the audit log records. */
export interface NotaryDenial {
  error: 'invalid_token' | 'insufficient_scope';
  /** Why, without the token: e.g. `invalid token: ERR_JWT_EXPIRED`. */
  reason: string;
  /** The access set the route needs, as in the challenge: `repository:<gun>:push,pull`. */
  needs: string;
  gun?: string;
  method: string;
  /** The verified token's subject (insufficient_scope only: an invalid token's claims are not believed). */
  subject?: string;
}

export interface RegistryAuth {
  /** The NotaryOptions.authorize hook. */
  authorize(
    req: IncomingMessage,
    res: ServerResponse,
    gun: string | undefined,
    access: { readonly actions: readonly string[] },
  ): Promise<boolean>;
  /** GET /api/v1/token, when the built-in issuer is configured. */
  tokenEndpoint?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  verifier: RegistryTokenVerifier;
}

/**
 * The Notary API's token check. `onDenied` hears of every request refused for a bad token or for a
 * token without the access; a request without a token is not reported, since Docker's token flow
 * sends every first request without one and expects the challenge.
 */
export function createRegistryAuth(
  cfg: RegistryAuthConfig,
  log: Logger,
  now: () => number = Date.now,
  onDenied?: (d: NotaryDenial) => void,
  onGranted?: (req: IncomingMessage, subject: string) => void,
): RegistryAuth {
  const verifier = new RegistryTokenVerifier(cfg, readFileSync(cfg.rootCertBundle, 'utf8'), now);
  const issuer = cfg.issuerKey ? TokenIssuer.load(cfg, log, now) : undefined;
  if (issuer && !verifier.trusts(issuer.certificate)) {
    log('warn', 'the built-in token issuer certificate is not in TRUSTGATE_AUTH_ROOT_CERT_BUNDLE: its tokens will be refused', {});
  }

  async function authorize(
    req: IncomingMessage,
    res: ServerResponse,
    gun: string | undefined,
    { actions }: { readonly actions: readonly string[] },
  ): Promise<boolean> {
    const need = requiredAccess(gun, actions);
    const needs = `${need.type}:${need.name}:${need.actions.join(',')}`;
    const deny = (error: 'invalid_token' | 'insufficient_scope' | undefined, reason: string, subject?: string) => {
      log('info', 'notary API access denied', { method: req.method, path: req.url, need: needs, reason });
      if (error && onDenied) {
        onDenied({
          error,
          reason,
          needs,
          method: req.method ?? 'GET',
          ...(gun !== undefined ? { gun } : {}),
          ...(subject !== undefined ? { subject } : {}),
        });
      }
      req.resume(); // drain an unread body (a publish) so the connection can be reused
      const detail = need.actions.map((a) => ({ Type: need.type, Class: '', Name: need.name, Action: a }));
      sendError(res, NotaryErrors.UNAUTHORIZED, detail, { 'WWW-Authenticate': challengeHeader(cfg, need, error) });
      return false;
    };
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
    if (!m) return deny(header ? 'invalid_token' : undefined, header ? 'not a bearer token' : 'no token');
    let access: AccessEntry[];
    let subject: string;
    try {
      ({ access, subject } = await verifier.verify(m[1]!));
    } catch (e) {
      return deny('invalid_token', e instanceof TokenError ? e.message : 'invalid token');
    }
    if (!covers(access, need)) return deny('insufficient_scope', 'token lacks the access', subject);
    onGranted?.(req, subject);
    return true;
  }

  return { authorize, verifier, ...(issuer ? { tokenEndpoint: (req, res) => issuer.handle(req, res) } : {}) };
}
