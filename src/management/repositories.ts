// Repositories: create (keys in the keystore, or an offline root handed back once), list,
// inspect like `docker trust inspect`, delete, and publish a root signed elsewhere.
import { exportPrivateKeyPem, notaryKeyId } from '../core/crypto/pem.js';
import { canonicalBytes, parseJson } from '../core/json/canonical.js';
import { releasedRows, tagRows } from '../core/tuf/docker-view.js';
import { BASE_ROLES, isBaseRole, isDelegationName, parentRole } from '../core/tuf/roles.js';
import { Metadata, type RootBody } from '../core/tuf/metadata.js';
import { parseRfc3339 } from '../core/tuf/time.js';
import type { TrustPin } from '../storage/types.js';
import type { Actor } from '../auth/guard.js';
import { allRoles, roleKeysOf, type RepoView } from './draft.js';
import { badRequest, notFound } from '../http/api-error.js';
import { BoundedMap } from '../core/bounded-map.js';
import { SERVER_ROLES, checkPassphrase, freshUntil, roleFile, type ManagementContext } from './context.js';

/** A pinned root as the trust reset reports it. */
function pinView(p: TrustPin | undefined) {
  if (!p) return null;
  const root = Metadata.parse<RootBody>('root', p.root);
  return { rootVersion: root.version, rootKeyIds: root.body.roles.root.keyids, versions: p.versions };
}

/** Every target of every role, grouped by tag and digest, with the roles that sign it. */
export function allTags(v: RepoView) {
  return tagRows(
    allRoles(v).flatMap((role) => {
      const md = v.targets.get(role);
      return md ? [[role, md.body.targets] as const] : [];
    }),
  );
}

/** What `docker trust inspect` calls signed tags (the signing API's inspect shows the same). */
function signedTags(v: RepoView) {
  return releasedRows(allTags(v));
}

export interface RoleSummary {
  role: string;
  version: number | null;
  expires: string | null;
  threshold: number;
  keyCount: number;
  renewedAutomatically: boolean;
}

export interface RepositorySummary {
  gun: string;
  rootVersion: number;
  targetsVersion: number | null;
  tagCount: number;
  signedTagCount: number;
  delegationCount: number;
  nextExpiry: { role: string; expires: string } | null;
  nextManualExpiry: { role: string; expires: string } | null;
  roles: RoleSummary[];
}

/** Summaries kept (one per GUN): enough for every repository of a large server. */
const MAX_SUMMARIES = 20_000;

export class Repositories {
  /** Each GUN's summary with the sha256 of the timestamp it was made from. */
  private summaries = new BoundedMap<string, { timestamp: string; freshUntil: number; summary: RepositorySummary }>(MAX_SUMMARIES);

  constructor(private c: ManagementContext) {}

  async create(actor: Actor, req: { gun: string; rootKey: 'keystore' | 'offline'; passphrase?: string; algorithm?: 'ecdsa' | 'rsa' }) {
    return this.c.change(actor, 'repository.create', req.gun, async () => {
      this.c.checkGun(req.gun);
      if (req.rootKey === 'offline') checkPassphrase(req.passphrase);
      const note = this.c.journalNote(actor, 'repository.create');
      const res = await this.c.editor.init(req.gun, { rootKey: req.rootKey, algorithm: req.algorithm ?? 'ecdsa', note });
      let rootKey: { id: string; canonicalId: string; pem: string } | undefined;
      if (res.offlineRootKey) {
        rootKey = {
          id: res.rootKeyId,
          canonicalId: notaryKeyId(res.offlineRootKey),
          pem: exportPrivateKeyPem(res.offlineRootKey, { passphrase: req.passphrase!, role: 'root' }),
        };
      }
      await this.c.auditOk(
        actor,
        'repository.create',
        req.gun,
        {
          rootKey: req.rootKey,
          rootKeyId: res.rootKeyId,
          targetsKeyId: res.targetsKeyId,
          snapshotKeyId: res.snapshotKeyId,
          timestampKeyId: res.timestampKeyId,
        },
        {},
        note,
      );
      return { repository: await this.inspect(req.gun), ...(rootKey ? { rootKey } : {}) };
    });
  }

