// Key IDs as people type them: the full 64 hex characters, or (as docker accepts) any prefix of at
// least 12 that names exactly one key among the candidates. An ambiguous prefix names them all.
import { ApiError, badRequest, notFound } from '../http/api-error.js';

export const KEY_ID_PREFIX_MIN = 12;
const FULL = /^[0-9a-f]{64}$/;
const PREFIX = new RegExp(`^[0-9a-f]{${KEY_ID_PREFIX_MIN},63}$`);

/**
 * The full key ID `given` stands for among `candidates` (`where` says whose keys they are). A
 * full ID is returned as it is: whether it exists is for the caller, as before.
 */
export function resolveKeyId(given: string, candidates: Iterable<string>, where: string): string {
  if (FULL.test(given)) return given;
  if (!PREFIX.test(given))
    throw badRequest('INVALID_REQUEST', `a key ID is 64 lower-case hex characters, or a unique prefix of at least ${KEY_ID_PREFIX_MIN}`);
  const found = [...new Set(candidates)].filter((id) => id.startsWith(given)).sort();
  if (found.length === 1) return found[0]!;
  if (found.length === 0) throw notFound('KEY_NOT_FOUND', `no key ID of ${where} starts with ${given} (looked for a unique prefix)`);
  throw new ApiError(
    400,
    'AMBIGUOUS_KEY_ID',
    `key ID prefix ${given} matches ${found.length} keys of ${where}: ${found.join(', ')}; give more characters`,
  );
}

/** resolveKeyId over a list (undefined stays undefined). */
export async function resolveKeyIds(
  given: string[] | undefined,
  candidates: () => Promise<Iterable<string>>,
  where: string,
): Promise<string[] | undefined> {
  if (!given) return given;
  if (given.every((id) => FULL.test(id))) return given;
  const all = [...(await candidates())];
  return given.map((id) => resolveKeyId(id, all, where));
}
