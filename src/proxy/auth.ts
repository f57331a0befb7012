// Who may use the proxy. Clients present trustgate tokens as a Bearer token or as the password of
// Basic credentials (any user name), which is what `docker login` and skopeo send after a Basic
// challenge. Pulls need read access to the GUN, pushes sign access (a push is signed). Anonymous
// pulls are allowed only when configured. Without a token source the proxy is open.
import { timingSafeEqual } from 'node:crypto';

export interface Principal {
  id: string;
  name: string;
}

export type ProxyAction = 'pull' | 'push' | 'catalog';

/** What the proxy needs from a token store (trustgate's management tokens fit it). */
export interface TokenSource {
  /** The token's owner and scopes, or undefined for an unknown or expired token. */
  authenticate(token: string): { id: string; name: string; scopes: readonly string[] } | undefined;
  /** Whether scopes allow `perm` on `gun` (`read` for pulls, `sign` for pushes). */
  allows(scopes: readonly string[], perm: 'read' | 'sign', gun?: string): boolean;
}

export type AuthResult = { ok: true; principal: Principal } | { ok: false; status: 401 | 403; message: string };

export const ANONYMOUS: Principal = { id: 'anonymous', name: 'anonymous' };
export const CHALLENGE = 'Basic realm="trustgate"';

export class ProxyAuth {
  constructor(
    private tokens: TokenSource | undefined,
    private anonymousPull: boolean,
  ) {}

  get open(): boolean {
    return !this.tokens;
  }

  /** The token in an Authorization header: `Bearer <t>` or Basic `<any>:<t>`. */
  static tokenOf(header: string | undefined): string | undefined {
    if (!header) return undefined;
    const bearer = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (bearer) return bearer[1];
    const basic = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!basic) return undefined;
    const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const i = text.indexOf(':');
    return i >= 0 ? text.slice(i + 1) : undefined;
  }

  /** Decides one request: `gun` is undefined for registry-wide requests (ping, catalog). */
  check(header: string | undefined, action: ProxyAction | 'ping', gun: string | undefined): AuthResult {
    if (!this.tokens) return { ok: true, principal: ANONYMOUS };
    const token = ProxyAuth.tokenOf(header);
    if (!token) {
      // The ping always challenges: clients send credentials only after a challenge there, and
      // clients without any go on anonymously.
      if (this.anonymousPull && action === 'pull') return { ok: true, principal: ANONYMOUS };
      return { ok: false, status: 401, message: 'authentication required' };
    }
    const rec = this.tokens.authenticate(token);
    if (!rec) return { ok: false, status: 401, message: 'the token is not valid' };
    const principal = { id: rec.id, name: rec.name };
    if (action === 'ping') return { ok: true, principal };
    const perm = action === 'push' ? 'sign' : 'read';
    if (this.tokens.allows(rec.scopes, perm, gun)) return { ok: true, principal };
    return { ok: false, status: 403, message: `this token may not ${action} ${gun ?? 'the catalog'}` };
  }
}

/** A fixed token list, for deployments without the management token store. */
export function staticTokens(entries: Array<{ token: string; name: string; push: boolean }>): TokenSource {
  return {
    authenticate(token) {
      const b = Buffer.from(token);
      const hit = entries.find((e) => {
        const t = Buffer.from(e.token);
        return t.length === b.length && timingSafeEqual(t, b);
      });
      return hit && { id: `static:${hit.name}`, name: hit.name, scopes: hit.push ? ['push', 'pull'] : ['pull'] };
    },
    allows(scopes, perm) {
      return perm === 'sign' ? scopes.includes('push') : scopes.includes('pull');
    },
  };
}
