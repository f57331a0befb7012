// The raw blob GET path (src/registry/rawget.ts) against scripted upstreams: heads parsed strictly
// (anything unusual goes back to node's client), bodies intact across buffer boundaries,
// connections kept alive and stale ones replaced, backpressure from a client that stops reading,
// and the upstream aborted when the client goes or the upstream stalls.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseHead, RawGetClient, RawGetError, requestHead } from '../../src/registry/rawget.js';
import { sha256Hex } from '../helpers/util.js';

test('response heads: only a plain 200/206 with one Content-Length is streamed', () => {
  const ok = parseHead(
    'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: application/octet-stream\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: a\r\nSet-Cookie: b',
  );
  assert.ok(ok);
  assert.equal(ok.status, 200);
  assert.equal(ok.length, 12);
  assert.equal(ok.keepAlive, true);
  assert.equal(ok.headers['content-type'], 'application/octet-stream');
  assert.equal(ok.headers['x-a'], '1, 2');
  assert.deepEqual(ok.headers['set-cookie'], ['a', 'b']);
  assert.equal(parseHead('HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Length: 10')?.status, 206);
  assert.equal(parseHead('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close')?.keepAlive, false);
  assert.equal(parseHead('HTTP/1.0 200 OK\r\nContent-Length: 1')?.keepAlive, false);
  for (const bad of [
    'HTTP/1.1 404 Not Found\r\nContent-Length: 1',
    'HTTP/1.1 401 Unauthorized\r\nContent-Length: 1',
    'HTTP/1.1 307 Temporary Redirect\r\nLocation: http://x/\r\nContent-Length: 0',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked',
    'HTTP/1.1 200 OK',
    'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 12',
    'HTTP/1.1 200 OK\r\nContent-Length: -1',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded: continuation',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nBad Name: x',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\rb',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\nY: b',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\u0001b',
    'HTTP/2 200\r\nContent-Length: 1',
    'ICY 200 OK\r\nContent-Length: 1',
  ]) {
    assert.equal(parseHead(bad), undefined, JSON.stringify(bad));
  }
});

test('request heads carry the Host and refuse what would not go out as it came in', () => {
  const h = requestHead('/v2/a/blobs/sha256:00?x=1', 'up:5000', { range: 'bytes=0-9', accept: ['a', 'b'], 'content-length': '5' });
  assert.equal(h, 'GET /v2/a/blobs/sha256:00?x=1 HTTP/1.1\r\nHost: up:5000\r\nrange: bytes=0-9\r\naccept: a\r\naccept: b\r\n\r\n');
  assert.equal(requestHead('/v2/a b', 'h', {}), undefined);
  assert.equal(requestHead('/v2/a\r\nX: y', 'h', {}), undefined);
  assert.equal(requestHead('/v2/a', 'h', { 'x-evil': 'a\r\nInjected: 1' }), undefined);
  assert.equal(requestHead('/v2/a', 'h', { 'bad name': 'x' }), undefined);
});

// ------------------------------------------------------------------------------------------------
// A scripted upstream, and a front server that serves every request through a RawGetClient the
// way the proxy does (599 when the client says the answer is not for it).

interface Upstream {
  url: URL;
  connections: number;
  sockets: Set<import('node:net').Socket>;
  server: http.Server;
}

const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function listen(server: http.Server): Promise<URL> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
}

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const server = http.createServer(handler);
  const u: Upstream = { url: new URL('http://x'), connections: 0, sockets: new Set(), server };
  server.on('connection', (s) => {
    u.connections++;
    u.sockets.add(s);
    s.on('close', () => u.sockets.delete(s));
  });
  u.url = await listen(server);
  return u;
}

