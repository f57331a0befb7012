// A minimal registry token issuer, so a deployment (and the tests) need no separate auth server:
//
//   GET /api/v1/token?service=<service>&scope=repository:<gun>:pull,push[&scope=…]
//   Authorization: Basic base64(user:password)        (optional: without it, an anonymous token)
//   → 200 {"token": "<JWT>", "access_token": "<JWT>", "expires_in": <s>, "issued_at": "<RFC 3339>"}
//
// as the docker registry token spec describes. The JWT is signed with TRUSTGATE_AUTH_TOKEN_KEY
// (PEM, EC P-256 → ES256 or RSA → RS256), carries TRUSTGATE_AUTH_TOKEN_CERT in `x5c` and its
// libtrust `kid`, `iss` = TRUSTGATE_AUTH_ISSUER, `aud` = the service, and an `access` claim with
// the requested actions the user's grants allow (none for anonymous requests, so clients that try
// anonymously first — `notary list` does — come back with credentials). Wrong credentials get 401.
//
// Users file (TRUSTGATE_AUTH_USERS), htpasswd-style, one user a line, `#` comments:
//   <name>:<password hash>[:<grant> <grant> …]
//   hash  = $scrypt$<N>$<r>$<p>$<salt base64>$<key base64>     (see hashPassword; made by
//           `node --import tsx -e "import('./src/auth/jwt-issuer.ts').then(async m => console.log(await m.hashPassword(process.argv[1])))" 'the password'`)
//   grant = <type>:<name pattern>:<actions>, e.g. repository:example.com/team/*:pull,push
//           or registry:catalog:*. Name patterns are GUN patterns (src/core/tuf/gun-pattern.ts):
//           anchored, `*` within one path segment, a `**` segment for one or more segments.
import {
  randomBytes,
  randomUUID,
  scrypt as scryptCb,
  timingSafeEqual,
  createPrivateKey,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import type { RegistryAuthConfig } from '../config/registry-auth.js';
import { isValidGun } from '../core/tuf/gun.js';
import { GunPatternError, compileGunPattern } from '../core/tuf/gun-pattern.js';
import type { Logger } from '../observability/log.js';
import { libtrustKeyId, type AccessEntry } from './jwt-keys.js';
import { DEFAULT_LOGIN_GATE, LoginGate } from './login-gate.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';

const scrypt = promisify(scryptCb) as (
  pw: string | Buffer,
  salt: Buffer,
  len: number,
  opts: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

export interface Grant {
  type: string;
  pattern: RegExp;
  actions: Set<string>;
}

export interface UserEntry {
  name: string;
  hash: string;
  grants: Grant[];
}

export class UsersFileError extends Error {
  override name = 'UsersFileError';
}

/** An anchored name pattern (src/core/tuf/gun-pattern.ts): `*` within one segment, a `**` segment for one or more. */
export function namePattern(p: string): RegExp {
  try {
    return compileGunPattern(p).regexp;
  } catch (e) {
    if (e instanceof GunPatternError) throw new UsersFileError(e.message);
    throw e;
  }
}

/** Splits `type:name:actions`, where the name may itself contain `:` (host:port GUNs). */
export function splitScope(s: string): { type: string; name: string; actions: string[] } | undefined {
  const first = s.indexOf(':');
  const last = s.lastIndexOf(':');
  if (first <= 0 || last <= first + 1) return undefined;
  const actions = s
    .slice(last + 1)
    .split(',')
    .filter(Boolean);
  return { type: s.slice(0, first), name: s.slice(first + 1, last), actions };
}

export function parseUsersFile(text: string): Map<string, UserEntry> {
  const users = new Map<string, UserEntry>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const c1 = line.indexOf(':');
    const name = line.slice(0, c1);
    const rest = line.slice(c1 + 1);
    const c2 = rest.indexOf(':');
    const hash = c2 < 0 ? rest : rest.slice(0, c2);
    if (c1 <= 0 || !/^\$scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(hash)) {
      throw new UsersFileError(`users file line ${i + 1}: expected name:$scrypt$… (no other hash format is supported)`);
    }
    const grants = (c2 < 0 ? '' : rest.slice(c2 + 1))
      .split(/\s+/)
      .filter(Boolean)
      .map((g) => {
        const s = splitScope(g);
        if (!s || s.actions.length === 0) throw new UsersFileError(`users file line ${i + 1}: bad grant ${JSON.stringify(g)}`);
        return { type: s.type, pattern: namePattern(s.name), actions: new Set(s.actions) };
      });
    users.set(name, { name, hash, grants });
  });
  return users;
}

