// The one place trustgate makes TUF signatures, and the signed envelope it uploads. Every change
// (trust/changes.ts), a new repository's first files and root edits (trust/editor.ts) sign here.
import { signingMethod } from '../core/crypto/keys.js';
import type { Signer } from '../core/crypto/signer.js';
import { canonicalBytes, canonicalString } from '../core/json/canonical.js';
import type { Signature } from '../core/tuf/metadata.js';

/**
 * `signers` sign the canonical bytes of `body` (`message`, when the caller has them already);
 * existing signatures by other keys stay, and a signer's own earlier signature is replaced.
 */
export async function signBody(
  body: unknown,
  signers: readonly Signer[],
  existing: readonly Signature[] = [],
  message: Buffer = canonicalBytes(body),
): Promise<Signature[]> {
  const out = existing.filter((s) => !signers.some((x) => x.id === s.keyid));
  for (const s of signers) out.push({ keyid: s.id, method: signingMethod(s.key.keytype), sig: (await s.sign(message)).toString('base64') });
  return out;
}

/**
 * The signed file `{"signatures":…,"signed":…}` in canonical form. With `message` (the canonical
 * bytes of `body`) it is spliced, not re-serialised: canonical key order puts "signatures" first.
 */
export function envelope(body: unknown, signatures: readonly Signature[], message?: Buffer): Buffer {
  if (!message) return canonicalBytes({ signed: body, signatures });
  return Buffer.concat([Buffer.from(`{"signatures":${canonicalString(signatures)},"signed":`), message, Buffer.from('}')]);
}