async function front(up: Upstream, timeoutMs = 10_000): Promise<{ url: URL; client: RawGetClient }> {
  const client = new RawGetClient({
    host: '127.0.0.1',
    port: Number(up.url.port),
    hostHeader: up.url.host,
    origin: up.url.origin,
    timeoutMs,
  });
  closers.push(async () => client.close());
  const server = http.createServer(async (req, res) => {
    try {
      const r = await client.get(req.url!, { ...(req.headers.range ? { range: req.headers.range } : {}) });
      if (!r) {
        res.writeHead(599).end('not streamed');
        return;
      }
      const { connection: _c, 'keep-alive': _k, ...headers } = r.head.headers;
      res.writeHead(r.head.status, headers);
      await r.pipe(res);
    } catch (e) {
      res.writeHead(503).end((e as Error).message);
    }
  });
  return { url: await listen(server), client };
}

const fetchAll = async (url: URL, init?: RequestInit) => {
  const r = await fetch(url, init);
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
};

test('bodies arrive intact across buffer boundaries, over one kept-alive connection', async () => {
  const K = 512 * 1024;
  const sizes = [0, 1, 100, K - 1, K, K + 1, 2 * K + 7, 3 * 1024 * 1024 + 5];
  const blobs = new Map(sizes.map((n) => [`/b/${n}`, randomBytes(n)]));
  const up = await upstream((req, res) => {
    const b = blobs.get(req.url!)!;
    res.writeHead(200, {
      'content-length': b.length,
      'content-type': 'application/octet-stream',
      'docker-content-digest': `sha256:${sha256Hex(b)}`,
    });
    // Small writes as well as large ones: the head and the body's start often share a read.
    if (b.length > 100) {
      res.write(b.subarray(0, 37));
      res.end(b.subarray(37));
    } else res.end(b);
  });
  const f = await front(up);
  for (const [path, b] of blobs) {
    const r = await fetchAll(new URL(path, f.url));
    assert.equal(r.status, 200);
    assert.equal(r.body.length, b.length, path);
    assert.equal(sha256Hex(r.body), sha256Hex(b), path);
    assert.equal(r.headers.get('docker-content-digest'), `sha256:${sha256Hex(b)}`);
  }
  assert.equal(up.connections, 1, 'every GET went over the same upstream connection');
  assert.equal(f.client.idleCount, 1);
  // Ranges come back as 206 with their bytes.
  const range = await upstream((req, res) => {
    const b = blobs.get('/b/100')!;
    const [, from, to] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')!.map(Number) as [number, number, number];
    res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${b.length}`, 'content-length': to - from + 1 });
    res.end(b.subarray(from, to + 1));
  });
  const fr = await front(range);
  const part = await fetchAll(new URL('/b/100', fr.url), { headers: { range: 'bytes=10-19' } });
  assert.equal(part.status, 206);
  assert.deepEqual(part.body, blobs.get('/b/100')!.subarray(10, 20));
});

test('small bodies are read whole, up to a limit; a larger one is refused and its connection dropped', async () => {
  const small = randomBytes(3000);
  const big = randomBytes(2 * 1024 * 1024 + 3);
  const up = await upstream((req, res) => {
    const b = req.url === '/big' ? big : small;
    res.writeHead(200, { 'content-length': b.length, 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    res.end(b);
  });
  const client = new RawGetClient({
    host: '127.0.0.1',
    port: Number(up.url.port),
    hostHeader: up.url.host,
    origin: up.url.origin,
    timeoutMs: 5000,
  });
  closers.push(async () => client.close());
  for (let i = 0; i < 3; i++) {
    const r = await client.get('/small', {});
    assert.ok(r);
    assert.equal(r.head.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(await r.collect(4 * 1024 * 1024), small);
  }
  const whole = await client.get('/big', {});
  assert.equal(sha256Hex(await whole!.collect(4 * 1024 * 1024)), sha256Hex(big));
  assert.equal(up.connections, 1);
  const tooBig = await client.get('/big', {});
  await assert.rejects(tooBig!.collect(1024 * 1024), /larger than 1048576 bytes/);
  assert.equal(client.idleCount, 0, 'the connection with an unread body was dropped');
  assert.deepEqual(await (await client.get('/small', {}))!.collect(10_000), small);
  assert.equal(up.connections, 2);
});

test("answers other than a plain 200/206 are left to node's client", async () => {
  const up = await upstream((req, res) => {
    if (req.url === '/401') res.writeHead(401, { 'www-authenticate': 'Bearer realm="x"', 'content-length': 2 }).end('no');
    else if (req.url === '/404') res.writeHead(404, { 'content-length': 2 }).end('no');
    else if (req.url === '/307') res.writeHead(307, { location: 'http://elsewhere/', 'content-length': 0 }).end();
    else {
      res.writeHead(200, { 'content-type': 'text/plain' }); // no length: chunked
      res.write('a');
      res.end('b');
    }
  });
  const f = await front(up);
  for (const p of ['/401', '/404', '/307', '/chunked']) {
    const r = await fetchAll(new URL(p, f.url));
    assert.equal(r.status, 599, p);
  }
  assert.equal(f.client.idleCount, 0, 'connections with unread answers are not reused');
});

test('a response the caller cancels drops its connection', async () => {
  let closed = 0;
  const up = await upstream((_req, res) => {
    res.socket!.once('close', () => closed++);
    res.writeHead(200, { 'content-length': 10 }).end('0123456789');
  });
  const client = new RawGetClient({
    host: '127.0.0.1',
    port: Number(up.url.port),
    hostHeader: up.url.host,
    origin: up.url.origin,
    timeoutMs: 5000,
  });
  closers.push(async () => client.close());
  const r = await client.get('/a', {});
  assert.equal(r?.head.length, 10);
  r!.cancel();
  for (let i = 0; i < 50 && closed === 0; i++) await sleep(20);
  assert.equal(closed, 1);
  assert.equal(client.idleCount, 0);
  assert.deepEqual(await (await client.get('/a', {}))!.collect(100), Buffer.from('0123456789'));
});

test('a kept-alive connection the upstream closed is replaced, and the request goes through', async () => {
  const body = randomBytes(1000);
  const up = await upstream((_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  const f = await front(up);
  assert.equal(sha256Hex((await fetchAll(new URL('/a', f.url))).body), sha256Hex(body));
  assert.equal(f.client.idleCount, 1);
  // The upstream drops its idle connections (as a registry restarting would).
  for (const s of up.sockets) s.destroy();
  await sleep(100);
  assert.equal(f.client.idleCount, 0, 'the idle connection left the pool when the upstream closed it');
  const again = await fetchAll(new URL('/a', f.url));
  assert.equal(again.status, 200);
  assert.equal(sha256Hex(again.body), sha256Hex(body));
  assert.equal(up.connections, 2);
});

test('a request that meets a connection closing under it is sent again once, on a new connection', async () => {
  const body = randomBytes(1000);
  const served = new WeakMap<object, number>();
  let dropped = 0;
  const up = await upstream((req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n === 2) {
      // The second request on a connection: closed without a byte, as an upstream closing an
      // idle connection at the moment it is reused would.
      dropped++;
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  const f = await front(up);
  for (let i = 0; i < 3; i++) {
    const r = await fetchAll(new URL('/a', f.url));
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(sha256Hex(r.body), sha256Hex(body));
  }
  assert.equal(dropped, 2);
  assert.equal(up.connections, 3);
  // A new connection that fails is not tried again: the error reaches the caller.
  const never = await upstream((req) => req.socket.destroy());
  const g = await front(never);
  const r = await fetchAll(new URL('/a', g.url));
  assert.equal(r.status, 503);
  assert.equal(never.connections, 1);
});

test('an upstream that dies mid-body cuts the response short', async () => {
  const up = await upstream((_req, res) => {
    res.writeHead(200, { 'content-length': 4 * 1024 * 1024 });
    res.write(randomBytes(100_000), () => setTimeout(() => res.socket!.destroy(), 50));
  });
  const f = await front(up);
  await assert.rejects(fetchAll(new URL('/x', f.url)), 'the client sees a broken body, not a short one');
  assert.equal(f.client.idleCount, 0);
});

test('a client that stops reading stops the upstream; one that goes away aborts it', async () => {
  const SIZE = 256 * 1024 * 1024;
  const chunk = randomBytes(1024 * 1024);
  let written = 0;
  let upstreamClosed = false;
  const up = await upstream((_req, res) => {
    res.writeHead(200, { 'content-length': SIZE });
    res.socket!.on('close', () => (upstreamClosed = true));
    const pump = () => {
      while (written < SIZE) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  const f = await front(up);
  const body: Buffer[] = [];
  let got = 0;
  const req = http.get(new URL('/big', f.url));
  const res = await new Promise<IncomingMessage>((resolve) => req.once('response', resolve));
  res.on('data', (c: Buffer) => {
    got += c.length;
    if (got >= 8 * 1024 * 1024) res.pause();
  });
  await sleep(1500);
  // Kernel socket buffers on two loopback hops plus the proxy's own few buffers: far below the body.
  assert.ok(written < 64 * 1024 * 1024, `the upstream wrote ${written >> 20} MiB to a client that read ${got >> 20} MiB`);
  const before = written;
  await sleep(300);
  assert.ok(written - before < 2 * 1024 * 1024, 'the upstream stays stopped while the client does not read');
  void body;
  req.destroy();
  for (let i = 0; i < 100 && !upstreamClosed; i++) await sleep(20);
  assert.ok(upstreamClosed, 'the upstream connection was closed when the client went away');
  assert.ok(written < SIZE);
});

test('a stopped client that reads again gets the whole body', async () => {
  const big = randomBytes(24 * 1024 * 1024);
  const up = await upstream((_req, res) => {
    res.writeHead(200, { 'content-length': big.length });
    res.end(big);
  });
  const f = await front(up);
  const req = http.get(new URL('/big', f.url));
  const res = await new Promise<IncomingMessage>((resolve) => req.once('response', resolve));
  const parts: Buffer[] = [];
  let n = 0;
  let stops = 0;
  await new Promise<void>((resolve, reject) => {
    res.on('data', (c: Buffer) => {
      parts.push(c);
      n += c.length;
      // Stop every 4 MiB for a moment, so the proxy pauses and resumes its upstream reads.
      if (Math.floor(n / (4 << 20)) > stops) {
        stops++;
        res.pause();
        setTimeout(() => res.resume(), 100);
      }
    });
    res.on('end', resolve);
    res.on('error', reject);
  });
  assert.ok(stops >= 5);
  assert.equal(sha256Hex(Buffer.concat(parts)), sha256Hex(big));
});

test('an upstream that does not answer times out; one that is not there is unavailable', async () => {
  const silent = await upstream(() => undefined);
  const client = new RawGetClient({
    host: '127.0.0.1',
    port: Number(silent.url.port),
    hostHeader: silent.url.host,
    origin: silent.url.origin,
    timeoutMs: 300,
  });
  closers.push(async () => client.close());
  const t0 = Date.now();
  await assert.rejects(client.get('/x', {}), (e: Error) => e instanceof RawGetError && /timed out/.test(e.message));
  assert.ok(Date.now() - t0 < 5000);
  const port = Number(silent.url.port);
  await new Promise<void>((resolve) => silent.server.close(() => resolve()));
  silent.server.closeAllConnections();
  const gone = new RawGetClient({
    host: '127.0.0.1',
    port,
    hostHeader: `127.0.0.1:${port}`,
    origin: `http://127.0.0.1:${port}`,
    timeoutMs: 300,
  });
  await assert.rejects(gone.get('/x', {}), (e: Error) => e instanceof RawGetError && /unavailable: .*ECONNREFUSED/.test(e.message));
});
