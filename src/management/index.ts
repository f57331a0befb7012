// Wires the management API: tokens (with the first-start admin token), the audit log, pending
// changes and the service, kept in the data directory or, when the root passes `shared`, in
// PostgreSQL for every instance; and the `/api/v1` router.
import type express from 'express';
import { AuditLog } from '../audit/log.js';
import { FileAuditTrail, type AuditTrail } from '../audit/trail.js';
import { TokenStore, adminTokenFile, fileTokens, writeAdminTokenFile, type Tokens } from '../auth/tokens.js';
import type { Algorithm } from '../core/crypto/signer.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import type { ProxyActivity } from '../observability/proxy-activity.js';
import { StateLock } from '../state/lock.js';
import { TrustChanges } from '../trust/changes.js';
import type { GunLocks } from '../trust/locks.js';
import { PendingStore, filePending, type PendingChangeStore } from '../trust/pending.js';
import type { TrustService } from '../trust/service.js';
import { createManagementRouter } from './router.js';
import { ManagementService } from './service.js';
import type { TagSigning } from './tags.js';

export interface ManagementDeps {
  dataDir: string;
  trust: TrustService;
  keys: KeyStore;
  log: Logger;
  now?: () => number;
  pendingTtlSeconds?: number;
  gunPrefixes?: string[];
  serverKeyAlgorithm?: Algorithm;
  /** Copies the metadata store to a new file (the embedded store only): GET /backup. */
  backup?: (dest: string) => Promise<void>;
  /** Where the one-time admin token is shown besides its file; default: stderr when it is a terminal. */
  announce?: (text: string) => void;
  /** The tag routes' signing service (trust/tag-signing.ts), made by the root over `changes`. */
  tagSigning?: () => TagSigning;
  /** Tokens, audit log and pending changes shared with other instances (PostgreSQL); default: the data directory's. */
  shared?: SharedState;
  /** The registry proxy's refusals, for GET /proxy/denials (the proxy, if any, writes them). */
  proxyActivity?: ProxyActivity;
}

export interface SharedState {
  tokens: Tokens;
  audit: AuditTrail;
  pending: PendingChangeStore;
}

export interface Management {
  service: ManagementService;
  tokens: Tokens;
  audit: AuditTrail;
  pending: PendingChangeStore;
  /** The change pipeline over these pending changes; the signing API and sign-on-push share it. */
  changes: TrustChanges;
  /** The per-GUN change queue (the pipeline's). */
  locks: GunLocks;
  router: express.Router;
  /** Writes counted refusals and closes the state lock the three file stores share. */
  close(): Promise<void>;
}

export const DEFAULT_PENDING_TTL_SECONDS = 7 * 24 * 3600;

/** The data directory's tokens, audit log and pending changes, under one cross-process lock. */
function fileState(dataDir: string, now: () => number, log: Logger): SharedState {
  const stateLock = new StateLock(dataDir);
  return {
    tokens: fileTokens(new TokenStore(dataDir, now, stateLock), dataDir),
    audit: new FileAuditTrail(new AuditLog(dataDir, now, stateLock), log),
    pending: filePending(new PendingStore(dataDir, now, stateLock)),
  };
}

export async function createManagement(d: ManagementDeps): Promise<Management> {
  const now = d.now ?? Date.now;
  const { tokens, audit, pending } = d.shared ?? fileState(d.dataDir, now, d.log);
  const made = await tokens.bootstrap((t) => writeAdminTokenFile(d.dataDir, t));
  if (made) {
    const boot = { ...made, file: adminTokenFile(d.dataDir) };
    await audit.append({
      actor: { id: 'system', name: 'system' },
      action: 'token.create',
      outcome: 'success',
      detail: { tokenId: boot.info.id, name: boot.info.name, scopes: boot.info.scopes },
    });
    // The token itself is never logged: it is in a 0600 file, and shown on an interactive terminal.
    d.log('warn', 'created the initial admin token for the management API: read it from the file, keep it safe, then delete the file', {
      file: boot.file,
      id: boot.info.id,
    });
    const announce = d.announce ?? (process.stderr.isTTY ? (t: string) => process.stderr.write(t) : undefined);
    announce?.(`\ntrustgate: initial admin token (shown once, also in ${boot.file}):\n\n  ${boot.token}\n\n`);
  }
  const pendingTtlMs = (d.pendingTtlSeconds ?? DEFAULT_PENDING_TTL_SECONDS) * 1000;
  const changes = new TrustChanges({ trust: d.trust, keys: d.keys, pending, pendingTtlMs, log: d.log, now });
  const service = new ManagementService(
    changes,
    d.keys,
    audit,
    {
      now,
      pendingTtlMs,
      ...(d.serverKeyAlgorithm ? { serverKeyAlgorithm: d.serverKeyAlgorithm } : {}),
      ...(d.gunPrefixes ? { gunPrefixes: d.gunPrefixes } : {}),
      log: d.log,
    },
    d.tagSigning,
  );
  const close = () => audit.close();
  return {
    service,
    tokens,
    audit,
    pending,
    changes,
    locks: changes.locks,
    router: createManagementRouter({
      service,
      tokens,
      audit,
      log: d.log,
      dataDir: d.dataDir,
      ...(d.backup ? { backup: d.backup } : {}),
      ...(d.proxyActivity ? { proxyActivity: d.proxyActivity } : {}),
    }),
    close,
  };
}
