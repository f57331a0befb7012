// Throwaway test PKI made with the openssl CLI: a CA, a server cert for
// 127.0.0.1/localhost and a client cert (for mTLS tests), all EC P-256.
// Go clients (notary, skopeo, docker-registry) ignore the CN, so the server
// cert carries subjectAltName IP + DNS entries.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, removeTempDir, runCommandOk } from './services.js';

export interface TestCerts {
  dir: string;
  /** CA certificate (PEM) to trust. */
  caCert: string;
  caKey: string;
  /** Server certificate (PEM, leaf only) and its PKCS#8 key. */
  cert: string;
  key: string;
  /** Server leaf + CA concatenated, for servers that want a chain file. */
  chain: string;
  /** Client certificate/key signed by the same CA (extendedKeyUsage=clientAuth). */
  clientCert: string;
  clientKey: string;
  cleanup(): Promise<void>;
}

export interface TestCertOptions {
  /** Extra DNS SANs for the server cert (localhost is always included). */
  dnsNames?: string[];
  /** Extra IP SANs for the server cert (127.0.0.1 is always included). */
  ips?: string[];
  days?: number;
  /** Write into this directory instead of a fresh temp dir. */
  dir?: string;
}

const OPENSSL_TIMEOUT = 30_000;
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function issue(
  dir: string,
  name: string,
  subject: string,
  ext: string,
  ca: { cert: string; key: string },
  days: number,
): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const extFile = path.join(dir, `${name}.ext`);
  await fsp.writeFile(extFile, ext);
  await runCommandOk('openssl', ['req', '-new', ...EC, '-keyout', key, '-out', csr, '-subj', subject], { timeoutMs: OPENSSL_TIMEOUT });
  await runCommandOk(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-CAcreateserial',
      '-out',
      cert,
      '-days',
      String(days),
      '-sha256',
      '-extfile',
      extFile,
    ],
    { timeoutMs: OPENSSL_TIMEOUT },
  );
  return { cert, key };
}

/** Create a CA + server cert (SAN IP:127.0.0.1, DNS:localhost) + client cert. */
export async function makeTestCerts(opts: TestCertOptions = {}): Promise<TestCerts> {
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await makeTempDir('tls'));
  const days = opts.days ?? 7;
  try {
    const caKey = path.join(dir, 'ca.key');
    const caCert = path.join(dir, 'ca.crt');
    await runCommandOk(
      'openssl',
      [
        'req',
        '-x509',
        '-new',
        ...EC,
        '-keyout',
        caKey,
        '-out',
        caCert,
        '-days',
        String(days),
        '-sha256',
        '-subj',
        '/CN=trustgate test CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-addext',
        'subjectKeyIdentifier=hash',
      ],
      { timeoutMs: OPENSSL_TIMEOUT },
    );
    const ca = { cert: caCert, key: caKey };
    const sans = [
      ...['127.0.0.1', ...(opts.ips ?? [])].map((ip) => `IP:${ip}`),
      ...['localhost', ...(opts.dnsNames ?? [])].map((d) => `DNS:${d}`),
    ].join(',');
    const server = await issue(
      dir,
      'server',
      '/CN=localhost',
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth',
        `subjectAltName=${sans}`,
        'authorityKeyIdentifier=keyid',
        '',
      ].join('\n'),
      ca,
      days,
    );
    const client = await issue(
      dir,
      'client',
      '/CN=trustgate-test-client',
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=clientAuth',
        'authorityKeyIdentifier=keyid',
        '',
      ].join('\n'),
      ca,
      days,
    );
    const chain = path.join(dir, 'server-chain.crt');
    await fsp.writeFile(chain, Buffer.concat([await fsp.readFile(server.cert), await fsp.readFile(caCert)]));
    return {
      dir,
      caCert,
      caKey,
      cert: server.cert,
      key: server.key,
      chain,
      clientCert: client.cert,
      clientKey: client.key,
      cleanup: () => (ownDir ? removeTempDir(dir) : Promise.resolve()),
    };
  } catch (e) {
    if (ownDir) await removeTempDir(dir);
    throw e;
  }
}
