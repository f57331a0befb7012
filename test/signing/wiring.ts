// How the tests reach the signing feature of a running trustgate: the parts createApp wires
// (signing routes, and the management API's token store, audit log and pending changes).
import type { AuditTrail } from '../../src/audit/trail.js';
import type { Tokens } from '../../src/auth/tokens.js';
import type { PendingChangeStore } from '../../src/trust/pending.js';
import type { Signing } from '../../src/signing/wire.js';
import type { RunningTrustgate } from '../helpers/trustgate.js';

export interface SigningParts {
  tokens: Tokens;
  audit: AuditTrail;
  pending: PendingChangeStore;
  signing: Signing;
}

export function signingParts(tg: RunningTrustgate): SigningParts {
  const m = tg.app.management;
  return { tokens: m.tokens, audit: m.audit, pending: m.pending, signing: tg.app.signing };
}