  /**
   * Readable repositories in GUN order, those whose GUN contains `q` (case-insensitive), and the
   * page `offset`/`limit` of them. Summaries are kept per GUN until its timestamp changes.
   */
  async list(canRead: (gun: string) => boolean, page: { q?: string; offset?: number; limit?: number } = {}) {
    const needle = page.q?.toLowerCase();
    // GUNs with only keys minted, or not valid, have no summary and are not listed.
    const all = await this.summariesOf((gun) => canRead(gun) && (needle === undefined || gun.toLowerCase().includes(needle)));
    const offset = page.offset ?? 0;
    const limit = page.limit ?? null;
    return {
      repositories: all.slice(offset, limit === null ? undefined : offset + limit),
      total: all.length,
      offset,
      limit,
    };
  }

  /** Summaries of every repository `canRead` allows, in GUN order (made or reused as list() does). */
  async summariesOf(canRead: (gun: string) => boolean): Promise<RepositorySummary[]> {
    const out: RepositorySummary[] = [];
    for (const gun of (await this.c.trust.store.listGuns()).sort()) {
      if (!canRead(gun)) continue;
      const s = await this.summary(gun).catch(() => undefined);
      if (s) out.push(s);
    }
    return out;
  }

  /** The summary of one GUN: made again only when its current timestamp (which names every role file by hash) changed. */
  private async summary(gun: string): Promise<RepositorySummary | undefined> {
    this.c.checkGun(gun);
    // One store read (no parse) while nothing changed and nothing is due for renewal.
    const latest = await this.c.latestTimestamp(gun);
    if (!latest) return undefined;
    const hit = this.summaries.get(gun);
    if (hit?.timestamp === latest.sha256 && hit.freshUntil > this.c.now()) return hit.summary;
    const ts = await this.c.trust.current(gun, 'timestamp'); // renews a due timestamp first, as view() does
    if (!ts) return undefined;
    const v = await this.c.view(gun);
    const roles = allRoles(v);
    const summaries: RoleSummary[] = [];
    for (const role of roles) {
      const md = roleFile(v, role);
      const rk = roleKeysOf(v, role)!;
      summaries.push({
        role,
        version: md?.version ?? null,
        expires: md?.body.expires ?? null,
        threshold: rk.role.threshold,
        keyCount: rk.role.keyids.length,
        renewedAutomatically: SERVER_ROLES.has(role) && (await this.c.heldOf(gun, rk.role.keyids)).length > 0,
      });
    }
    const soonest = (rs: RoleSummary[]) =>
      rs
        .flatMap((r) => (r.expires === null ? [] : [{ role: r.role, expires: r.expires }]))
        .sort((a, b) => parseRfc3339(a.expires) - parseRfc3339(b.expires))[0] ?? null;
    const tags = allTags(v);
    const summary: RepositorySummary = {
      gun,
      rootVersion: v.root.version,
      targetsVersion: v.targets.get('targets')?.version ?? null,
      tagCount: tags.length,
      signedTagCount: releasedRows(tags).length,
      delegationCount: roles.length - BASE_ROLES.length,
      nextExpiry: soonest(summaries),
      nextManualExpiry: soonest(summaries.filter((r) => !r.renewedAutomatically)),
      roles: summaries,
    };
    this.summaries.set(gun, { timestamp: ts.sha256, freshUntil: freshUntil(v), summary });
    return summary;
  }

  /** Like `docker trust inspect`, with versions and expiry of every role. */
  async inspect(gun: string) {
    const v = await this.c.view(gun);
    const roles = [];
    for (const role of allRoles(v)) {
      const rk = roleKeysOf(v, role)!;
      const md = roleFile(v, role);
      roles.push({
        role,
        keyIds: rk.role.keyids,
        threshold: rk.role.threshold,
        ...(rk.paths ? { paths: rk.paths } : {}),
        version: md?.version ?? null,
        expires: md?.body.expires ?? null,
      });
    }
    const delegations = roles.filter((r) => isDelegationName(r.role));
    const signers = delegations
      .filter((d) => parentRole(d.role) === 'targets' && d.role !== 'targets/releases')
      .map((d) => ({ name: d.role.slice('targets/'.length), role: d.role, keyIds: d.keyIds }));
    const rootHeld = await this.c.heldOf(gun, v.root.body.roles.root.keyids);
    return {
      gun,
      rootKey: rootHeld.length >= v.root.body.roles.root.threshold ? ('keystore' as const) : ('offline' as const),
      signedTags: signedTags(v),
      allTags: allTags(v),
      signers,
      administrativeKeys: { root: v.root.body.roles.root.keyids, repository: v.root.body.roles.targets.keyids },
      roles: roles.filter((r) => isBaseRole(r.role)),
      delegations,
    };
  }

