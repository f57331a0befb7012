// The ECDSA keys a GUN's trust data names for `targets` (in root) or a delegation (in its parent):
// the keys whose cosign signatures and attestations count. Read from the trust data the proxy
// has verified, so a key stops counting when the trust data drops it.
import type { TufKey } from '../core/crypto/keys.js';
import { Metadata, type RootBody, type TargetsBody } from '../core/tuf/metadata.js';
import type { TrustService } from '../trust/service.js';

export interface TrustedKey {
  key: TufKey;
  /** `targets` and every delegation that lists the key, in the order met. */
  roles: Set<string>;
}

/** By key ID; non-ECDSA keys are left out (cosign-format signatures are ECDSA). */
export async function trustedEcdsaKeys(trust: TrustService, gun: string): Promise<Map<string, TrustedKey>> {
  const out = new Map<string, TrustedKey>();
  const add = (id: string, key: TufKey | undefined, role: string) => {
    if (!key || !key.keytype.startsWith('ecdsa')) return;
    const k = out.get(id) ?? { key, roles: new Set<string>() };
    k.roles.add(role);
    out.set(id, k);
  };
  const rootFile = await trust.current(gun, 'root');
  if (!rootFile) return out;
  const root = Metadata.parse<RootBody>('root', rootFile.bytes).body;
  for (const id of root.roles.targets.keyids) add(id, root.keys[id], 'targets');
  const state = await trust.state(gun);
  for (const [role, bytes] of state.targets) {
    const body = Metadata.parse<TargetsBody>(role, bytes).body;
    for (const d of body.delegations.roles) for (const id of d.keyids) add(id, body.delegations.keys[id], d.name);
  }
  return out;
}
