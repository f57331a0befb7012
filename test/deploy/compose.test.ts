// The example deployment's files stay true: HAProxy accepts deploy/haproxy.cfg as it is, and
// every trustgate service of deploy/compose.yaml has settings that trustgate itself accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/config.js';
import { HAPROXY_TEMPLATE } from '../helpers/haproxy.js';
import { runCommand } from '../helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Service {
  image?: string;
  build?: { dockerfile?: string };
  environment?: Record<string, string>;
  depends_on?: Record<string, unknown> | string[];
}

test('deploy/haproxy.cfg passes `haproxy -c`', async () => {
  const r = await runCommand('haproxy', ['-c', '-f', HAPROXY_TEMPLATE], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('deploy/compose.yaml: several trustgate instances with valid, shared settings behind HAProxy', async () => {
  const compose = parse(await fsp.readFile(path.join(ROOT, 'deploy', 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
  };
  const names = Object.keys(compose.services);
  const instances = names.filter((n) => /^trustgate-\d+$/.test(n));
  assert.ok(instances.length >= 2, `instances: ${instances.join(', ')}`);
  for (const s of ['haproxy', 'postgres', 'redis', 'registry']) assert.ok(names.includes(s), `no ${s} service`);
  assert.match(compose.services.registry!.image!, /registry:2$/);
  // compose's ${VAR:?message} and ${VAR:-default} forms, with test values.
  const expand = (v: string) => v.replace(/\$\{(\w+)(?::[?-][^}]*)?\}/g, (_m, k: string) => `test-${k.toLowerCase()}`);
  const known = (await Promise.all(['config.ts', 'proxy.ts'].map((f) => fsp.readFile(path.join(ROOT, 'src', 'config', f), 'utf8')))).join(
    '\n',
  );
  const shared = new Set<string>();
  for (const n of instances) {
    const svc = compose.services[n]!;
    assert.equal(svc.build?.dockerfile, 'Containerfile');
    const env = Object.fromEntries(Object.entries(svc.environment ?? {}).map(([k, v]) => [k, expand(String(v))]));
    for (const k of Object.keys(env)) assert.ok(known.includes(`'${k}'`), `${n}: trustgate reads no ${k}`);
    const config = loadConfig(env); // throws ConfigError naming any bad or unknown-shaped value
    assert.ok(config.databaseUrl?.includes('@postgres:'), 'the store is the shared PostgreSQL');
    assert.equal(config.keystore, 'keyv');
    assert.equal(config.proxy?.upstream, 'http://registry:5000');
    assert.equal(config.proxy?.cacheUrl, 'redis://redis:6379');
    shared.add(JSON.stringify(env));
  }
  assert.equal(shared.size, 1, 'every instance has the same settings');
  // HAProxy sends to each instance by its service name.
  const cfg = await fsp.readFile(HAPROXY_TEMPLATE, 'utf8');
  for (const n of instances) {
    assert.match(cfg, new RegExp(`^\\s+server \\S+ ${n}:4443 check`, 'm'));
    assert.match(cfg, new RegExp(`^\\s+server \\S+ ${n}:5000 check port 4443`, 'm'));
  }
});
