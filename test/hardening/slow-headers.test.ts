// Every server trustgate listens with bounds how long a client may take to send its headers:
// a socket trickling header bytes is closed, while a long streamed body through the proxy is not cut.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startTrustgateProcess } from '../helpers/trustgate.js';
import { makeTempDir, removeTempDir, type ManagedProcess } from '../helpers/services.js';
import { startStack, type Stack } from '../proxy/support.js';

const HEADERS_MS = 2000;
/** Headers timeout, plus the sweep interval, plus a wide margin for a loaded machine (the old default was 60 s). */
const CLOSED_WITHIN_MS = HEADERS_MS + 18_000;

/** Sends a request line, then one header byte a second; resolves with how long until the server closed the socket. */
function trickle(url: string, maxMs: number): Promise<{ closedAfterMs: number | undefined }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const start = Date.now();
    const sock = net.connect(Number(port), hostname);
    const header = 'X-Slow: ' + 'a'.repeat(100);
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(give);
      sock.destroy();
      resolve({ closedAfterMs: closed ? Date.now() - start : undefined });
    };
    const give = setTimeout(() => finish(false), maxMs);
    sock.on('connect', () => {
      sock.write('GET /_notary_server/health HTTP/1.1\r\nHost: x\r\n');
      timer = setInterval(() => sock.write(header[i++ % header.length]!), 1000);
    });
    sock.on('error', () => {});
    sock.on('close', () => finish(true));
  });
}

let dir: string;
let trust: { url: string; proc: ManagedProcess };
let stack: Stack;

before(async () => {
  dir = await makeTempDir('slow-headers');
  trust = await startTrustgateProcess(
    {
      TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
      TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
      TRUSTGATE_KEY_PASSPHRASE: 'test-keystore-passphrase',
      TRUSTGATE_HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
    },
    path.join(dir, 'trustgate.log'),
  );
  stack = await startStack({
    env: {
      TRUSTGATE_HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      TRUSTGATE_HTTP_REQUEST_TIMEOUT_MS: '3000',
      TRUSTGATE_PROXY_AUTH: 'token',
    },
  });
});

after(async () => {
  await stack?.stop();
  await trust?.proc.stop();
  await removeTempDir(dir);
});

test('slow headers: the trust server (npm start) closes a socket trickling header bytes', async () => {
  const { closedAfterMs } = await trickle(trust.url, CLOSED_WITHIN_MS + 5000);
  assert.ok(closedAfterMs !== undefined && closedAfterMs <= CLOSED_WITHIN_MS, `closed after ${closedAfterMs ?? 'never'} ms`);
});

test('slow headers: the registry proxy closes a socket trickling header bytes', async () => {
  const { closedAfterMs } = await trickle(stack.px.url, CLOSED_WITHIN_MS + 5000);
  assert.ok(closedAfterMs !== undefined && closedAfterMs <= CLOSED_WITHIN_MS, `closed after ${closedAfterMs ?? 'never'} ms`);
});

test('slow headers: a blob upload streaming longer than the request timeout still completes through the proxy', async () => {
  const auth = `Bearer ${stack.tg.adminToken}`;
  const started = await fetch(`${stack.px.url}/v2/slow/upload/blobs/uploads/`, { method: 'POST', headers: { Authorization: auth } });
  assert.equal(started.status, 202, await started.text());
  const location = new URL(started.headers.get('location')!, stack.px.url);
  const chunks = Array.from({ length: 5 }, (_, i) => Buffer.alloc(1024, i));
  const blob = Buffer.concat(chunks);
  location.searchParams.set('digest', `sha256:${createHash('sha256').update(blob).digest('hex')}`);
  const { hostname, port } = location;
  // One chunk a second: 5 s in all, past the 3 s whole-request timeout the trust server has.
  const status = await new Promise<number>((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, async () => {
      sock.write(
        `PUT ${location.pathname}${location.search} HTTP/1.1\r\nHost: ${location.host}\r\nAuthorization: ${auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${blob.length}\r\nConnection: close\r\n\r\n`,
      );
      for (const c of chunks) {
        sock.write(c);
        await new Promise((r) => setTimeout(r, 1000));
      }
    });
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', reject);
    sock.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
  });
  assert.equal(status, 201);
});
