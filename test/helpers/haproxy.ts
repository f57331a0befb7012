// A real HAProxy (Debian `haproxy`) in front of trustgate instances, run from deploy/haproxy.cfg
// itself: only its `bind` lines (to loopback ports) and the `server` lines of the two trustgate
// backends (to the given instances) are replaced, so the tests and the example deployment share
// one configuration. A template whose sections differ from what this expects is refused.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from './ports.js';
import { makeTempDir, removeTempDir, runCommandOk, startProcess, tailFile } from './services.js';
import { until } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const HAPROXY_TEMPLATE = path.join(ROOT, 'deploy', 'haproxy.cfg');

/** One trustgate instance: its trust API and (optionally) proxy addresses, as host:port. */
export interface HaproxyBackend {
  name: string;
  api: string;
  proxy?: string;
}

export interface HaproxyOptions {
  /** Listen on these loopback ports (e.g. when instances must know the proxy's address first); default free ones. */
  ports?: { api?: number; proxy?: number; stats?: number };
  /** Wait until every server is UP (default true). */
  waitUp?: boolean;
  /** Bound of each start wait (default 30 s). */
  timeoutMs?: number;
}

export type ServerStatus = string; // UP, DOWN, MAINT, "UP 1/2", …

export interface RunningHaproxy {
  /** http://127.0.0.1:PORT of the trust API frontend. */
  apiUrl: string;
  /** 127.0.0.1:PORT of the registry proxy frontend (the registry name clients use). */
  proxyHost: string;
  statsUrl: string;
  config: string;
  logFile: string;
  /** Each backend's servers and their check status, from the stats page. */
  status(): Promise<Record<string, Record<string, ServerStatus>>>;
  /** Waits (bounded) until `backend`'s server `name` has a status starting with `want`. */
  waitStatus(backend: string, name: string, want: string, ms?: number): Promise<void>;
  stop(): Promise<void>;
}

const BACKENDS = ['trustgate_api', 'trustgate_proxy'] as const;
const SECTIONS = [
  'global',
  'resolvers dns',
  'defaults',
  'frontend trust_api',
  'frontend registry_proxy',
  'frontend stats',
  ...BACKENDS.map((b) => `backend ${b}`),
];

/** deploy/haproxy.cfg with loopback binds and these servers. */
export function renderHaproxyConfig(
  template: string,
  backends: readonly HaproxyBackend[],
  ports: { api: number; proxy: number; stats: number },
): string {
  const binds: Record<string, number> = { trust_api: ports.api, registry_proxy: ports.proxy, stats: ports.stats };
  const seen: string[] = [];
  const out: string[] = [];
  let section = '';
  const servers = (backend: string) =>
    backends.map((b) => {
      if (backend === 'trustgate_api') return `    server ${b.name} ${b.api} check`;
      if (!b.proxy) throw new Error(`backend ${b.name} has no proxy address`);
      const [host, port] = splitHostPort(b.api);
      return `    server ${b.name} ${b.proxy} check addr ${host} port ${port}`;
    });
  for (const line of template.split('\n')) {
    if (/^\S/.test(line) && !line.startsWith('#')) {
      section = line.trim().replace(/\s+/g, ' ');
      seen.push(section);
      out.push(line);
      if (section.startsWith('backend ')) out.push(...servers(section.slice('backend '.length)));
      continue;
    }
    const [kind, name] = section.split(' ');
    if (kind === 'frontend' && /^\s*bind\s/.test(line)) {
      const port = binds[name!];
      if (port === undefined) throw new Error(`${HAPROXY_TEMPLATE}: unknown frontend ${name}`);
      out.push(`    bind 127.0.0.1:${port}`);
    } else if (kind === 'backend' && /^\s*server\s/.test(line)) {
      // replaced by the servers added under the section line
    } else out.push(line);
  }
  if (seen.join('|') !== SECTIONS.join('|'))
    throw new Error(`${HAPROXY_TEMPLATE}: expected sections ${SECTIONS.join(', ')}; found ${seen.join(', ')}`);
  return out.join('\n');
}

function splitHostPort(hp: string): [string, string] {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i), hp.slice(i + 1)];
}

/** Parses HAProxy's `/stats;csv`: backend → server → status. */
function parseStatsCsv(csv: string): Record<string, Record<string, ServerStatus>> {
  const lines = csv.trim().split('\n');
  const head = lines[0]!.replace(/^# /, '').split(',');
  const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => head.indexOf(c));
  const out: Record<string, Record<string, ServerStatus>> = {};
  for (const l of lines.slice(1)) {
    const f = l.split(',');
    if (f[sv!] === 'FRONTEND' || f[sv!] === 'BACKEND') continue;
    (out[f[px!]!] ??= {})[f[sv!]!] = f[st!]!;
  }
  return out;
}

/** Starts HAProxy on loopback in front of `backends`; stop() kills it and removes its directory. */
export async function startHaproxy(backends: readonly HaproxyBackend[], opts: HaproxyOptions = {}): Promise<RunningHaproxy> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const ports = {
    api: opts.ports?.api ?? (await freePort()),
    proxy: opts.ports?.proxy ?? (await freePort()),
    stats: opts.ports?.stats ?? (await freePort()),
  };
  const config = renderHaproxyConfig(await fsp.readFile(HAPROXY_TEMPLATE, 'utf8'), backends, ports);
  const dir = await makeTempDir('haproxy');
  const cfgFile = path.join(dir, 'haproxy.cfg');
  await fsp.writeFile(cfgFile, config);
  try {
    await runCommandOk('haproxy', ['-c', '-q', '-f', cfgFile], { timeoutMs: 15_000 });
  } catch (e) {
    await removeTempDir(dir);
    throw e;
  }
  // -db: foreground, no daemon; SIGUSR1 is HAProxy's graceful stop, SIGTERM its immediate one.
  const proc = startProcess('haproxy', ['-db', '-f', cfgFile], { logFile: path.join(dir, 'haproxy.log'), stopTimeoutMs: 3000 });
  const statsUrl = `http://127.0.0.1:${ports.stats}/stats`;
  const status = async () => {
    const res = await fetch(`${statsUrl};csv`, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`haproxy stats: ${res.status}`);
    return parseStatsCsv(await res.text());
  };
  const waitStatus = async (backend: string, name: string, want: string, ms = timeoutMs) => {
    await until(`haproxy ${backend}/${name} to be ${want}`, async () => (await status())[backend]?.[name]?.startsWith(want), ms, {
      intervalMs: 100,
      check: () => proc.assertAlive(),
    });
  };
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= proc.stop().then(() => removeTempDir(dir)));
  try {
    for (const p of Object.values(ports)) await waitForPort(p, timeoutMs, { check: () => proc.assertAlive() });
    if (opts.waitUp !== false)
      for (const b of BACKENDS) for (const s of backends) if (b === 'trustgate_api' || s.proxy) await waitStatus(b, s.name, 'UP');
  } catch (e) {
    const log = tailFile(proc.logFile);
    await stop();
    throw new Error(`haproxy did not start: ${(e as Error).message}\n--- log tail ---\n${log}`);
  }
  return {
    apiUrl: `http://127.0.0.1:${ports.api}`,
    proxyHost: `127.0.0.1:${ports.proxy}`,
    statsUrl,
    config,
    logFile: proc.logFile,
    status,
    waitStatus,
    stop,
  };
}
