// The one check that a refused request changed nothing: snapshot what it could have touched,
// run it, and compare. Trust data is read from the SQLite file itself (through the store for
// PostgreSQL), the rest through the running app, and the named GUNs also over HTTP as a client
// would see them.
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import request from 'supertest';
import { raw, tufPath } from './tuf-builder.js';
import type { RunningTrustgate } from './trustgate.js';
import { sha256Hex } from './util.js';

export interface Watch {
  /** Compare the keystore (default true); false for requests that may hand out a new server key. */
  keys?: boolean;
  /** Also compare the token list (ids), for requests that could make or revoke tokens. */
  tokens?: boolean;
  /** Also compare the audit log's length, for requests that must not be logged as done. */
  audit?: boolean;
}

export interface StoredState {
  /** Every stored version of every role of every GUN (SQLite; other stores: the current ones), with its bytes' hash and creation time. */
  trust: Record<string, string>;
  /** The newest changefeed records. */
  changes: string[];
  /** For the named GUNs: each role as served (status and sha256), and the changefeed as served. */
  served: Record<string, string>;
  /** The keystore: id, GUN and role of every key. */
  keys?: string[];
  /** Pending (m-of-n) change ids. */
  pending: string[];
  tokens?: string[];
  audit?: number;
}

/** What a refused request could have touched; `guns` are also read over HTTP with the admin token. */
export async function storedState(tg: RunningTrustgate, guns: readonly string[] = [], w: Watch = {}): Promise<StoredState> {
  const { store, keys, management } = tg.app;
  // Served first: a GET may legitimately re-sign an expired timestamp, which the stored part then includes.
  const served: Record<string, string> = {};
  if (guns.length > 0) {
    const agent = request(tg.url);
    const get = (p: string) => raw(agent.get(p).disableTLSCerts().set('Authorization', `Bearer ${tg.adminToken}`));
    for (const gun of guns) {
      for (const role of ['root', 'targets', 'snapshot', 'timestamp']) {
        const res = await get(tufPath(gun, `${role}.json`));
        served[`${gun} ${role}`] = `${res.status} ${sha256Hex(res.body)}`;
      }
    }
    const cf = await get('/v2/_trust/changefeed?records=1000');
    served.changefeed = `${cf.status} ${sha256Hex(cf.body)}`;
  }
  const trust: Record<string, string> = {};
  if (store.kind === 'sqlite') {
    // Every stored version, byte for byte, straight from the database file.
    const db = new Database(path.join(tg.app.config.dataDir, 'trustgate.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db
        .prepare('SELECT gun, role, version, sha256, hex(data) AS data, created_at FROM tuf_files ORDER BY gun, role, version')
        .all() as Array<Record<string, string | number>>;
      for (const r of rows) trust[`${r.gun} ${r.role} ${r.version}`] = `${r.sha256} ${r.data} ${r.created_at}`;
    } finally {
      db.close();
    }
  } else {
    // Other stores: the current file of every role (a commit always makes a new current one).
    for (const gun of await store.listGuns()) {
      for (const role of (await store.latestVersions(gun)).keys()) {
        const f = await store.latest(gun, role);
        if (f) trust[`${gun} ${role} ${f.version}`] = `${f.sha256} ${sha256Hex(f.bytes)} ${f.createdAt.toISOString()}`;
      }
    }
  }
  const changes = (await store.changes({ changeId: -1, records: 100 })).map(
    (c) => `${c.id} ${c.gun} ${c.version} ${c.sha256} ${c.category}`,
  );
  return {
    trust,
    changes,
    served,
    ...(w.keys !== false ? { keys: (await keys.list()).map((k) => `${k.id} ${k.gun} ${k.role}`).sort() } : {}),
    pending: (await management.pending.list()).map((p) => p.id).sort(),
    ...(w.tokens
      ? {
          tokens: (await management.tokens.list()).map((t) => t.id).sort(),
        }
      : {}),
    ...(w.audit ? { audit: (await management.audit.query()).length } : {}),
  };
}

/**
 * Runs `fn` and asserts that it changed nothing stored: trust data of every GUN, the changefeed,
 * the keystore (unless `w.keys` is false), pending changes, tokens or the audit log when `w`
 * asks, and what the named GUNs serve. Returns fn's result. `on`: a running trustgate, or a
 * suite's server holding one.
 */
export async function unchanged<T>(
  on: RunningTrustgate | { tg: RunningTrustgate },
  guns: string | readonly string[],
  fn: () => Promise<T>,
  w: Watch = {},
): Promise<T> {
  const tg = 'tg' in on ? on.tg : on;
  const names = typeof guns === 'string' ? [guns] : guns;
  const before = await storedState(tg, names, w);
  const out = await fn();
  assert.deepEqual(await storedState(tg, names, w), before, 'a refused request changed stored data');
  return out;
}
