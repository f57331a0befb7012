// The container's HEALTHCHECK: exit 0 when trustgate's liveness endpoint (/livez) on TRUSTGATE_LISTEN
// answers 200 within 2 s, else 1. No curl in a slim image, so node asks.
import http from 'node:http';
import https from 'node:https';

const PATH = '/livez';
const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(process.env.TRUSTGATE_LISTEN ?? '127.0.0.1:4443');
// A wildcard listen address is asked on loopback.
let host = m ? (m[1] ?? m[2]) : '127.0.0.1';
if (host === '0.0.0.0') host = '127.0.0.1';
if (host === '::') host = '::1';
const tls = Boolean(process.env.TRUSTGATE_TLS_CERT);
// Over TLS the certificate is not checked: this asks the process on this host whether it is up.
const req = (tls ? https : http).get(
  { host, port: m ? Number(m[3]) : 4443, path: PATH, timeout: 2000, rejectUnauthorized: false },
  (res) => {
    res.resume();
    process.exit(res.statusCode === 200 ? 0 : 1);
  },
);
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', () => process.exit(1));
