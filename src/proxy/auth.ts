// Who may use the proxy. Clients present trustgate tokens as a Bearer token or as the password of
// Basic credentials (any user name), which is what `docker login` and skopeo send after a Basic
// challenge. Pulls need read access to the GUN, unless the proxy is open for pulls (`none`) or
// anonymous pulls are configured. Every write that reaches the upstream (blob upload, manifest
// PUT, DELETE) needs a token with sign access to the GUN, in every mode: nobody writes upstream
// with the proxy's own credentials on an anonymous or read-only client's behalf.
import { tokenOf } from '../auth/credentials.js';

export interface Principal {
  id: string;
  name: string;
  /** An admin token: may sign with every key the server holds. */
  admin: boolean;
  /** Keystore key IDs the token may sign with (signer tokens). */
  keyIds: readonly string[];
}

export type ProxyAction = 'pull' | 'push' | 'catalog';

/** What the proxy needs from a token store (trustgate's management tokens fit it). */
export interface TokenSource {
  /** The token's owner, scopes and key IDs, or undefined for an unknown or expired token. */
  authenticate(token: string): Promise<{ id: string; name: string; scopes: readonly string[]; keyIds?: readonly string[] } | undefined>;
  /** Whether scopes allow `perm` (on `gun`): `read` for pulls, `sign` for pushes, `admin` for every key. */
  allows(scopes: readonly string[], perm: 'read' | 'sign' | 'admin', gun?: string): boolean;
}

export type AuthResult =
  { ok: true; principal: Principal } | { ok: false; status: 401 | 403; message: string; actor: { id: string; name: string } };

export const ANONYMOUS: Principal = { id: 'anonymous', name: 'anonymous', admin: false, keyIds: [] };
export const CHALLENGE = 'Basic realm="trustgate"';

export class ProxyAuth {
  /**
   * `openPulls`: pulls, the catalog and the ping need no credentials (TRUSTGATE_PROXY_AUTH=none);
   * `anonymousPull`: pulls without credentials go through as anonymous.
   */
  constructor(
    private tokens: TokenSource | undefined,
    private opts: { openPulls: boolean; anonymousPull: boolean },
  ) {}

  /** Whether pulls need no credentials. Pushes always do. */
  get open(): boolean {
    return this.opts.openPulls;
  }

  /** Decides one request: `gun` is undefined for registry-wide requests (ping, catalog). */
  async check(header: string | undefined, action: ProxyAction | 'ping', gun: string | undefined): Promise<AuthResult> {
    const token = tokenOf(header);
    const refuse = (status: 401 | 403, message: string, actor = ANONYMOUS): AuthResult => ({
      ok: false,
      status,
      message,
      actor: { id: actor.id, name: actor.name },
    });
    if (!token) {
      // The ping always challenges: clients send credentials only after a challenge there, and
      // clients without any go on anonymously.
      if (action === 'push') return refuse(401, 'authentication required: pushes need a token with sign access');
      if (action === 'ping' && this.opts.openPulls && !this.tokens) return { ok: true, principal: ANONYMOUS }; // no credential could push
      if (action !== 'ping' && (this.opts.openPulls || (this.opts.anonymousPull && action === 'pull')))
        return { ok: true, principal: ANONYMOUS };
      return refuse(401, 'authentication required');
    }
    if (!this.tokens)
      return action === 'push' ? refuse(403, 'this proxy has no token store: pushes are refused') : { ok: true, principal: ANONYMOUS };
    const rec = await this.tokens.authenticate(token);
    if (!rec) return refuse(401, 'the token is not valid');
    const principal: Principal = { id: rec.id, name: rec.name, admin: this.tokens.allows(rec.scopes, 'admin'), keyIds: rec.keyIds ?? [] };
    if (action === 'ping' || (this.opts.openPulls && action !== 'push')) return { ok: true, principal };
    const perm = action === 'push' ? 'sign' : 'read';
    if (this.tokens.allows(rec.scopes, perm, gun)) return { ok: true, principal };
    return refuse(403, `this token may not ${action} ${gun ?? 'the catalog'}`, principal);
  }
}
