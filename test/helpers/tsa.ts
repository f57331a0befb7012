// A real RFC 3161 time-stamp authority for tests: a CA and a TSA certificate (EC P-256,
// extendedKeyUsage critical timeStamping) made with the openssl CLI, and a small HTTP front on
// 127.0.0.1 that hands each application/timestamp-query to `openssl ts -reply` and returns its
// reply. `mode` makes it misbehave: an HTTP error, bytes that are no reply, a genuine reply over
// another message imprint or nonce, a refusal (a SHA-1 imprint, which it does not accept), or no
// answer at all.
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { TimeStampReq } from '@peculiar/asn1-tsp';
import { makeTempDir, removeTempDir, runCommand, runCommandOk } from './services.js';

export type TsaMode = 'ok' | 'http-500' | 'garbage' | 'other-imprint' | 'other-nonce' | 'sha1' | 'hang';

export interface TestTsa {
  url: string;
  /** PEM of the TSA certificate and its CA (TRUSTGATE_TSA_CA). */
  chainFile: string;
  chainPem: string;
  /** PEM of another CA and a TSA certificate it issued, which did not sign this TSA's tokens. */
  otherChainPem: string;
  mode: TsaMode;
  /** Queries received (all modes). */
  requests: number;
  stop(): Promise<void>;
}

const T = { timeoutMs: 30_000 };
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A CA and a TSA certificate issued by it, in `dir` with file names prefixed by `name`. */
async function pki(dir: string, name: string): Promise<{ ca: string; tsaCert: string; tsaKey: string }> {
  const f = (s: string) => path.join(dir, `${name}-${s}`);
  await runCommandOk(
    'openssl',
    ['req', '-x509', ...EC, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '30', '-subj', `/O=trustgate tests/CN=${name} TSA root`]
      .concat(['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
      .concat(['-addext', 'subjectKeyIdentifier=hash']),
    T,
  );
  await runCommandOk(
    'openssl',
    ['req', '-new', ...EC, '-keyout', f('tsa.key'), '-out', f('tsa.csr'), '-subj', `/O=trustgate tests/CN=${name} TSA`],
    T,
  );
  await fsp.writeFile(
    f('tsa.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=critical,timeStamping',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  await runCommandOk(
    'openssl',
    ['x509', '-req', '-in', f('tsa.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '30'].concat([
      '-sha256',
      '-extfile',
      f('tsa.ext'),
      '-out',
      f('tsa.crt'),
    ]),
    T,
  );
  return { ca: f('ca.crt'), tsaCert: f('tsa.crt'), tsaKey: f('tsa.key') };
}

export async function startTsa(): Promise<TestTsa> {
  const dir = await makeTempDir('tsa');
  const own = await pki(dir, 'own');
  const other = await pki(dir, 'other');
  await fsp.writeFile(path.join(dir, 'serial'), '01\n');
  const config = path.join(dir, 'tsa.cnf');
  await fsp.writeFile(
    config,
    [
      '[ tsa ]',
      'default_tsa = tsa_config',
      '[ tsa_config ]',
      `serial = ${path.join(dir, 'serial')}`,
      'crypto_device = builtin',
      `signer_cert = ${own.tsaCert}`,
      `certs = ${own.ca}`,
      `signer_key = ${own.tsaKey}`,
      'signer_digest = sha256',
      'default_policy = 1.3.6.1.4.1.55738.1.1',
      'digests = sha256, sha384, sha512',
      'accuracy = secs:1',
      'ordering = no',
      'tsa_name = yes',
      'ess_cert_id_chain = no',
      'ess_cert_id_alg = sha256',
      '',
    ].join('\n'),
  );
  const read = (p: string) => fsp.readFile(p, 'utf8');
  const chainPem = (await read(own.tsaCert)) + (await read(own.ca));
  const otherChainPem = (await read(other.tsaCert)) + (await read(other.ca));
  const chainFile = path.join(dir, 'chain.pem');
  await fsp.writeFile(chainFile, chainPem);

  // One `openssl ts -reply` at a time: they share the serial file.
  let queue: Promise<unknown> = Promise.resolve();
  let n = 0;
  const reply = (query: Buffer): Promise<Buffer> => {
    const run = queue.then(async () => {
      const q = path.join(dir, `q${++n}.tsq`);
      const r = path.join(dir, `r${n}.tsr`);
      await fsp.writeFile(q, query);
      const res = await runCommand('openssl', ['ts', '-reply', '-config', config, '-queryfile', q, '-out', r], T);
      if (res.code !== 0) throw new Error(`openssl ts -reply failed: ${res.stderr}`);
      return fsp.readFile(r);
    });
    queue = run.catch(() => undefined);
    return run;
  };

  const hung = new Set<http.ServerResponse>();
  const tsa: TestTsa = {
    url: '',
    chainFile,
    chainPem,
    otherChainPem,
    mode: 'ok',
    requests: 0,
    stop: async () => {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await removeTempDir(dir);
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      tsa.requests++;
      let query = Buffer.concat(chunks);
      const send = (status: number, type: string, body: Buffer) => {
        res.writeHead(status, { 'content-type': type, 'content-length': body.length });
        res.end(body);
      };
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/timestamp-query')
        return send(415, 'text/plain', Buffer.from('expected a POST of application/timestamp-query'));
      switch (tsa.mode) {
        case 'hang':
          hung.add(res);
          return;
        case 'http-500':
          return send(500, 'text/plain', Buffer.from('the TSA is broken'));
        case 'garbage':
          return send(200, 'application/timestamp-reply', Buffer.from('this is not a time-stamp reply, just bytes'));
        case 'other-imprint': {
          // A genuine, signed reply with the request's nonce, over another message.
          const q = AsnConvert.parse(query, TimeStampReq);
          q.messageImprint.hashedMessage = new OctetString(createHash('sha256').update('another message').digest());
          query = Buffer.from(AsnConvert.serialize(q));
          break;
        }
        case 'other-nonce': {
          const q = AsnConvert.parse(query, TimeStampReq);
          q.nonce = new Uint8Array([0x12, 0x34, 0x56, 0x78]).buffer;
          query = Buffer.from(AsnConvert.serialize(q));
          break;
        }
        case 'sha1': {
          const q = AsnConvert.parse(query, TimeStampReq);
          q.messageImprint.hashAlgorithm.algorithm = '1.3.14.3.2.26';
          q.messageImprint.hashedMessage = new OctetString(createHash('sha1').update('sig').digest());
          query = Buffer.from(AsnConvert.serialize(q));
          break;
        }
        case 'ok':
          break;
      }
      reply(query).then(
        (body) => send(200, 'application/timestamp-reply', body),
        (e: Error) => send(500, 'text/plain', Buffer.from(e.message)),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  tsa.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tsr`;
  return tsa;
}
