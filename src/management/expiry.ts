// Expiry: which roles expire soon, and re-signing roles with a fresh expiry (each role its own
// change; root only with its keys, held or handed in for the request).
import { isTargetsRole } from '../core/tuf/roles.js';
import { parseRfc3339 } from '../core/tuf/time.js';
import type { Actor } from '../auth/guard.js';
import { DraftBuilder, allRoles, requireRole } from './draft.js';
import { badRequest, notFound } from '../http/api-error.js';
import { SERVER_ROLES, roleFile, type ManagementContext, type OfflineKeyInput } from './context.js';
import type { Repositories } from './repositories.js';

/** The last instant an RFC 3339 time can name (a four-digit year). */
const MAX_DATE_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export class Expiry {
  constructor(
    private c: ManagementContext,
    private repositories: Repositories,
  ) {}

  /** Roles expiring within `withinMs`, soonest first, from the repository summaries (kept per timestamp). */
  async expiring(withinMs: number, canRead: (gun: string) => boolean, page: { manual?: boolean; offset?: number; limit?: number } = {}) {
    const now = this.c.now();
    const cutoff = now + withinMs;
    const all = [];
    for (const s of await this.repositories.summariesOf(canRead)) {
      for (const r of s.roles) {
        if (r.expires === null || r.version === null) continue;
        const at = parseRfc3339(r.expires);
        if (at > cutoff || (page.manual && r.renewedAutomatically)) continue;
        all.push({
          gun: s.gun,
          role: r.role,
          version: r.version,
          expires: r.expires,
          expired: at <= now,
          renewedAutomatically: r.renewedAutomatically,
        });
      }
    }
    all.sort((a, b) => parseRfc3339(a.expires) - parseRfc3339(b.expires));
    const offset = page.offset ?? 0;
    const limit = page.limit ?? null;
    const items = all.slice(offset, limit === null ? undefined : offset + limit);
    // openapi allows up to 999999999w, far past the largest Date (8.64e15 ms): toISOString threw a
    // RangeError (500), and past year 9999 it writes no RFC 3339 time. The answer shows the cutoff
    // clamped to the last writable instant; the comparison above used the exact one.
    return {
      within: Math.round(withinMs / 1000),
      cutoff: new Date(Math.min(cutoff, MAX_DATE_MS)).toISOString(),
      total: all.length,
      offset,
      limit,
      items,
    };
  }

  /** Re-signs targets roles (and root, if asked) with fresh expiry; each role is its own change. */
  async resign(
    actor: Actor,
    gun: string,
    req: { roles?: string[]; withinMs?: number; signWith?: string[]; offlineRootKey?: OfflineKeyInput },
  ) {
    return this.c.change(actor, 'repository.resign', gun, async () => {
      const v = await this.c.view(gun);
      let roles = req.roles ?? allRoles(v).filter((r) => isTargetsRole(r) && v.targets.has(r));
      for (const r of roles) {
        requireRole(v, r);
        if (SERVER_ROLES.has(r)) throw badRequest('INVALID_ROLE', `${r} is re-signed by the server automatically`);
        if (isTargetsRole(r) && !v.targets.has(r)) throw notFound('ROLE_NOT_FOUND', `${r} has no metadata to re-sign yet`);
      }
      if (req.withinMs !== undefined) {
        const cutoff = this.c.now() + req.withinMs;
        roles = roles.filter((r) => (roleFile(v, r)?.expiresMs ?? Infinity) <= cutoff);
      }
      const results = [];
      let cur = v;
      for (const role of roles) {
        const b = new DraftBuilder(cur, this.c.now());
        if (role === 'root') b.root();
        else b.targets(role);
        const d = await this.c.draft(b, 'repository.resign', `re-sign ${role}`);
        const offline = role === 'root' ? this.c.offlineRootSigners(cur, req.offlineRootKey) : [];
        const r = await this.c.apply(actor, d, { offline, signWith: req.signWith });
        await this.c.auditChange(actor, 'repository.resign', gun, r, { role });
        results.push(
          r.status === 'published'
            ? { role, status: r.status, version: r.versions[role] ?? null, pendingId: null }
            : { role, status: r.status, version: r.pending.parts[0]!.version, pendingId: r.pending.id },
        );
        if (r.status === 'published') cur = await this.c.view(gun);
      }
      return { gun, results };
    });
  }
}
