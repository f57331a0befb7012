// How the tests reach the signing feature of a running trustgate: the app's own signing routes,
// token store, audit log and pending changes when app.ts wires them; otherwise the same parts
// are made here over the app's trust service and keystore (sharing the management API's token
// store and pending changes when the app has them) and mounted on its /api/v1.
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

interface AppWithParts {
  management?: { tokens: TokenStore; audit: AuditLog; pending: PendingStore };
  signing?: Signing;
}

export function signingParts(tg: RunningTrustgate, opts: { upstream?: string; checkUpstream?: boolean } = {}): SigningParts {
  const app = tg.app as unknown as AppWithParts;
  const dir = tg.app.config.dataDir;
  const tokens = app.management?.tokens ?? new TokenStore(dir);
  const audit = app.management?.audit ?? new AuditLog(join(dir, 'audit'));
  const pending = app.management?.pending ?? new PendingStore(dir);
  if (app.signing && !opts.upstream) return { tokens, audit, pending, signing: app.signing, close: () => undefined };
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
  // Ahead of every route already mounted (the management router answers 404 for paths it does not know).
  const stack = (tg.app.api as unknown as { router?: { stack: unknown[] }; _router?: { stack: unknown[] } });
  tg.app.api.use('/api/v1', signing.router);
  const layers = (stack.router ?? stack._router)?.stack;
  if (layers) layers.unshift(layers.pop()!);
  return { tokens, audit, pending, signing, close: () => signing.close() };
}
