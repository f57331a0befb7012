// A real trustgate (createApp, the same as `npm start`) for the management API tests: a movable
// clock, captured logs, the first-start admin token, and a `call` that validates every response
// against openapi.yaml.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import request from 'supertest';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { gunNamer } from '../helpers/util.js';
import { OpenApiChecker } from './openapi.js';

export interface Res {
  status: number;
  body: any;
  headers: Record<string, string>;
  text: string;
}

export interface Mgmt {
  tg: RunningTrustgate;
  admin: string;
  logs: string[];
  checker: OpenApiChecker;
  advance(ms: number): void;
  now(): number;
  /** A request to /api/v1 + path with the admin token (or `token`, or none with null); the response is checked against openapi.yaml. */
  call(
    method: 'get' | 'post' | 'put' | 'delete',
    path: string,
    opts?: { token?: string | null; body?: unknown; raw?: string; contentType?: string },
  ): Promise<Res>;
  stop(): Promise<void>;
}

let shared: OpenApiChecker | undefined;
export const checker = () => (shared ??= new OpenApiChecker());

export interface MgmtOptions {
  env?: Record<string, string>;
  /** Serve https with this certificate; `ca` verifies it. */
  tls?: { cert: string; key: string; ca: string };
  /** Reuse a data/keys directory (restarts); it is then not removed on stop. */
  dir?: string;
}

export async function startMgmt(opts: MgmtOptions = {}): Promise<Mgmt> {
  const tg = await startTrustgate({
    logs: 'debug',
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    ...(opts.dir ? { dir: opts.dir } : {}),
  });
  const c = checker();
  const agent = request(tg.url);
  const ca = opts.tls ? readFileSync(opts.tls.ca) : undefined;
  const self: Mgmt = {
    tg,
    admin: tg.adminToken,
    logs: tg.logs,
    checker: c,
    advance: tg.advance,
    now: tg.now,
    async call(method, path, opts = {}) {
      const url = `/api/v1${path}`;
      let r = agent[method](url);
      if (ca) r = r.ca(ca);
      const token = opts.token === undefined ? self.admin : opts.token;
      if (token !== null) r = r.set('Authorization', `Bearer ${token}`);
      if (opts.raw !== undefined) r = r.set('Content-Type', opts.contentType ?? 'application/json').send(opts.raw);
      else if (opts.body !== undefined) r = r.send(opts.body as object);
      const res = await r;
      const out: Res = { status: res.status, body: res.body, headers: res.headers as Record<string, string>, text: res.text };
      c.check(method, url, out);
      return out;
    },
    stop: () => tg.stop(),
  };
  return self;
}

export const enc = encodeURIComponent;

export const newGun = gunNamer('mgmt', 'app');

/** Asserts a status, with the body in the message. */
export function expectStatus(res: Res, status: number): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text.slice(0, 800)}`);
}

export function expectError(res: Res, status: number, code: string): void {
  expectStatus(res, status);
  assert.equal(res.body.error?.code, code, res.text);
}
