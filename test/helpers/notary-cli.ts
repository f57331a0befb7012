// Drive the reference Notary v1 client (/usr/bin/notary) non-interactively.
// Passphrases come from NOTARY_*_PASSPHRASE env vars, stdin is /dev/null unless
// input is given (so an unexpected prompt fails fast instead of hanging), and
// HOME points into the trust dir so no ~/.notary/config.json leaks in.
import fsp from 'node:fs/promises';
import { makeTempDir, removeTempDir, runCommand, type RunResult } from './services.js';

export const NOTARY_TEST_PASSPHRASE = 'trustgate-test-passphrase';

export interface NotaryCliOptions {
  /** Server URL, http://127.0.0.1:PORT or https://... */
  server: string;
  /** Trust dir (-d). Default: a fresh temp dir, removed by cleanup(). */
  trustDir?: string;
  /** CA cert for https servers (--tlscacert). Not needed for http. */
  tlsCaCert?: string;
  /** Client cert/key for mTLS (--tlscert/--tlskey). */
  tlsCert?: string;
  tlsKey?: string;
  /** Passphrase for all key roles (default NOTARY_TEST_PASSPHRASE). */
  passphrase?: string;
  /** A trustgate token, sent as NOTARY_AUTH (notaryAuth()); `env` may override it. */
  token?: string;
  /** Extra env vars (e.g. NOTARY_AUTH=base64(user:pass) for token/basic auth servers). */
  env?: NodeJS.ProcessEnv;
  /** Per-command timeout (default 60s). */
  timeoutMs?: number;
}

export interface NotaryRunOptions {
  /** Fed to stdin (then closed). */
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export type NotaryResult = Pick<RunResult, 'code' | 'stdout' | 'stderr' | 'timedOut'>;

export interface NotaryCli {
  trustDir: string;
  server: string;
  /** Run `notary -s <server> -d <trustDir> [tls flags] ...args`; never throws on non-zero exit. */
  run(args: readonly string[], opts?: NotaryRunOptions): Promise<NotaryResult>;
  /** Like run() but throws with stdout/stderr on non-zero exit. */
  runOk(args: readonly string[], opts?: NotaryRunOptions): Promise<NotaryResult>;
  /** Remove the trust dir if it was created by notaryCli(). */
  cleanup(): Promise<void>;
}

/** NOTARY_AUTH for a trustgate token: base64 of `<any user>:<token>`. */
export const notaryAuth = (token: string, user = 'trustgate') => Buffer.from(`${user}:${token}`).toString('base64');

export async function notaryCli(opts: NotaryCliOptions): Promise<NotaryCli> {
  const ownDir = !opts.trustDir;
  const trustDir = opts.trustDir ?? (await makeTempDir('notary-trust'));
  await fsp.mkdir(trustDir, { recursive: true });
  const pass = opts.passphrase ?? NOTARY_TEST_PASSPHRASE;
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: trustDir,
    NOTARY_ROOT_PASSPHRASE: pass,
    NOTARY_TARGETS_PASSPHRASE: pass,
    NOTARY_SNAPSHOT_PASSPHRASE: pass,
    NOTARY_DELEGATION_PASSPHRASE: pass,
    ...(opts.token ? { NOTARY_AUTH: notaryAuth(opts.token) } : {}),
    ...opts.env,
  };
  const globalArgs = [
    '-s',
    opts.server,
    '-d',
    trustDir,
    ...(opts.tlsCaCert ? ['--tlscacert', opts.tlsCaCert] : []),
    ...(opts.tlsCert ? ['--tlscert', opts.tlsCert] : []),
    ...(opts.tlsKey ? ['--tlskey', opts.tlsKey] : []),
  ];

  const run = async (args: readonly string[], o: NotaryRunOptions = {}): Promise<NotaryResult> => {
    const r = await runCommand('notary', [...globalArgs, ...args], {
      env: { ...baseEnv, ...o.env },
      input: o.input,
      timeoutMs: o.timeoutMs ?? opts.timeoutMs ?? 60_000,
    });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
  };

  const runOk = async (args: readonly string[], o: NotaryRunOptions = {}): Promise<NotaryResult> => {
    const r = await run(args, o);
    if (r.code !== 0) {
      throw new Error(
        `notary ${args.join(' ')} failed (code=${r.code}${r.timedOut ? ', timed out' : ''})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
      );
    }
    return r;
  };

  return {
    trustDir,
    server: opts.server,
    run,
    runOk,
    cleanup: () => (ownDir ? removeTempDir(trustDir) : Promise.resolve()),
  };
}

export interface NotaryTarget {
  name: string;
  /** hex sha256 */
  digest: string;
  size: number;
  role: string;
}

/** Parse the table printed by `notary list <gun>`. */
export function parseNotaryList(stdout: string): NotaryTarget[] {
  const out: NotaryTarget[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^(\S+)\s+([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line.trim());
    if (m) out.push({ name: m[1]!, digest: m[2]!, size: Number(m[3]), role: m[4]! });
  }
  return out;
}
