// Tags: signed and removed by the signing service (src/trust/tag-signing.ts), the one
// implementation of "put or remove targets in a role and publish": its input rules, role and
// path checks, key binding, upstream check and m-of-n pending changes. The management API
// answers in its own shapes and error codes, defaults to targets/releases when it exists, and
// proposes a change the caller cannot sign at all (it waits for key holders) where the signing
// API answers 403.
import { signingIdentity, type Actor } from '../auth/guard.js';
import { SigningError } from '../http/signing-error.js';
import { SigningService, type Publication } from '../trust/tag-signing.js';
import { SigningInputError } from '../http/signing-input.js';
import { isReleasedRole, type TagRow } from '../core/tuf/docker-view.js';
import { isTargetsRole } from '../core/tuf/roles.js';
import { requireRole, roleKeysOf, type RepoView } from './draft.js';
import { allTags } from './repositories.js';
import { TagHistory, type SignedSince } from './tag-history.js';
import { ApiError, badRequest, conflict, notFound } from '../http/api-error.js';
import type { ChangeResult, ManagementContext } from './context.js';

export type TagSigning = Pick<SigningService, 'signItems' | 'revokeTag'>;

/** A single-item request's messages without the batch's `items[0]` prefix. */
const unbatched = (m: string) => m.replace(/^items\[0\](?::\s*|\.)/, '');

/** The management API's error for an error of the signing service. */
export function signingToApiError(e: unknown): unknown {
  if (e instanceof SigningInputError)
    return badRequest(/(^|\.)role$/.test(e.field) ? 'INVALID_ROLE' : 'INVALID_REQUEST', unbatched(e.message));
  if (!(e instanceof SigningError)) return e;
  const message = unbatched(e.message);
  switch (e.code) {
    case 'REPOSITORY_NOT_FOUND':
    case 'TAG_NOT_FOUND':
    case 'PENDING_NOT_FOUND':
      return notFound('NOT_FOUND', message);
    case 'ROLE_NOT_FOUND':
      return notFound('ROLE_NOT_FOUND', message);
    case 'FORBIDDEN':
      return new ApiError(403, 'FORBIDDEN', message);
    case 'VERSION_CONFLICT':
      return conflict('VERSION_CONFLICT', message);
    case 'UNSUPPORTED_KEY':
      return badRequest('UNSUPPORTED_KEY', message);
    case 'UPSTREAM_ERROR':
      return new ApiError(502, 'UPSTREAM_ERROR', message);
    default:
      // DIGEST_UNKNOWN, SIZE_MISMATCH and other refusals of the input; 409 when no pending change can be kept.
      return e.status === 409 ? conflict('CONFLICT', message) : new ApiError(e.status, 'INVALID_REQUEST', message);
  }
}

/** Runs a call into the signing service, answering its errors as the management API does. */
export async function fromSigning<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw signingToApiError(e);
  }
}

export interface TagPage {
  q?: string;
  role?: string;
  offset?: number;
  limit: number;
}

export class Tags {
  private history: TagHistory;
  /** Rows of a (kept) view: sorting 10,000 tags once per version, not once per page. */
  private rows = new WeakMap<RepoView, TagRow[]>();

  /** `signing`: the tag signing service, which the root makes after the management API. */
  constructor(
    private c: ManagementContext,
    private signing?: () => TagSigning,
  ) {
    this.history = new TagHistory(c.trust);
  }

  /**
   * Signed targets of every role (one row per tag and digest, in Docker's order), those whose tag
   * contains `q` (case-insensitive) and that `role` signs, a page at a time, each with when it
   * was signed (tag-history.ts; read only for the roles of the page).
   */
  async list(gun: string, page: TagPage) {
    const v = await this.c.recentView(gun);
    if (page.role !== undefined) {
      requireRole(v, page.role);
      if (!isTargetsRole(page.role)) throw badRequest('INVALID_ROLE', `${page.role} is not a targets role`);
    }
    const needle = page.q?.toLowerCase();
    let every = this.rows.get(v);
    if (!every) this.rows.set(v, (every = allTags(v)));
    const rows = every.filter(
      (r) => (page.role === undefined || r.roles.includes(page.role)) && (needle === undefined || r.tag.toLowerCase().includes(needle)),
    );
    const offset = page.offset ?? 0;
    const slice = rows.slice(offset, offset + page.limit);
    const since = new Map<string, Map<string, SignedSince>>();
    for (const role of new Set(slice.flatMap((r) => r.roles))) {
      const f = await this.c.trust.current(gun, role);
      if (f) since.set(role, await this.history.signedSince(gun, f));
    }
    const tags = slice.map((r) => {
      const times = r.roles.map((role) => since.get(role)?.get(r.tag));
      const first = times.every((t) => t !== undefined) ? times.sort((a, b) => a!.at - b!.at)[0] : undefined;
      return {
        ...r,
        released: r.roles.some(isReleasedRole),
        signedAt: first ? new Date(first.at).toISOString() : null,
        signedAtExact: first?.exact ?? false,
      };
    });
    return { gun, total: rows.length, offset, limit: page.limit, tags };
  }

  private service(): TagSigning {
    const s = this.signing?.();
    if (!s) throw new Error('tag signing is not connected to the management API');
    return s;
  }

  private result(p: Publication): ChangeResult {
    return this.c.result(p);
  }

  async add(actor: Actor, gun: string, req: { tag: string; digest: string; size: number; role?: string; signWith?: string[] }) {
    return this.c.audited(actor, 'tag.add', gun, async () => {
      const v = await this.c.view(gun);
      const role = req.role ?? (roleKeysOf(v, 'targets/releases') ? 'targets/releases' : 'targets');
      const result = await fromSigning(async () => {
        const item = { ...SigningService.parseItem({ tag: req.tag, digest: req.digest, size: req.size, role }), gun };
        const label = { action: 'tag.add', summary: `sign ${item.tag} (${item.digest.slice(0, 19)}) in ${role}` };
        const out = await this.service().signItems([item], signingIdentity(actor), {
          propose: true,
          label,
          ...(req.signWith ? { signWith: req.signWith } : {}),
        });
        return this.result(out.publications[0]!);
      });
      await this.c.auditChange(actor, 'tag.add', gun, result, { role }, { tag: req.tag, digest: req.digest });
      return { ...result, role };
    });
  }

  async remove(actor: Actor, gun: string, tag: string, req: { role?: string; signWith?: string[] }) {
    return this.c.audited(actor, 'tag.remove', gun, async () => {
      await this.c.view(gun);
      const { result, roles } = await fromSigning(async () => {
        const opts = { propose: true, label: { action: 'tag.remove' }, ...(req.signWith ? { signWith: req.signWith } : {}) };
        const out = await this.service().revokeTag(gun, tag, req.role, signingIdentity(actor), opts);
        return { result: this.result(out.publication), roles: out.result.removed.map((r) => r.role) };
      });
      await this.c.auditChange(actor, 'tag.remove', gun, result, {}, { tag, roles });
      return result;
    });
  }
}
