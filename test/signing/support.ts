// Shared setup for the signing tests: a real trustgate (startTrustgate) with the signing routes
// on its /api/v1, real tokens (the management API's token store), the proxy's verifier, and
// optionally a real upstream registry (docker-registry). Helpers make repositories and
// delegations (test/helpers/trust-edits.ts) and read back versions. Refused requests are checked with
// test/helpers/unchanged.ts.
import request from 'supertest';
import { keyId } from '../../src/core/crypto/keys.js';
import { Metadata, type TargetsBody } from '../../src/core/tuf/metadata.js';
import { RepoEditor } from '../../src/trust/editor.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { digestOf, gunNamer } from '../helpers/util.js';
import { signingParts, type SigningParts } from './wiring.js';
import { editTargets } from '../helpers/trust-edits.js';

export type Agent = ReturnType<typeof request>;

export interface SigningServer {
  tg: RunningTrustgate;
  agent: Agent;
  parts: SigningParts;
  editor: RepoEditor;
  adminToken: string;
  /** A new token with the given scopes (and keystore keys it may sign with). */
  token(scopes: string[], keyIds?: string[]): string;
  stop(): Promise<void>;
}

/**
 * A trustgate as `npm start` builds it. `upstream` sets TRUSTGATE_UPSTREAM (the proxy's registry,
 * which signing uses for sizes, checks and registry-side signatures; the proxy itself is not
 * started) and `checkUpstream` TRUSTGATE_SIGN_CHECK_UPSTREAM.
 */
export async function startSigningServer(
  opts: { env?: Record<string, string>; upstream?: string; checkUpstream?: boolean } = {},
): Promise<SigningServer> {
  const tg = await startTrustgate({
    env: {
      ...(opts.upstream ? { TRUSTGATE_UPSTREAM: opts.upstream } : {}),
      ...(opts.checkUpstream ? { TRUSTGATE_SIGN_CHECK_UPSTREAM: 'true' } : {}),
      ...opts.env,
    },
  });
  const parts = signingParts(tg);
  return {
    tg,
    agent: request(tg.url),
    parts,
    editor: new RepoEditor(tg.app.trust, tg.app.keys),
    adminToken: tg.token(['admin'], { name: 'test-admin' }),
    token: (scopes, keyIds) => tg.token(scopes, keyIds ? { keyIds } : {}),
    stop: () => tg.stop(),
  };
}

export const newGun = gunNamer('ci', 'app');

/** The digest of some text: stands for an image's manifest digest. */
export const fakeDigest = digestOf;

/** Initialises trust for a GUN with the root and targets keys held by the server. */
export async function initRepo(s: SigningServer, gun: string): Promise<{ targetsKeyId: string }> {
  const r = await s.editor.init(gun, { rootKey: 'keystore' });
  return { targetsKeyId: r.targetsKeyId };
}

/** Adds a delegation under `targets` with a new held key (what `trustgate signer add` does). */
export async function addDelegation(
  s: SigningServer,
  gun: string,
  role: string,
  opts: { extraKeys?: import('../../src/core/crypto/keys.js').TufKey[]; threshold?: number; paths?: string[] } = {},
): Promise<string> {
  const rec = await s.tg.app.keys.generate(gun, role, 'ecdsa');
  const extra = opts.extraKeys ?? [];
  await editTargets({ trust: s.tg.app.trust, keys: s.tg.app.keys }, gun, 'targets', (b) => {
    b.delegations.keys[rec.id] = rec.public;
    for (const k of extra) b.delegations.keys[keyId(k)] = k;
    b.delegations.roles.push({
      name: role,
      keyids: [rec.id, ...extra.map(keyId)],
      threshold: opts.threshold ?? 1,
      paths: opts.paths ?? [''],
    });
  });
  return rec.id;
}

/** Highest stored version of each role of a GUN. */
export async function versions(s: SigningServer, gun: string): Promise<Record<string, number>> {
  return Object.fromEntries(await s.tg.app.store.latestVersions(gun));
}

/** The current targets (or delegation) body. */
export async function targetsOf(s: SigningServer, gun: string, role = 'targets'): Promise<TargetsBody | undefined> {
  const f = await s.tg.app.trust.current(gun, role);
  return f && Metadata.parse<TargetsBody>(role, f.bytes).body;
}

export const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
