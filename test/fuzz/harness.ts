// The fuzzer's server and invariants: a real trustgate with its first-start admin token, a sender
// that puts `Authorization: Bearer <admin>` on every request, and `check`, which fails on any 5xx
// (or no answer) and, after any refusal, on any change to what is stored. A failure writes the
// seed, the request and the state difference to a file for reproduction.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import request from 'supertest';
import type { Agent } from '../helpers/tuf-builder.js';
import { createLogger } from '../../src/observability/log.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface FuzzResponse {
  status: number;
  body: Buffer;
}

export interface Target {
  tg: RunningTrustgate;
  agent: Agent;
  admin: string;
  /** The supertest agent with the admin token on every request (for setting up fixtures). */
  authed: Agent;
  send(r: FuzzRequest): Promise<FuzzResponse>;
  /** The server's latest error log lines. */
  logs: string[];
  /** A read-only connection to the store (the fingerprint's). */
  db?: Database.Database;
  stop(): Promise<void>;
}

/** `agent` with `Authorization: Bearer <token>` set on each request it makes. */
export function withToken(agent: Agent, token: string): Agent {
  return new Proxy(agent, {
    get(t, p) {
      const v = Reflect.get(t, p) as unknown;
      if (typeof v !== 'function' || !['get', 'post', 'put', 'delete', 'head', 'patch'].includes(String(p))) return v;
      return (...args: unknown[]) =>
        (v as (...a: unknown[]) => ReturnType<Agent['get']>).apply(t, args).set('Authorization', `Bearer ${token}`);
    },
  });
}

export async function startTarget(): Promise<Target> {
  const logs: string[] = [];
  const tg = await startTrustgate({ overrides: { log: createLogger('error', (l) => void (logs.push(l) > 50 && logs.shift())) } });
  const admin = readFileSync(join(tg.app.config.dataDir, 'admin-token'), 'utf8').trim();
  const agent = request(tg.url);
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const send = (r: FuzzRequest) =>
    new Promise<FuzzResponse>((resolve, reject) => {
      const headers: Record<string, string | number> = { Authorization: `Bearer ${admin}`, ...r.headers };
      if (r.body !== undefined) headers['Content-Length'] = r.body.length;
      const req = http.request({ host: '127.0.0.1', port: tg.port, method: r.method, path: r.path, headers, agent: keepAlive }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
      req.on('error', reject);
      req.end(r.body);
    });
  const target: Target = {
    tg,
    agent,
    admin,
    logs,
    authed: withToken(agent, admin),
    send,
    async stop() {
      target.db?.close();
      keepAlive.destroy();
      await tg.stop();
    },
  };
  return target;
}

/** The request path of a GUN's Notary metadata (the GUN's slashes kept, other characters as they are). */
export const tufUrl = (gun: string, file = '') => `/v2/${gun}/_trust/tuf/${file}`;

function readOr(path: string, fallback = ''): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : fallback;
}

function listFiles(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...listFiles(p, `${prefix}${name}/`));
    else out.push(`${prefix}${name} ${st.size} ${st.mtimeMs}`);
  }
  return out;
}

const ROLES = ['root', 'targets', 'snapshot', 'timestamp'];

/**
 * What a refused request must leave alone, cheaply enough to take after every request: `guns`'
 * stored versions (exact bytes) and current metadata as served, a summary of every other stored
 * row (count, last row, total bytes) and of the changefeed, the keystore (listing and files), the
 * tokens and the pending changes. The audit log is left out: refusals are audited by design.
 * (test/routes/support.ts storedState reads every stored byte: right for one test, too slow here.)
 */
