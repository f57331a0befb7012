// Fixture writes: a role changed, signed with the keys the server holds and published straight
// through TrustService.publish, bypassing the change pipeline (no lock, audit or hooks). For
// states the APIs would not make, or to change data behind the proxy's back.
import assert from 'node:assert/strict';
import type { Signer } from '../../src/core/crypto/signer.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { countValidSignatures, type RoleKeys, type RootBody, type TargetsBody } from '../../src/core/tuf/metadata.js';
import { YEAR_MS, formatRfc3339 } from '../../src/core/tuf/time.js';
import type { PlannedFile } from '../../src/core/tuf/update.js';
import type { KeyStore } from '../../src/keystore/types.js';
import { RepoEditor } from '../../src/trust/editor.js';
import type { TrustService } from '../../src/trust/service.js';
import { envelope, signBody } from '../../src/trust/sign.js';

interface Holder {
  trust: TrustService;
  keys: KeyStore;
}

function assertSigned(
  role: string,
  body: unknown,
  signatures: Parameters<typeof countValidSignatures>[1],
  keys: RootBody['keys'],
  r: RoleKeys,
) {
  const valid = countValidSignatures(canonicalBytes(body), signatures, keys, r.keyids).size;
  assert.ok(valid >= r.threshold, `${role}: ${valid} of ${r.threshold} signatures held`);
}

/** The next version of a targets role with `mutate` applied, signed with every held key of the role. */
export async function editTargets(h: Holder, gun: string, role: string, mutate: (body: TargetsBody) => void): Promise<PlannedFile[]> {
  const editor = new RepoEditor(h.trust, h.keys);
  const signing = await editor.signingRole(gun, role);
  const body = await editor.nextTargetsBody(gun, role);
  mutate(body);
  const signatures = await signBody(body, await editor.heldSigners(gun, signing.role.keyids));
  assertSigned(role, body, signatures, signing.keys, signing.role);
  return h.trust.publish(gun, new Map([[role, envelope(body, signatures)]]));
}

/** The next root with `mutate` applied, signed by the held keys of the old and the new root (and `extra`). */
export async function editRoot(
  h: Holder,
  gun: string,
  mutate: (body: RootBody) => void | Promise<void>,
  extra: Signer[] = [],
): Promise<PlannedFile[]> {
  const editor = new RepoEditor(h.trust, h.keys);
  const cur = await editor.root(gun);
  const body = structuredClone(cur.body);
  body.version = cur.body.version + 1;
  body.expires = formatRfc3339(Date.now() + 10 * YEAR_MS);
  await mutate(body);
  const keyids = [...new Set([...cur.body.roles.root.keyids, ...body.roles.root.keyids])];
  const signatures = await signBody(body, [...(await editor.heldSigners(gun, keyids)), ...extra]);
  assertSigned('old root', body, signatures, cur.body.keys, cur.body.roles.root);
  assertSigned('new root', body, signatures, body.keys, body.roles.root);
  return h.trust.publish(gun, new Map([['root', envelope(body, signatures)]]));
}
