// The management application layer, one part per concern over a shared context (context.ts:
// stores, change queue, audit, repository view and the change pipeline):
//   repositories.ts     create, list, inspect, delete, upload a root signed elsewhere
//   keys.ts             list, export, import, rotate, revoke, add to a role, thresholds
//   delegations.ts      delegations and Docker's signers
//   tags.ts             sign and remove tags, through the signing service
//   pending-changes.ts  m-of-n (trust/pending-store.ts): audited, in the API's shapes
//   expiry.ts           what expires soon, re-signing
import type { AuditTrail } from '../audit/trail.js';
import type { KeyStore } from '../keystore/types.js';
import type { TrustChanges } from '../trust/changes.js';
import { ManagementContext, type ManagementOptions } from './context.js';
import { Delegations } from './delegations.js';
import { Expiry } from './expiry.js';
import { Keyring } from './keys.js';
import { PendingChanges } from './pending-changes.js';
import { Repositories } from './repositories.js';
import { Tags, type TagSigning } from './tags.js';

export class ManagementService {
  readonly context: ManagementContext;
  readonly repositories: Repositories;
  readonly keyring: Keyring;
  readonly delegations: Delegations;
  readonly tags: Tags;
  readonly pendingChanges: PendingChanges;
  readonly expiry: Expiry;

  constructor(changes: TrustChanges, keys: KeyStore, audit: AuditTrail, opts: ManagementOptions, tagSigning?: () => TagSigning) {
    const c = (this.context = new ManagementContext(changes, keys, audit, opts));
    this.repositories = new Repositories(c);
    this.keyring = new Keyring(c);
    this.delegations = new Delegations(c, this.repositories, this.keyring);
    this.tags = new Tags(c, tagSigning);
    this.pendingChanges = new PendingChanges(c);
    this.expiry = new Expiry(c, this.repositories);
  }

  /** The keystore (token creation checks the key IDs it names). */
  get keys(): KeyStore {
    return this.context.keys;
  }

  checkGun(gun: string): void {
    this.context.checkGun(gun);
  }
}
