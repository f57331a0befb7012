// Shared setup for the Notary server HTTP API tests: a real trustgate (startTrustgate) with a
// movable clock, a supertest agent on it, and exact-bytes fixture comparison. Refused requests
// are checked with test/helpers/unchanged.ts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import request from 'supertest';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { authedAgent, type Agent } from '../helpers/tuf-builder.js';
import { gunNamer } from '../helpers/util.js';

export interface Server {
  tg: RunningTrustgate;
  agent: Agent;
  /** Moves the server's clock forward (or back) by ms. */
  advance(ms: number): void;
  now(): number;
  stop(): Promise<void>;
}

export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const tg = await startTrustgate({ env });
  return { tg, agent: authedAgent(request(tg.url), tg.adminToken), advance: tg.advance, now: tg.now, stop: tg.stop };
}

/** A reference-server response body, copied from the recorded fixtures. */
export const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/notary/http/${name}.body`, import.meta.url));

/** One header of a recorded reference answer (the `.headers` fixture next to the body). */
export function fixtureHeader(name: string, header: string): string | undefined {
  const text = readFileSync(new URL(`../fixtures/notary/http/${name}.headers`, import.meta.url), 'utf8');
  const line = text.split(/\r?\n/).find((l) => l.toLowerCase().startsWith(`${header.toLowerCase()}:`));
  return line?.slice(header.length + 1).trim();
}

export const ERR_JSON = 'application/json; charset=utf-8';

/** Asserts an error answer: status, JSON content type, body byte-equal to the fixture (or given text), under 1 KiB. */
export function assertError(
  res: { status: number; headers: Record<string, string>; body: Buffer },
  status: number,
  expected: Buffer | string,
): void {
  const want = typeof expected === 'string' ? Buffer.from(expected) : expected;
  assert.equal(res.status, status, `status: ${res.body.toString()}`);
  assert.equal(res.headers['content-type'], ERR_JSON);
  assert.equal(res.body.toString('utf8'), want.toString('utf8'));
  assert.ok(res.body.length < 1024, `error body is ${res.body.length} bytes`);
  assert.equal(Number(res.headers['content-length']), res.body.length);
}

/** The exact error body notary writes for INVALID_UPDATE with a SerializableError detail. */
export function invalidUpdate(name: string, msg: string, missing?: string): string {
  const error = missing ? { Missing: missing, Msg: msg } : { Msg: msg };
  return (
    JSON.stringify({
      errors: [{ code: 'INVALID_UPDATE', message: 'Update sent by the client is invalid.', detail: { Name: name, Error: error } }],
    }) + '\n'
  );
}

export const NOT_FOUND_DETAIL =
  '{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist.","detail":{}}]}\n';
export const NOT_FOUND_BARE = '{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist."}]}\n';

/** A fresh GUN per test, so tests on one server do not see each other. */
export const newGun = gunNamer('test', 'repo');

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A request whose path goes out exactly as written (no URL normalisation of `..` or `%2e`), with the admin token unless `headers` name another. */
export function rawRequest(
  s: Server,
  method: string,
  path: string,
  opts: { headers?: Record<string, string | number>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: s.tg.port,
        method,
        path,
        headers: {
          Authorization: `Bearer ${s.tg.adminToken}`,
          ...(opts.body !== undefined ? { 'Content-Length': Buffer.byteLength(opts.body) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}
