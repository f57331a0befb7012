// `npm run bench:restart`: the time from spawning the built server (`node dist/main.js`, what
// `npm start` runs, and `npm start` itself) to its first 200 answer, on a data directory that a
// first start has already set up (a restart). BENCH_ROUNDS runs of each (default 7); the median
// and the spread are printed. Needs `npm run build` (npm ci runs it).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/ports.js';
import { makeTempDir, removeTempDir } from '../test/helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Math.min(50, Math.max(1, Number(process.env.BENCH_ROUNDS ?? 7) || 7));
const POLL_MS = 5;
const LIMIT_MS = 60_000;

function get(url: string): Promise<number | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? null);
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    process.kill(-child.pid!, 'SIGTERM'); // the group: `npm start` runs the server as its child
  });
}

/** CPU time (user + system) a process has used so far, from /proc; undefined elsewhere. */
function cpuMs(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks of 1/100 s (USER_HZ)
  } catch {
    return undefined;
  }
}

/** Spawns `cmd` (after the previous run's server is gone: its port answers nothing) and returns the ms until /_notary_server/health first answers 200. */
async function timeStart(cmd: string, args: string[], env: NodeJS.ProcessEnv, url: string, cpu: number[] = []): Promise<number> {
  for (let i = 0; i < 100 && (await get(url)) !== null; i++) await new Promise((r) => setTimeout(r, 100));
  const t0 = performance.now();
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  try {
    for (let i = 0; i < LIMIT_MS / POLL_MS; i++) {
      if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}):\n${stderr}`);
      if ((await get(url)) === 200) {
        const ms = performance.now() - t0;
        const c = cpuMs(child.pid!);
        if (c !== undefined) cpu.push(c);
        return ms;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    throw new Error(`no 200 within ${LIMIT_MS} ms:\n${stderr}`);
  } finally {
    await stop(child);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist', 'main.js'))) throw new Error('dist/main.js is missing: run npm run build (npm ci runs it)');
  const dir = await makeTempDir('bench-restart');
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRUSTGATE_')));
  const env = {
    ...clean,
    TRUSTGATE_LISTEN: `127.0.0.1:${port}`,
    TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
    TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    TRUSTGATE_KEY_PASSPHRASE: 'bench-restart-passphrase',
    TRUSTGATE_LOG_LEVEL: 'warn',
  };
  const url = `http://127.0.0.1:${port}/_notary_server/health`;
  try {
    const first = await timeStart(process.execPath, ['dist/main.js'], env, url);
    console.log(`first start (empty data directory): ${first.toFixed(0)} ms`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const series: Array<[string, string, string[]]> = [
      ['node dist/main.js', process.execPath, ['dist/main.js']],
      ['npm start', npm, ['start', '--silent']],
    ];
    console.log(`${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}, ${ROUNDS} restarts each`);
    for (const [name, cmd, args] of series) {
      const runs: number[] = [];
      const cpu: number[] = [];
      for (let i = 0; i < ROUNDS; i++) runs.push(await timeStart(cmd, args, env, url, cpu));
      console.log(
        `${name.padEnd(18)} median ${median(runs).toFixed(0)} ms  min ${Math.min(...runs).toFixed(0)}  max ${Math.max(...runs).toFixed(0)}  (${runs.map((r) => r.toFixed(0)).join(', ')})`,
      );
      // npm's own CPU is in the process spawned; the server's is its child's, not counted here.
      if (cmd === process.execPath && cpu.length)
        console.log(`${''.padEnd(18)} server CPU to first answer: median ${median(cpu).toFixed(0)} ms`);
    }
  } finally {
    await removeTempDir(dir);
  }
}

await main();
