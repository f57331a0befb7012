// How the tests reach the signing feature of a running trustgate: the app's own token store,
// audit log, pending changes and signing routes when app.ts wires them; until then the same
// parts are made here over the app's trust service and keystore and mounted on its /api/v1.
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import { TokenStore } from '../../src/auth/tokens.js';
import { PendingStore } from '../../src/management/pending.js';
import { createSigning, type Signing } from '../../src/signing/wire.js';
import type { RunningTrustgate } from '../helpers/trustgate.js';

export interface SigningParts {
  tokens: TokenStore;
  audit: AuditLog;
  pending: PendingStore;
  signing: Signing;
  close(): void;
}

export function signingParts(tg: RunningTrustgate, opts: { upstream?: string; checkUpstream?: boolean } = {}): SigningParts {
  const dir = tg.app.config.dataDir;
  const tokens = new TokenStore(dir);
  const audit = new AuditLog(join(dir, 'audit'));
  const pending = new PendingStore(dir);
  const signing = createSigning({
    trust: tg.app.trust,
    keys: tg.app.keys,
    tokens,
    audit,
    pending,
    log: tg.app.log,
    ...(opts.upstream ? { upstream: opts.upstream } : {}),
    checkUpstream: opts.checkUpstream ?? false,
  });
  tg.app.api.use('/api/v1', signing.router);
  return { tokens, audit, pending, signing, close: () => signing.close() };
}