export async function fingerprint(t: Target, guns: string[]) {
  const db = (t.db ??= new Database(join(t.tg.app.config.dataDir, 'trustgate.db'), { readonly: true, fileMustExist: true }));
  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex').slice(0, 32);
  const files: string[] = [];
  const byGun = db.prepare<[string], { role: string; version: number; sha256: string; data: Buffer; created_at: number }>(
    'SELECT role, version, sha256, data, created_at FROM tuf_files WHERE gun = ? ORDER BY role, version',
  );
  const current: string[] = [];
  for (const gun of guns) {
    for (const f of byGun.all(gun)) files.push(`${gun} ${f.role} ${f.version} ${f.sha256} ${sha(f.data)} ${f.created_at}`);
    for (const role of ROLES) {
      const r = await t.send({ method: 'GET', path: tufUrl(gun, `${role}.json`), headers: {} });
      current.push(`${gun} ${role} ${r.status} ${sha(r.body)}`);
    }
  }
  const dataDir = t.tg.app.config.dataDir;
  return {
    files,
    current,
    allFiles: JSON.stringify(db.prepare('SELECT count(*) AS n, max(rowid) AS last, total(length(data)) AS bytes FROM tuf_files').get()),
    changefeed:
      JSON.stringify(db.prepare('SELECT * FROM changefeed ORDER BY id DESC LIMIT 1').get() ?? null) +
      JSON.stringify(db.prepare('SELECT count(*) AS n FROM changefeed').get()),
    keys: (await t.tg.app.keys.list()).map((k) => `${k.id} ${k.gun} ${k.role}`).sort(),
    keyFiles: listFiles(t.tg.app.config.keysDir),
    tokens: readOr(join(dataDir, 'tokens.json')),
    pending: readOr(join(dataDir, 'pending.json')),
  };
}
export type Fingerprint = Awaited<ReturnType<typeof fingerprint>>;

/** The fields of two fingerprints that differ, with the lines only one of them has. */
export function diff(a: Fingerprint, b: Fingerprint): Record<string, { removed: string[]; added: string[] }> {
  const out: Record<string, { removed: string[]; added: string[] }> = {};
  for (const k of Object.keys(a) as Array<keyof Fingerprint>) {
    const x = ([] as string[]).concat(a[k]);
    const y = ([] as string[]).concat(b[k]);
    if (JSON.stringify(x) === JSON.stringify(y)) continue;
    out[k] = {
      removed: x.filter((l) => !y.includes(l)).map((l) => l.slice(0, 300)),
      added: y.filter((l) => !x.includes(l)).map((l) => l.slice(0, 300)),
    };
  }
  return out;
}

export class FuzzFailure extends Error {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(`${message}\n  input saved to ${file}`);
  }
}

export interface Finding {
  seed: number;
  iteration: number;
  kind: string;
  mutations: string[];
  request: FuzzRequest;
  status?: number;
  response?: string;
  /** Error lines the server logged while answering. */
  serverLog?: string[];
  changed?: ReturnType<typeof diff>;
}

/** Writes a failing input where it can be replayed from (`request.body` base64). */
export function saveFinding(dir: string, f: Finding): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `fuzz-${f.seed}-${f.iteration}.json`);
  const { body, ...req } = f.request;
  writeFileSync(file, JSON.stringify({ ...f, request: { ...req, bodyBase64: body?.toString('base64') ?? null } }, null, 2) + '\n');
  return file;
}

/** Sends one fuzzed request and checks the invariants against the state before it. */
export async function check(
  t: Target,
  ctx: { seed: number; iteration: number; kind: string; mutations: string[]; outDir: string; guns: string[] },
  req: FuzzRequest,
  before: Fingerprint,
): Promise<{ status: number; body: Buffer; after: Fingerprint }> {
  t.logs.length = 0;
  const fail = (msg: string, extra: Partial<Finding>) => {
    const file = saveFinding(ctx.outDir, {
      seed: ctx.seed,
      iteration: ctx.iteration,
      kind: ctx.kind,
      mutations: ctx.mutations,
      request: req,
      serverLog: [...t.logs],
      ...extra,
    });
    return new FuzzFailure(
      `fuzz seed ${ctx.seed} iteration ${ctx.iteration} (${ctx.kind}: ${ctx.mutations.join(', ')}): ${req.method} ${req.path.slice(0, 200)}: ${msg}`,
      file,
    );
  };
  let res: FuzzResponse;
  try {
    res = await t.send(req);
  } catch (e) {
    throw fail(`no answer: ${(e as Error).message}`, {});
  }
  const text = res.body.toString('utf8').slice(0, 2000);
  if (res.status >= 500) throw fail(`answered ${res.status}: ${text.slice(0, 300)}`, { status: res.status, response: text });
  const after = await fingerprint(t, ctx.guns);
  if (res.status >= 300) {
    const changed = diff(before, after);
    if (Object.keys(changed).length > 0) {
      throw fail(`refused with ${res.status} but stored data changed: ${JSON.stringify(changed).slice(0, 600)}`, {
        status: res.status,
        response: text,
        changed,
      });
    }
  }
  return { status: res.status, body: res.body, after };
}
