// What the server says before and around its start: `--help`, `--version`, and each start-up
// failure as one line naming the cause and the fix (exit 2: a setting must change; 1: the
// environment is at fault). A stack trace follows only with TRUSTGATE_LOG_LEVEL=debug.
import { readFileSync } from 'node:fs';
import type { Logger } from '../observability/log.js';
import { ConfigError, StartupError } from './config.js';

export function serverVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export const SERVER_HELP = `trustgate server: a Notary v1 trust server, key management and signing API, and a
verifying registry proxy.

usage: node dist/main.js [--help | --version]     (npm start runs it)
       node dist/main.js reset-admin-token [--data-dir DIR]     (a lost admin token; see its --help)

The server takes no arguments: every setting is a TRUSTGATE_* environment variable, or a key of
the JSON file that TRUSTGATE_CONFIG names (the environment wins). The README lists them all; the
most used are:

  TRUSTGATE_LISTEN          address of the trust server and /api/v1 (default 127.0.0.1:4443)
  TRUSTGATE_DATA_DIR        SQLite store, tokens, audit log (default ./data)
  TRUSTGATE_KEYS_DIR        the encrypted keys (default ./keys)
  TRUSTGATE_KEY_PASSPHRASE  seals the keys; unset: a secret generated in the data directory
  TRUSTGATE_UPSTREAM        a registry URL: also start the verifying proxy in front of it
  TRUSTGATE_LOG_LEVEL       debug, info, warn or error (debug adds stack traces to failures)

A misspelt TRUSTGATE_* name is not refused: it is ignored, with a warning naming the closest
known one.

examples:
  npm start
  TRUSTGATE_LISTEN=0.0.0.0:4443 TRUSTGATE_TLS_CERT=cert.pem TRUSTGATE_TLS_KEY=key.pem npm start
  TRUSTGATE_UPSTREAM=http://127.0.0.1:5001 TRUSTGATE_KEY_PASSPHRASE="$(cat pass)" npm start

exit status: 0 stopped by SIGTERM or SIGINT; 2 a setting is wrong (the message names it);
1 the start failed otherwise (a port in use, a store that cannot be reached).
`;

/** Answers --help and --version; refuses any other argument. Undefined: go on and start. */
export function serverArgs(argv: readonly string[]): { out?: string; err?: string; exit: number } | undefined {
  if (argv.length === 0) return undefined;
  const a = argv[0]!;
  if (a === '--help' || a === '-h' || a === 'help') return { out: SERVER_HELP, exit: 0 };
  if (a === '--version' || a === '-V' || a === 'version') return { out: `trustgate ${serverVersion()}\n`, exit: 0 };
  return {
    err: `trustgate: unknown argument ${JSON.stringify(a)}: the server takes its settings from TRUSTGATE_* variables (see --help)\n`,
    exit: 2,
  };
}

/** A listen error (the server's or the proxy's) as the start-up error an operator acts on. */
export function listenFailure(e: NodeJS.ErrnoException, setting: string, address: string): StartupError {
  switch (e.code) {
    case 'EADDRINUSE':
      return new StartupError(
        `cannot listen on ${address}: the address is already in use (another trustgate, or another program, holds it); stop that process or set ${setting} to a free address`,
        1,
        e,
      );
    case 'EACCES':
      return new StartupError(
        `cannot listen on ${address}: permission denied (ports below 1024 need privileges); set ${setting} to a port from 1024 up`,
        1,
        e,
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new StartupError(`cannot listen on ${address}: no such address on this machine; set ${setting} to one of its addresses`, 2, e);
    default:
      return new StartupError(`cannot listen on ${address} (${setting}): ${e.message}`, 1, e);
  }
}

/** Writes the failure to stderr (stack only when `debug`) and returns the exit status. */
export function reportStartFailure(e: unknown, debug: boolean, write = (s: string) => process.stderr.write(s)): number {
  let exit = 1;
  let msg: string;
  if (e instanceof ConfigError) {
    exit = 2;
    msg = e.message;
  } else if (e instanceof StartupError) {
    exit = e.exit;
    msg = e.message;
  } else msg = `cannot start: ${(e as Error)?.message ?? String(e)}`;
  write(`trustgate: ${msg}\n`);
  if (debug) {
    const cause = e instanceof StartupError && e.cause instanceof Error ? e.cause : e;
    if (cause instanceof Error && cause.stack) write(cause.stack + '\n');
  }
  return exit;
}

/** Logs a warning when the upstream registry does not answer at all (any HTTP status is an answer). */
export async function checkUpstream(upstream: string, log: Logger, timeoutMs = 5000): Promise<void> {
  try {
    const res = await fetch(`${upstream}/v2/`, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await res.body?.cancel();
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    const why = cause?.code ?? ((e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e as Error).message);
    let origin = upstream;
    try {
      origin = new URL(upstream).origin; // no credentials in the log
    } catch {
      // keep it as configured
    }
    log('warn', 'the upstream registry does not answer: pulls and pushes through the proxy fail until it does (TRUSTGATE_UPSTREAM)', {
      upstream: origin,
      error: why,
    });
  }
}
