// Trustgate tokens on the Notary API (TRUSTGATE_AUTH=trustgate, the default). A request presents
// its token as `Authorization: Bearer <token>`, or as Basic with any user name and the token as
// the password (what NOTARY_AUTH and docker's credential store send). Each route declares what it
// needs in the Notary API's route table (notary/routes.ts): `read`, `sign` or `admin` on the GUN
// (`read` needs no token when anonymous reads are on), `ping` any valid token.
// No or a bad credential: 401 UNAUTHORIZED with a Bearer challenge; a token without the
// permission: 403 DENIED. Clients (notary, docker) learn the scheme from the ping's challenge
// only, and Bearer is the one they follow both without credentials (reads) and with them (Basic
// would fail every anonymous read). The challenge's realm, GET /api/v1/token here, hands back the
// presented token after checking it, or ANONYMOUS_TOKEN without one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuditActor } from '../audit/log.js';
import type { AuditTrail } from '../audit/trail.js';
import { NotaryErrors, sendError } from '../http/errcode.js';
import type { Logger } from '../observability/log.js';
import { tokenOf } from './credentials.js';
import { challengeHeader, requiredAccess } from './registry-token.js';
import { allows, type Permission, type Scope } from './tokens.js';

/** What the realm answers a client without credentials; presented back, it counts as no token. */
export const ANONYMOUS_TOKEN = 'anonymous';
export const ANONYMOUS_ACTOR: AuditActor = { id: 'anonymous', name: 'anonymous' };
/** The `service` of the Bearer challenge. */
export const NOTARY_SERVICE = 'trustgate';
const TOKEN_TTL_SECONDS = 300;

/** What a Notary API route needs: notary's actions (for registry tokens) and a trustgate permission. */
export interface NotaryAccess {
  readonly actions: readonly string[];
  /** `ping`: any valid token; `none`: no credential. */
  readonly permission: Permission | 'ping' | 'none';
}

export interface TrustgateAuthOptions {
  tokens: { authenticate(token: string): Promise<{ id: string; name: string; scopes: readonly string[] } | undefined> };
  anonymousRead: boolean;
  /** The challenge's realm; default: `<scheme>://<Host>/api/v1/token`. */
  realm?: string;
  log: Logger;
  /** Where refusals of presented tokens are written (a request without one is not: clients send that first). */
  audit: () => Pick<AuditTrail, 'appendDenial'> | undefined;
  /** Hears who made each request let through (for the audit of writes). */
  onGranted: (req: IncomingMessage, actor: AuditActor) => void;
}

export interface TrustgateAuth {
  /** The NotaryOptions.authorize hook. */
  authorize(req: IncomingMessage, res: ServerResponse, gun: string | undefined, access: NotaryAccess): Promise<boolean>;
  /** GET /api/v1/token: the Bearer challenge's realm. */
  tokenEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createTrustgateAuth(o: TrustgateAuthOptions): TrustgateAuth {
  // The scheme of the connection the request came on (a test may serve TLS without TRUSTGATE_TLS_*).
  const realmOf = (req: IncomingMessage) =>
    o.realm ?? `${(req.socket as TLSSocket).encrypted ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}/api/v1/token`;

  const denyAudit = (actor: AuditActor, reason: string, needs: string, method: string, gun: string | undefined) => {
    try {
      o.audit()?.appendDenial(
        {
          actor,
          action: 'auth.denied',
          outcome: 'denied',
          ...(gun !== undefined ? { gun } : {}),
          detail: { api: 'notary', reason, needs, method },
        },
        { api: 'notary', reason },
      );
    } catch (e) {
      o.log('error', 'audit log write failed', { error: (e as Error).message });
    }
  };

  async function authorize(req: IncomingMessage, res: ServerResponse, gun: string | undefined, access: NotaryAccess): Promise<boolean> {
    const method = req.method ?? 'GET';
    const perm = access.permission;
    if (perm === 'none') return true;
    const need = requiredAccess(gun, perm === 'ping' ? ['*'] : access.actions);
    const needs = perm === 'ping' ? 'a valid token' : perm;
    const detail = need.actions.map((a) => ({ Type: need.type, Class: '', Name: need.name, Action: a }));
    const refuse = (status: 401 | 403, error: 'invalid_token' | 'insufficient_scope' | undefined, reason: string, actor?: AuditActor) => {
      o.log('info', 'notary API access denied', { method, path: req.url, need: needs, reason });
      if (error) denyAudit(actor ?? ANONYMOUS_ACTOR, error, needs, method, gun);
      req.resume(); // drain an unread body (a publish) so the connection can be reused
      if (status === 403) sendError(res, NotaryErrors.DENIED, detail);
      else
        sendError(res, NotaryErrors.UNAUTHORIZED, detail, {
          'WWW-Authenticate': challengeHeader({ realm: realmOf(req), service: NOTARY_SERVICE }, need, error),
        });
      return false;
    };
    const header = req.headers.authorization;
    const token = tokenOf(header);
    if (token === undefined || token === ANONYMOUS_TOKEN) {
      if (header && token === undefined) return refuse(401, 'invalid_token', 'malformed Authorization header');
      if (perm === 'read' && o.anonymousRead) {
        o.onGranted(req, ANONYMOUS_ACTOR);
        return true;
      }
      return refuse(401, undefined, 'no token');
    }
    const rec = await o.tokens.authenticate(token);
    if (!rec) return refuse(401, 'invalid_token', 'unknown or expired token');
    const actor = { id: rec.id, name: rec.name };
    if (perm !== 'ping' && !allows(rec.scopes as Scope[], perm, gun))
      return refuse(403, 'insufficient_scope', `the token may not ${perm} ${gun ?? 'every repository'}`, actor);
    o.onGranted(req, actor);
    return true;
  }

  async function tokenEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers.authorization;
    const token = tokenOf(header);
    let answer = ANONYMOUS_TOKEN;
    if (header || token !== undefined) {
      const rec = token === undefined ? undefined : await o.tokens.authenticate(token);
      if (!rec) {
        denyAudit(ANONYMOUS_ACTOR, 'invalid_token', 'a valid token', req.method ?? 'GET', undefined);
        return sendError(res, NotaryErrors.UNAUTHORIZED, undefined, { 'WWW-Authenticate': 'Basic realm="trustgate"' });
      }
      answer = token!;
    }
    const body = JSON.stringify({ token: answer, expires_in: TOKEN_TTL_SECONDS, issued_at: new Date().toISOString() });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(body);
  }

  return { authorize, tokenEndpoint };
}
