// Bearer-token guard for the management API: 401 without a valid token (with a Bearer
// challenge), 403 when the token's scopes do not cover the action. Every refusal of a presented
// token is written to the audit log; the token itself never is, nor is it logged.
import type { NextFunction, Request, Response } from 'express';
import type { AuditTrail } from '../audit/trail.js';
import { ApiError } from '../http/api-error.js';
import { allows, type Permission, type Scope, type Tokens } from './tokens.js';

export interface Actor {
  id: string;
  name: string;
  scopes: Scope[];
  keyIds: string[];
}

export const SYSTEM_ACTOR: Actor = { id: 'system', name: 'system', scopes: ['admin'], keyIds: [] };

export const CHALLENGE = 'Bearer realm="trustgate", error="invalid_token"';

/** The authenticated actor of a request (set by `authenticate`). */
export function actorOf(res: Response): Actor {
  const a = res.locals.actor as Actor | undefined;
  if (!a) throw new ApiError(401, 'UNAUTHORIZED', 'a bearer token is required');
  return a;
}

export function isAdmin(a: Actor): boolean {
  return a.scopes.includes('admin');
}

/** An actor as the signing service sees it: admins sign with every held key, others with the keys their token names. */
export function signingIdentity(a: Actor): { id: string; name: string; admin: boolean; keyIds: readonly string[] } {
  return { id: a.id, name: a.name, admin: isAdmin(a), keyIds: a.keyIds };
}

/** Where refusals go: the app's audit log (any AuditTrail). */
type DenialSink = Pick<AuditTrail, 'appendDenial'>;

export function authenticate(tokens: Pick<Tokens, 'authenticate'>, audit: DenialSink) {
  return (req: Request, res: Response, next: NextFunction): void => void check(req, res).then(next, next);
  async function check(req: Request, res: Response): Promise<void> {
    const header = req.headers.authorization;
    if (!header) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="trustgate"');
      throw new ApiError(401, 'UNAUTHORIZED', 'a bearer token is required');
    }
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    const rec = m ? await tokens.authenticate(m[1]!) : undefined;
    if (!rec) {
      const reason = m ? 'unknown or expired token' : 'malformed Authorization header';
      audit.appendDenial(
        {
          actor: { id: 'anonymous', name: 'anonymous' },
          action: 'auth.denied',
          outcome: 'denied',
          detail: { reason, method: req.method, path: req.path },
        },
        { reason },
      );
      res.setHeader('WWW-Authenticate', CHALLENGE);
      throw new ApiError(401, 'UNAUTHORIZED', 'the bearer token is not valid');
    }
    res.locals.actor = { id: rec.id, name: rec.name, scopes: rec.scopes, keyIds: rec.keyIds ?? [] } satisfies Actor;
  }
}

/** Throws 403 (and audits the refusal) unless the actor may `perm` (on `gun`). */
export function authorize(audit: DenialSink, actor: Actor, perm: Permission, gun: string | undefined, action: string): void {
  if (allows(actor.scopes, perm, gun)) return;
  audit.appendDenial(
    {
      actor: { id: actor.id, name: actor.name },
      action: 'auth.denied',
      outcome: 'denied',
      ...(gun !== undefined ? { gun } : {}),
      detail: { attempted: action, needs: perm },
    },
    { attempted: action, needs: perm },
  );
  throw new ApiError(
    403,
    'FORBIDDEN',
    gun !== undefined ? `this token may not ${perm === 'admin' ? 'administer' : perm} ${gun}` : `this action needs the ${perm} scope`,
  );
}
