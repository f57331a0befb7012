// Runs the real `trustgate` CLI as a child process: the built binary (dist/cli/main.js) when
// TRUSTGATE_CLI=dist, else the TypeScript entry point through tsx, exactly as `npm run build`
// would ship it (same file, same shebang entry).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runCommand, type RunResult } from '../helpers/services.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

export function cliCommand(): { cmd: string; args: string[] } {
  if (process.env.TRUSTGATE_CLI === 'dist') {
    const bin = `${root}dist/cli/main.js`;
    if (!existsSync(bin)) throw new Error('TRUSTGATE_CLI=dist but dist/cli/main.js is missing: run npm run build');
    return { cmd: process.execPath, args: [bin] };
  }
  // tsx by absolute URL, so the CLI runs from any working directory (as a CI step does).
  return { cmd: process.execPath, args: ['--import', import.meta.resolve('tsx'), `${root}src/cli/main.ts`] };
}

export interface Cli {
  run(args: string[], opts?: { env?: Record<string, string | undefined>; input?: string; timeoutMs?: number }): Promise<RunResult>;
}

/** A CLI bound to a server URL and token (through TRUSTGATE_URL / TRUSTGATE_TOKEN). */
export function cli(url: string | undefined, token: string | undefined): Cli {
  const { cmd, args } = cliCommand();
  return {
    run: (a, o = {}) => {
      const env: NodeJS.ProcessEnv = { ...process.env, TRUSTGATE_URL: url, TRUSTGATE_TOKEN: token, ...o.env };
      for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
      return runCommand(cmd, [...args, ...a], {
        cwd: root,
        env,
        ...(o.input !== undefined ? { input: o.input } : {}),
        timeoutMs: o.timeoutMs ?? 120_000,
      });
    },
  };
}

/** stderr as lines (without the trailing empty one). */
export const lines = (s: string) => s.split('\n').filter((l) => l.length > 0);
