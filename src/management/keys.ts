// Keys of a repository: list (what the metadata lists and what the keystore holds), export and
// import private keys, rotate a role's key, revoke a key, add a key to a role, and set a role's
// threshold. Root changes are signed by the current and the new root keys; a delegation's key
// changes are signed by its parent role.
import type { KeyObject } from 'node:crypto';
import { canonicalKeyId, keyId, type TufKey } from '../core/crypto/keys.js';
import { exportPrivateKeyPem } from '../core/crypto/pem.js';
import { LocalSigner, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { createRootCertificate, validateRootKey } from '../core/crypto/x509.js';
import { isTargetsRole } from '../core/tuf/roles.js';
import { KeyStoreError, KeyStoreUnavailableError, type KeyRecord } from '../keystore/types.js';
import type { Actor } from '../auth/guard.js';
import { DraftBuilder, allRoles, requireRole, roleKeysOf, type RepoView } from './draft.js';
import { badRequest, conflict, notFound } from '../http/api-error.js';
import { metadataKeyFor, parsePublicKeyPem, readPrivateKeyPem } from './material.js';
import { SERVER_ROLES, checkPassphrase, roleFile, type ChangeResult, type ManagementContext, type OfflineKeyInput } from './context.js';

export interface KeyInfo {
  id: string;
  /** Notary's ID for the private key file (differs from `id` for x509 keys). */
  canonicalId: string;
  algorithm: string;
  role: string;
  held: 'keystore' | 'server' | 'offline';
  keystore: string | null;
  /** Where the private half is: a software keystore, an HSM (PKCS#11), or not with the server. */
  location: 'keystore' | 'hsm' | 'offline';
  createdAt: string | null;
  inMetadata: boolean;
  roleVersion: number | null;
  roleThreshold: number | null;
  roleExpires: string | null;
}

/** Where a key record's private half is (the PKCS#11 keystore is an HSM or a token). */
const locationOf = (rec: KeyRecord | undefined): KeyInfo['location'] => (!rec ? 'offline' : rec.held === 'pkcs11' ? 'hsm' : 'keystore');

/** A key made for a change: its signer, whether the change must store it, and its private half when not in the keystore. */
interface NewKey {
  signer: Signer;
  store: boolean;
  privateKey?: KeyObject;
}

function safeCanonicalId(k: TufKey): string {
  try {
    return canonicalKeyId(k);
  } catch {
    return keyId(k);
  }
}

export class Keyring {
  constructor(private c: ManagementContext) {}

  async list(gun: string): Promise<KeyInfo[]> {
    const v = await this.c.view(gun);
    const held = new Map((await this.c.keys.list({ gun })).map((k) => [k.id, k]));
    const out: KeyInfo[] = [];
    const seen = new Set<string>();
    for (const role of allRoles(v)) {
      const rk = roleKeysOf(v, role)!;
      const md = roleFile(v, role);
      for (const id of rk.role.keyids) {
        const key = rk.keys[id];
        const rec = held.get(id);
        seen.add(id);
        out.push({
          id,
          canonicalId: key ? safeCanonicalId(key) : id,
          algorithm: key?.keytype ?? 'unknown',
          role,
          held: rec ? (SERVER_ROLES.has(role) ? 'server' : 'keystore') : 'offline',
          keystore: rec ? rec.held : null,
          location: locationOf(rec),
          createdAt: rec?.createdAt ?? null,
          inMetadata: true,
          roleVersion: md?.version ?? null,
          roleThreshold: rk.role.threshold,
          roleExpires: md?.body.expires ?? null,
        });
      }
    }
    for (const rec of held.values()) {
      if (seen.has(rec.id)) continue;
      out.push({
        id: rec.id,
        canonicalId: safeCanonicalId(rec.public),
        algorithm: rec.public.keytype,
        role: rec.role,
        held: SERVER_ROLES.has(rec.role) ? 'server' : 'keystore',
        keystore: rec.held,
        location: locationOf(rec),
        createdAt: rec.createdAt,
        inMetadata: false,
        roleVersion: null,
        roleThreshold: null,
        roleExpires: null,
      });
    }
    return out;
  }

  private async info(gun: string, id: string): Promise<KeyInfo | null> {
    return (await this.list(gun)).find((k) => k.id === id) ?? null;
  }

  async export(actor: Actor, gun: string, id: string, passphrase: string) {
    return this.c.audited(
      actor,
      'key.export',
      gun,
      async () => {
        this.c.checkGun(gun);
        checkPassphrase(passphrase);
        const rec = await this.c.keys.get(id);
        if (!rec || rec.gun !== gun) throw notFound('KEY_NOT_FOUND', `the server holds no key with the ID ${id} for ${gun}`);
        let priv: KeyObject;
        try {
          priv = await this.c.keys.exportPrivate(id);
        } catch (e) {
          if (e instanceof KeyStoreError && !(e instanceof KeyStoreUnavailableError))
            throw conflict('NOT_EXPORTABLE', `the ${this.c.keys.kind} keystore does not release this key`);
          throw e;
        }
        const pem = exportPrivateKeyPem(priv, { passphrase, role: rec.role, gun });
        await this.c.auditOk(actor, 'key.export', gun, {}, { role: rec.role, keyId: id });
        return { keyId: id, canonicalId: safeCanonicalId(rec.public), role: rec.role, gun, pem };
      },
      { keyId: id },
    );
  }

  /**
   * Imports a private key for a role. Without `activate` the key is only stored (it may already
   * be listed, e.g. a targets key made by the notary client; or be kept for later). With
   * `activate` the role is rotated to it, as by rotate.
   */
  async import(
    actor: Actor,
    gun: string,
    req: { pem: string; passphrase?: string; role: string; activate?: boolean; replaceKeyId?: string; offlineRootKey?: OfflineKeyInput },
  ) {
    return this.c.change(
      actor,
      'key.import',
      gun,
      async () => {
        const v = await this.c.view(gun);
        requireRole(v, req.role);
        // replaceKeyId only steers an activated import; without activate it was ignored and the
        // key to replace stayed in the role while the answer looked like success.
        if (req.replaceKeyId !== undefined && !req.activate)
          throw badRequest('INVALID_REQUEST', 'replaceKeyId needs activate: true (it names the key the imported key replaces)');
        const up = readPrivateKeyPem(req.pem, req.passphrase);
        if (up.role !== undefined && up.role !== req.role && `targets/${up.role}` !== req.role) {
          throw badRequest('ROLE_MISMATCH', `the key's role header says ${up.role.slice(0, 64)}, not ${req.role}`);
        }
        if (up.gun !== undefined && up.gun !== gun) throw badRequest('GUN_MISMATCH', `the key's gun header names another repository`);
        if (req.role === 'root' && up.privateKey.asymmetricKeyType === 'ed25519')
          throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
        const rk = roleKeysOf(v, req.role)!;
        const listed = rk.role.keyids.map((id) => rk.keys[id]!).filter(Boolean);
        let pub = metadataKeyFor(up.privateKey, listed);
        const inRole = rk.role.keyids.includes(keyId(pub));
        if (req.role === 'root' && !inRole) {
          if (!req.activate)
            throw badRequest(
              'KEY_NOT_IN_ROLE',
              'this key is not a root key of the repository; import it with activate=true to rotate the root to it',
            );
          pub = (await createRootCertificate({ gun, privateKey: up.privateKey, notBefore: new Date(this.c.now()) })).key;
        }
        const id = keyId(pub);
        if (await this.c.keys.get(id)) throw conflict('KEY_EXISTS', `the server already holds key ${id}`);
        if (req.activate && !inRole) {
          const signer = new LocalSigner(up.privateKey, pub);
          const result = await this.rotateWith(actor, v, req.role, {
            signer,
            store: true,
            replaceKeyId: req.replaceKeyId,
            offlineRootKey: req.offlineRootKey,
            action: 'key.import',
          });
          await this.c.auditChange(actor, 'key.import', gun, result, { role: req.role, keyId: id });
          return { key: await this.info(gun, id), ...result };
        }
        await this.c.keys.importKey(gun, req.role, up.privateKey, pub);
        await this.c.auditOk(actor, 'key.import', gun, { inMetadata: inRole }, { role: req.role, keyId: id });
        return { key: await this.info(gun, id), status: 'stored' as const };
      },
      { role: req.role },
    );
  }

  /** Makes a new key for `role`: root keys wrapped in a certificate; snapshot/timestamp as server keys. */
  private async newKey(gun: string, role: string, alg: Algorithm | undefined, rootMode: 'keystore' | 'offline'): Promise<NewKey> {
    if (role === 'root') {
      const k = await this.c.editor.makeRootKey(gun, alg ?? 'ecdsa');
      return { signer: new LocalSigner(k.privateKey, k.key), store: rootMode === 'keystore', privateKey: k.privateKey };
    }
    const algorithm = alg ?? (SERVER_ROLES.has(role) ? (this.c.opts.serverKeyAlgorithm ?? 'ecdsa') : 'ecdsa');
    const rec = await this.c.keys.generate(gun, role, algorithm);
    try {
      const s = await this.c.keys.signer(rec.id);
      if (!s) throw new Error('keystore returned no signer for a new key');
      return { signer: s, store: false };
    } catch (e) {
      await this.c.dropKeys([rec.id]);
      throw e;
    }
  }

  /**
   * Replaces one key of `role` by `signer`'s key: root and its dependents (the new root is signed
   * by the current and the new root keys), or the parent targets role for a delegation. A key to
   * be stored is written first and removed again if the change fails.
   */
  private async rotateWith(
    actor: Actor,
    v: RepoView,
    role: string,
    o: {
      signer: Signer;
      store: boolean;
      privateKey?: KeyObject;
      replaceKeyId?: string;
      offlineRootKey?: OfflineKeyInput;
      action: string;
      signWith?: string[];
    },
  ): Promise<ChangeResult> {
    const rk = roleKeysOf(v, role)!;
    let old: string;
    if (o.replaceKeyId !== undefined) {
      if (!rk.role.keyids.includes(o.replaceKeyId)) throw badRequest('KEY_NOT_IN_ROLE', `key ${o.replaceKeyId} is not a key of ${role}`);
      old = o.replaceKeyId;
    } else if (rk.role.keyids.length === 1) {
      old = rk.role.keyids[0]!;
    } else {
      throw badRequest('INVALID_REQUEST', `${role} has ${rk.role.keyids.length} keys: name the one to replace with keyId`);
    }
    const newId = o.signer.id;
    if (rk.role.keyids.includes(newId)) throw conflict('CONFLICT', `key ${newId} is already a key of ${role}`);
    const b = new DraftBuilder(v, this.c.now());
    b.editRoleKeys(role, (r) => void (r.keyids = r.keyids.map((id) => (id === old ? newId : id))), [o.signer.key]);
    // The rotated role's own file is re-signed, so the new key signs what clients fetch next.
    if (isTargetsRole(role) && v.targets.has(role)) b.targets(role);
    const offline = this.c.offlineRootSigners(v, o.offlineRootKey);
    const created: string[] = [];
    const priv = o.privateKey ?? (o.signer instanceof LocalSigner ? o.signer.privateKey : undefined);
    const d = await this.c.draft(b, o.action, `replace ${role} key ${old.slice(0, 12)} by ${newId.slice(0, 12)}`);
    if (o.store) {
      if (!priv) throw new Error('no private key to store');
      await this.c.keys.importKey(v.gun, role, priv, o.signer.key);
      created.push(newId);
    } else if ((await this.c.keys.get(newId))?.gun === v.gun) {
      created.push(newId); // generated by the keystore for this change
    }
    d.createdKeyIds = created;
    return this.c.apply(actor, d, { offline: [o.signer, ...offline], signWith: o.signWith ? [...o.signWith, newId] : undefined });
  }

  async rotate(
    actor: Actor,
    gun: string,
    role: string,
    req: { keyId?: string; algorithm?: Algorithm; rootKey?: 'keystore' | 'offline'; passphrase?: string; offlineRootKey?: OfflineKeyInput },
  ) {
    return this.c.change(
      actor,
      'key.rotate',
      gun,
      async () => {
        const v = await this.c.view(gun);
        requireRole(v, role);
        const keyids = roleKeysOf(v, role)!.role.keyids;
        if (req.keyId !== undefined && !keyids.includes(req.keyId))
          throw badRequest('KEY_NOT_IN_ROLE', `key ${req.keyId} is not a key of ${role}`);
        if (role === 'root' && req.algorithm === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
        let rootMode: 'keystore' | 'offline' = 'keystore';
        if (role === 'root') {
          const held = await this.c.heldOf(gun, v.root.body.roles.root.keyids);
          rootMode = req.rootKey ?? (held.length > 0 ? 'keystore' : 'offline');
          if (rootMode === 'offline') checkPassphrase(req.passphrase);
        }
        // Check an offline key before a new key is made, so a bad one leaves nothing behind.
        this.c.offlineRootSigners(v, req.offlineRootKey);
        if (keyids.length > 1 && req.keyId === undefined)
          throw badRequest('INVALID_REQUEST', `${role} has several keys: name the one to replace with keyId`);
        const k = await this.newKey(gun, role, req.algorithm, rootMode);
        let result: ChangeResult;
        try {
          result = await this.rotateWith(actor, v, role, {
            signer: k.signer,
            store: k.store,
            ...(k.privateKey ? { privateKey: k.privateKey } : {}),
            ...(req.keyId !== undefined ? { replaceKeyId: req.keyId } : {}),
            ...(req.offlineRootKey ? { offlineRootKey: req.offlineRootKey } : {}),
            action: 'key.rotate',
          });
        } catch (e) {
          if (!k.store) await this.c.dropKeys([k.signer.id]); // a keystore-generated key for this rotation
          throw e;
        }
        await this.c.auditChange(actor, 'key.rotate', gun, result, { role, keyId: k.signer.id });
        const rootKey =
          role === 'root' && rootMode === 'offline' && k.privateKey
            ? {
                id: k.signer.id,
                canonicalId: safeCanonicalId(k.signer.key),
                pem: exportPrivateKeyPem(k.privateKey, { passphrase: req.passphrase!, role: 'root' }),
              }
            : undefined;
        return { ...result, newKeyId: k.signer.id, ...(rootKey ? { rootKey } : {}) };
      },
      { role },
    );
  }

  /**
   * Revokes a key: removes it from every role that lists it (refused if a role would fall below
   * its threshold) and deletes it from the keystore once that change is published. A held key
   * that no role lists is simply deleted.
   */
  async delete(actor: Actor, gun: string, id: string, req: { offlineRootKey?: OfflineKeyInput } = {}) {
    return this.c.change(
      actor,
      'key.delete',
      gun,
      async () => {
        const v = await this.c.view(gun);
        const roles = allRoles(v).filter((r) => roleKeysOf(v, r)!.role.keyids.includes(id));
        if (roles.length === 0) {
          const rec = await this.c.keys.get(id);
          if (!rec || rec.gun !== gun) throw notFound('KEY_NOT_FOUND', `${gun} has no key with the ID ${id}, held or in its metadata`);
          await this.c.keys.delete(id);
          await this.c.auditOk(actor, 'key.delete', gun, { inMetadata: false }, { role: rec.role, keyId: id });
          return {
            status: 'published' as const,
            action: 'key.delete',
            summary: `deleted unused key ${id.slice(0, 12)}`,
            versions: {},
            removedFromRoles: [] as string[],
            deletedFromKeystore: true,
          };
        }
        const b = new DraftBuilder(v, this.c.now());
        for (const role of roles) {
          const rk = roleKeysOf(v, role)!.role;
          if (rk.keyids.length - 1 < rk.threshold) {
            throw conflict(
              'KEY_IN_USE',
              `removing the key would leave ${role} with ${rk.keyids.length - 1} key(s) for threshold ${rk.threshold}: rotate it or add a key first`,
            );
          }
          b.editRoleKeys(role, (r) => void (r.keyids = r.keyids.filter((k) => k !== id)));
        }
        const d = await this.c.draft(b, 'key.delete', `remove key ${id.slice(0, 12)} from ${roles.join(', ')}`);
        if ((await this.c.keys.get(id))?.gun === gun && !d.retireKeyIds.includes(id)) d.retireKeyIds.push(id);
        const offline = this.c.offlineRootSigners(v, req.offlineRootKey);
        const result = await this.c.apply(actor, d, { offline });
        await this.c.auditChange(actor, 'key.delete', gun, result, { keyId: id }, { roles });
        return { ...result, removedFromRoles: roles, deletedFromKeystore: result.status === 'published' && d.retireKeyIds.includes(id) };
      },
      { keyId: id },
    );
  }

  /** Adds a key to a role (generated on the server, or a public key / certificate held elsewhere), optionally with a new threshold. */
  async addToRole(
    actor: Actor,
    gun: string,
    role: string,
    req: { publicKey?: string; algorithm?: Algorithm; threshold?: number; offlineRootKey?: OfflineKeyInput },
  ) {
    return this.c.change(
      actor,
      'role.key.add',
      gun,
      async () => {
        const v = await this.c.view(gun);
        requireRole(v, role);
        const rk = roleKeysOf(v, role)!;
        if (req.threshold !== undefined && req.threshold > rk.role.keyids.length + 1) {
          throw badRequest(
            'THRESHOLD_TOO_HIGH',
            `role ${role}: threshold ${req.threshold} is larger than its ${rk.role.keyids.length + 1} key(s)`,
          );
        }
        let key: TufKey;
        let extra: Signer[] = [];
        let generated: NewKey | undefined;
        if (req.publicKey !== undefined) {
          if (SERVER_ROLES.has(role))
            throw badRequest('INVALID_REQUEST', `${role} keys are held by the server: generate one (omit publicKey) or rotate`);
          // algorithm picks the kind of key the server generates; with a given key it was ignored.
          if (req.algorithm !== undefined)
            throw badRequest('INVALID_REQUEST', 'algorithm is for a key the server generates: give publicKey or algorithm, not both');
          key = parsePublicKeyPem(req.publicKey, new Date(this.c.now()));
          if (role === 'root') {
            const ok = validateRootKey(key, gun, new Date(this.c.now()));
            if (!ok.ok) throw badRequest('UNSUPPORTED_KEY', `root keys must be certificates for this GUN: ${ok.reason}`);
          }
        } else {
          if (role === 'root' && req.algorithm === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
          generated = await this.newKey(gun, role, req.algorithm, 'keystore');
          key = generated.signer.key;
          extra = [generated.signer];
        }
        const id = keyId(key);
        const created: string[] = [];
        try {
          if (rk.role.keyids.includes(id)) throw conflict('CONFLICT', `key ${id} is already a key of ${role}`);
          const b = new DraftBuilder(v, this.c.now());
          b.editRoleKeys(
            role,
            (r) => {
              r.keyids.push(id);
              if (req.threshold !== undefined) r.threshold = req.threshold;
            },
            [key],
          );
          extra.push(...this.c.offlineRootSigners(v, req.offlineRootKey));
          const d = await this.c.draft(
            b,
            'role.key.add',
            `add key ${id.slice(0, 12)} to ${role}${req.threshold !== undefined ? `, threshold ${req.threshold}` : ''}`,
          );
          if (generated?.store && generated.privateKey) await this.c.keys.importKey(gun, role, generated.privateKey, key);
          if (generated && (await this.c.keys.get(id))) created.push(id);
          d.createdKeyIds = created;
          const result = await this.c.apply(actor, d, { offline: extra });
          await this.c.auditChange(
            actor,
            'role.key.add',
            gun,
            result,
            { role, keyId: id },
            { threshold: req.threshold ?? rk.role.threshold },
          );
          return { ...result, keyId: id };
        } catch (e) {
          if (generated && !created.length && (await this.c.keys.get(id))) await this.c.dropKeys([id]);
          throw e;
        }
      },
      { role },
    );
  }

  async setThreshold(actor: Actor, gun: string, role: string, req: { threshold: number; offlineRootKey?: OfflineKeyInput }) {
    return this.c.change(
      actor,
      'role.threshold',
      gun,
      async () => {
        const v = await this.c.view(gun);
        requireRole(v, role);
        const b = new DraftBuilder(v, this.c.now());
        b.editRoleKeys(role, (r) => void (r.threshold = req.threshold));
        const d = await this.c.draft(b, 'role.threshold', `set the threshold of ${role} to ${req.threshold}`);
        const result = await this.c.apply(actor, d, { offline: this.c.offlineRootSigners(v, req.offlineRootKey) });
        await this.c.auditChange(actor, 'role.threshold', gun, result, { role }, { threshold: req.threshold });
        return result;
      },
      { role },
    );
  }
}