/** `$scrypt$N$r$p$salt$key` for the users file. */
export async function hashPassword(password: string, params = { N: 1 << 15, r: 8, p: 1 }): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 32, { ...params, maxmem: 256 * 1024 * 1024 });
  return `$scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function checkPassword(password: string, hash: string): Promise<boolean> {
  const [, , N, r, p, salt, key] = hash.split('$');
  const want = Buffer.from(key ?? '', 'base64');
  const n = Number(N);
  if (!Number.isInteger(n) || n < 2 || n > 1 << 20 || want.length === 0) return false;
  const got = await scrypt(password, Buffer.from(salt ?? '', 'base64'), want.length, {
    N: n,
    r: Number(r),
    p: Number(p),
    maxmem: 256 * 1024 * 1024,
  });
  return got.length === want.length && timingSafeEqual(got, want);
}

/** The access granted for the requested scopes: each requested action that some grant allows. */
export function grantAccess(grants: readonly Grant[], requested: readonly AccessEntry[]): AccessEntry[] {
  const out: AccessEntry[] = [];
  for (const req of requested) {
    const allowed = new Set<string>();
    if (req.type === 'repository' && !isValidGun(req.name)) continue; // `..`, empty segments, `*`: never granted
    for (const g of grants) {
      if (g.type !== req.type || !g.pattern.test(req.name)) continue;
      for (const a of req.actions) if (g.actions.has('*') || g.actions.has(a)) allowed.add(a);
    }
    if (allowed.size) out.push({ type: req.type, name: req.name, actions: req.actions.filter((a) => allowed.has(a)) });
  }
  return out;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** A hash no password matches, with the cost (N, r, p, key length) of `like`: what an unknown user is checked against. */
export function dummyHashLike(like: string | undefined): string {
  const [, , N = '32768', r = '8', p = '1', , key = ''] = (like ?? '').split('$');
  const len = Buffer.from(key, 'base64').length || 32;
  return `$scrypt$${N}$${r}$${p}$${randomBytes(16).toString('base64')}$${randomBytes(len).toString('base64')}`;
}

export class TokenIssuer {
  /** Password checks run (each one scrypt), for any user name, known or not. */
  passwordChecks = 0;
  private readonly gate: LoginGate;
  private readonly dummyHash: string;

  private constructor(
    private cfg: RegistryAuthConfig,
    private key: KeyObject,
    private alg: 'ES256' | 'RS256',
    readonly certificate: X509Certificate,
    private users: Map<string, UserEntry>,
    private log: Logger,
    private now: () => number,
    gate?: LoginGate,
  ) {
    this.gate = gate ?? new LoginGate(DEFAULT_LOGIN_GATE, now);
    // Hashes made by hashPassword all share one cost: the first user's stands for all.
    this.dummyHash = dummyHashLike(users.values().next().value?.hash);
  }

  /** The hash a password for `name` is checked against: the user's, or for an unknown name one of the same cost. */
  hashFor(name: string): string {
    return this.users.get(name)?.hash ?? this.dummyHash;
  }

  static load(cfg: RegistryAuthConfig, log: Logger, now: () => number = Date.now, gate?: LoginGate): TokenIssuer {
    if (!cfg.issuerKey || !cfg.issuerCert || !cfg.users)
      throw new UsersFileError('the token issuer needs a key, a certificate and a users file');
    const key = createPrivateKey(readFileSync(cfg.issuerKey));
    const certPem = readFileSync(cfg.issuerCert, 'utf8');
    const cert = new X509Certificate(certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0] ?? certPem);
    if (!cert.checkPrivateKey(key)) throw new UsersFileError('TRUSTGATE_AUTH_TOKEN_CERT does not match TRUSTGATE_AUTH_TOKEN_KEY');
    let alg: 'ES256' | 'RS256';
    if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') alg = 'ES256';
    else if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) alg = 'RS256';
    else throw new UsersFileError('TRUSTGATE_AUTH_TOKEN_KEY must be an EC P-256 or RSA (2048 bits or more) key');
    return new TokenIssuer(cfg, key, alg, cert, parseUsersFile(readFileSync(cfg.users, 'utf8')), log, now, gate);
  }

  /** Signs a token for a subject with the given access. */
  async issue(subject: string, access: AccessEntry[]): Promise<{ token: string; expiresIn: number; issuedAt: Date }> {
    const issuedAt = new Date(this.now());
    const iat = Math.floor(issuedAt.getTime() / 1000);
    const token = await new SignJWT({ access })
      .setProtectedHeader({
        alg: this.alg,
        typ: 'JWT',
        kid: libtrustKeyId(this.certificate.publicKey),
        x5c: [this.certificate.raw.toString('base64')],
      })
      .setIssuer(this.cfg.issuer)
      .setSubject(subject)
      .setAudience(this.cfg.service)
      .setIssuedAt(iat)
      .setNotBefore(iat - 1)
      .setExpirationTime(iat + this.cfg.tokenTtl)
      .setJti(randomUUID())
      .sign(this.key);
    return { token, expiresIn: this.cfg.tokenTtl, issuedAt };
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const repeated = repeatedParam(req.url ?? '/', ['scope']);
    if (repeated !== undefined)
      return json(res, 400, { errors: [{ code: 'INVALID_PARAMETERS', message: repeatedParamMessage(repeated), detail: null }] });
    const service = url.searchParams.get('service');
    if (service !== this.cfg.service) {
      return json(res, 400, {
        errors: [{ code: 'INVALID_PARAMETERS', message: 'unknown or missing service', detail: { service: this.cfg.service } }],
      });
    }
    const requested: AccessEntry[] = [];
    for (const param of url.searchParams.getAll('scope')) {
      for (const s of param.split(' ').filter(Boolean)) {
        const parsed = splitScope(s);
        if (!parsed) return json(res, 400, { errors: [{ code: 'INVALID_PARAMETERS', message: 'malformed scope', detail: s }] });
        requested.push(parsed);
      }
    }
    let subject = '';
    let grants: Grant[] = [];
    const auth = req.headers.authorization;
    if (auth) {
      const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
      const plain = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
      const colon = plain.indexOf(':');
      const name = colon > 0 ? plain.slice(0, colon) : '';
      const user = this.users.get(name);
      // The same path and scrypt cost for unknown users, so neither answers nor timing tell which names exist.
      const checked = await this.gate.run(req.socket.remoteAddress ?? '', async () => {
        this.passwordChecks++;
        return (await checkPassword(colon > 0 ? plain.slice(colon + 1) : '', this.hashFor(name))) && !!user;
      });
      if (typeof checked === 'object') {
        this.log('warn', 'token request refused: login rate limited', {
          user: name || undefined,
          client: req.socket.remoteAddress,
          reason: checked.reason,
        });
        return json(
          res,
          checked.status,
          { errors: [{ code: checked.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', message: checked.reason, detail: null }] },
          { 'Retry-After': String(checked.retryAfterS) },
        );
      }
      if (!checked || !user) {
        this.log('warn', 'token request with wrong credentials', { user: name || undefined });
        return json(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] },
          { 'WWW-Authenticate': 'Basic realm="trustgate token service"' },
        );
      }
      subject = user.name;
      grants = user.grants;
    }
    const access = grantAccess(grants, requested);
    const { token, expiresIn, issuedAt } = await this.issue(subject, access);
    this.log('info', 'registry token issued', {
      subject: subject || '(anonymous)',
      access: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`),
    });
    json(res, 200, { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt.toISOString() });
  }
}
