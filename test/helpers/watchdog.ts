// Loaded into every test process by test/run.sh: when a test file runs longer than
// TRUSTGATE_TEST_WATCHDOG_MS (default 240 s, below the runner's 300 s file timeout), it prints
// the running test and the open handles to stderr, so a hang in CI names its test and peers.
import { afterEach, beforeEach } from 'node:test';

const running: string[] = [];
beforeEach((t) => void running.push(t.name));
afterEach(() => void running.pop());

interface UvHandle {
  type: string;
  localEndpoint?: { host: string; port: number };
  remoteEndpoint?: { host: string; port: number };
  pid?: number;
}

function handles(): string {
  const report = process.report.getReport() as unknown as { libuv?: UvHandle[] };
  const end = (e?: { host: string; port: number }) => (e ? `${e.host}:${e.port}` : '');
  return (report.libuv ?? [])
    .filter((h) => ['tcp', 'process', 'timer', 'pipe'].includes(h.type))
    .map((h) => (h.type === 'tcp' ? `tcp ${end(h.localEndpoint)}->${end(h.remoteEndpoint)}` : h.pid ? `${h.type} pid ${h.pid}` : h.type))
    .join(', ');
}

const ms = Number(process.env.TRUSTGATE_TEST_WATCHDOG_MS ?? 240_000);
setTimeout(() => {
  process.stderr.write(
    `watchdog: ${process.argv[1]} still running after ${ms} ms; in test: ${running.join(' > ') || '(a hook)'}\n` +
      `watchdog: resources: ${process.getActiveResourcesInfo().join(', ')}\nwatchdog: handles: ${handles()}\n`,
  );
}, ms).unref();