  async delete(actor: Actor, gun: string, deleteKeys: boolean) {
    return this.c.change(actor, 'repository.delete', gun, async () => {
      await this.c.view(gun);
      for (const p of await this.c.pending.list({ gun })) {
        if (await this.c.pending.remove(p.id)) await this.c.dropKeys(p.createdKeyIds);
      }
      const note = this.c.journalNote(actor, 'repository.delete');
      await this.c.trust.deleteGun(gun, note);
      const deleted: string[] = [];
      if (deleteKeys) {
        for (const k of await this.c.keys.list({ gun })) {
          await this.c.keys.delete(k.id);
          deleted.push(k.id);
        }
      }
      await this.c.auditOk(actor, 'repository.delete', gun, { deletedKeyIds: deleted }, {}, note);
      return { gun, deleted: true, deletedKeyIds: deleted };
    });
  }

  /** Publishes a root signed elsewhere (offline root holders), through the normal publish checks. */
  async uploadRoot(actor: Actor, gun: string, root: unknown) {
    return this.c.change(
      actor,
      'root.upload',
      gun,
      async () => {
        await this.c.view(gun);
        let bytes: Buffer;
        try {
          bytes = canonicalBytes(root);
          parseJson(bytes);
        } catch {
          throw badRequest('INVALID_METADATA', 'root is not canonical-JSON-encodable metadata');
        }
        const note = this.c.journalNote(actor, 'root.upload');
        const files = await this.c.trust.publish(gun, new Map([['root', bytes]]), note);
        const versions = Object.fromEntries(files.map((f) => [f.role, f.version]));
        await this.c.auditOk(actor, 'root.upload', gun, { version: versions.root ?? null }, {}, note);
        return { status: 'published' as const, action: 'root.upload', summary: `uploaded root v${versions.root}`, versions };
      },
      { role: 'root' },
    );
  }

  /**
   * The trust reset: the verifiers' pin for `gun` moves to the root stored now, as on first use
   * (or is removed when the GUN has no trust data, so the next root is pinned on first use).
   * The only way, besides a rotation signed by the pinned root, for a GUN to trust another root.
   */
  async trustReset(actor: Actor, gun: string) {
    return this.c.change(actor, 'repository.trust-reset', gun, async () => {
      this.c.checkGun(gun);
      const rootFile = await this.c.trust.current(gun, 'root');
      const next = rootFile && { root: rootFile.bytes, versions: { root: rootFile.version } };
      // Checked before anything is written: a GUN with neither trust data nor a pin is unknown.
      if (!next && !(await this.c.trust.store.pin(gun)))
        throw notFound('NOT_FOUND', `repository ${gun} has no trust data and no pinned root`);
      const pinned = pinView(next);
      const old = await this.c.trust.store.resetPin(gun, next, new Date(this.c.now()));
      let previous: ReturnType<typeof pinView> = null;
      try {
        previous = pinView(old);
      } catch {
        // an unreadable old pin is replaced all the same
      }
      // Verifiers and verdict caches of this process (and of cluster workers) drop what they hold.
      this.c.trust.events.emit('change', { gun, kind: 'update' });
      await this.c.auditOk(actor, 'repository.trust-reset', gun, {
        previousRootVersion: previous?.rootVersion ?? null,
        previousRootKeyIds: previous?.rootKeyIds ?? [],
        previousVersions: Object.entries(previous?.versions ?? {}).map(([r, v]) => `${r}=${v}`),
        rootVersion: pinned?.rootVersion ?? null,
        rootKeyIds: pinned?.rootKeyIds ?? [],
      });
      return { gun, previous, pinned };
    });
  }
}
