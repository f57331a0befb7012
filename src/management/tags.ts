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
import { roleKeysOf } from './draft.js';
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

export class Tags {
  /** `signing`: the tag signing service, which the root makes after the management API. */
  constructor(
    private c: ManagementContext,
    private signing?: () => TagSigning,
  ) {}

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
