#!/usr/bin/env node
// `trustgate`: the command line for CI jobs and release tooling. It talks to a trustgate server's
// REST API (URL and token from --url/--token or TRUSTGATE_URL/TRUSTGATE_TOKEN) and exits with
// codes CI can rely on: 0 done, 3 denied or not signed, 1 any other error, 2 bad usage. Errors
// are one line on stderr; results go to stdout (`--json` for machines).
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, UsageError, type OptionSpec } from './args.js';
import { ApiClient, CliError, EXIT } from './client.js';
import { adminCommands } from './admin.js';
import { signCommands } from './sign.js';
import type { Command, Context } from './command.js';
import { wrap } from './format.js';
import { serverVersion } from '../config/startup.js';

const GLOBAL: Record<string, OptionSpec> = {
  url: { value: true },
  token: { value: true },
  'token-file': { value: true },
  json: {},
  quiet: { short: 'q' },
  help: { short: 'h' },
  version: { short: 'V' },
};

const COMMANDS: Command[] = [...signCommands, ...adminCommands];

const WIDTH = 100;
const GLOBAL_NOTE =
  'Global options: --url URL and --token TOKEN (or --token-file FILE), else TRUSTGATE_URL and TRUSTGATE_TOKEN; ' +
  '--json prints the API answer; -q silences progress. Exit codes: 0 ok, 3 denied or not signed, 1 error, 2 usage.';

const RESET_NOTE =
  'a lost admin token is reset on the server, with access to its store: npm run reset-admin-token -- --data-dir DIR ' +
  '(docs/operations.md)';

function help(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length)) + 4;
  return [
    'trustgate: sign, verify and manage image trust on a trustgate server',
    '',
    'usage: trustgate [--url URL] [--token TOKEN] [--json] [-q] <command> [args]',
    '       trustgate help <command>      (or: trustgate <command> --help)',
    '       trustgate --version',
    '',
    'commands:',
    ...COMMANDS.map((c) => wrap(c.summary, WIDTH, `  ${c.name.padEnd(w - 2)}`)),
    '',
    wrap(GLOBAL_NOTE, WIDTH),
    '',
    wrap(`Not here: ${RESET_NOTE}.`, WIDTH),
    '',
    'examples:',
    '  export TRUSTGATE_URL=https://trustgate.example.com:4443 TRUSTGATE_TOKEN=$(cat admin-token)',
    '  trustgate repo init trustgate.example.com:5000/team/app',
    '  trustgate help sign',
    '',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [
    wrap(c.usage, WIDTH, 'usage: trustgate ', 17),
    '',
    wrap(`${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.`, WIDTH),
    ...(c.details ? ['', wrap(c.details, WIDTH)] : []),
    ...(c.examples?.length ? ['', 'examples:', ...c.examples.map((e) => wrap(e, WIDTH, '  ', 4))] : []),
    '',
    wrap(GLOBAL_NOTE, WIDTH),
    '',
  ].join('\n');
}

/** Commands whose name starts with `group ` (`key` → key list, key rotate, ...). */
const groupOf = (group: string) => COMMANDS.filter((c) => c.name.startsWith(`${group} `));

function groupHelp(group: string): string {
  return [
    `usage: trustgate ${group} <command> [args]`,
    '',
    'commands:',
    ...groupOf(group).flatMap((c) => [wrap(c.usage, WIDTH, '  trustgate ', 6), wrap(c.summary, WIDTH, '      ')]),
    '',
    `Run trustgate help ${group} <command> (or trustgate ${group} <command> --help) for its options and examples.`,
    '',
  ].join('\n');
}

/** The help `words` ask for: a command's, a group's, or the overview; undefined when they name nothing. */
function helpFor(words: string[]): string | undefined {
  if (words.length === 0) return help();
  const name = words.join(' ');
  const cmd = COMMANDS.find((c) => c.name === name) ?? findCommand(words)?.cmd;
  if (cmd) return commandHelp(cmd);
  if (groupOf(words[0]!).length) return groupHelp(words[0]!);
  return undefined;
}

/** Finds the longest command name the arguments start with (`key list` before `key`). */
function findCommand(argv: string[]): { cmd: Command; rest: string[] } | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  let best: Command | undefined;
  for (const c of COMMANDS) {
    const parts = c.name.split(' ');
    if (parts.every((p, i) => words[i] === p) && (!best || parts.length > best.name.split(' ').length)) best = c;
  }
  if (!best) return undefined;
  // Remove the command words (in order) from argv, keeping options where they were.
  const rest = [...argv];
  for (const p of best.name.split(' ')) rest.splice(rest.indexOf(p), 1);
  return { cmd: best, rest };
}

export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io = { out: (s: string) => process.stdout.write(s), err: (s: string) => process.stderr.write(s) },
): Promise<number> {
  // Global options may come before the command; split them off first.
  const globals: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2).split('=')[0]! : a.slice(1);
    const spec = (Object.hasOwn(GLOBAL, name) ? GLOBAL[name] : undefined) ?? Object.values(GLOBAL).find((s) => s.short === name);
    if (!spec) break;
    globals.push(a);
    if (spec.value && !a.includes('=')) globals.push(argv[++i] ?? '');
    i++;
  }
  const tail = argv.slice(i);
  // --help and --version anywhere before `--` (every command and group answers them).
  const opts = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length);
  const words = tail.filter((a) => !a.startsWith('-'));
  try {
    if (opts.includes('--version') || opts.includes('-V')) {
      io.out(`trustgate ${serverVersion()}\n`);
      return EXIT.OK;
    }
    if (tail[0] === 'help' || opts.includes('--help') || opts.includes('-h')) {
      const text = helpFor(tail[0] === 'help' ? words.slice(1) : words);
      if (!text)
        throw new UsageError(`unknown command ${JSON.stringify(words.slice(tail[0] === 'help' ? 1 : 0).join(' '))} (see trustgate --help)`);
      io.out(text);
      return EXIT.OK;
    }
    const found = findCommand(tail);
    const g = parseArgs(globals, GLOBAL);
    if (!found) {
      if (tail.length === 0) throw new UsageError('no command given (see trustgate --help)');
      if (words[0] && groupOf(words[0]).length) {
        io.err(groupHelp(words[0]));
        throw new UsageError(
          words.length > 1
            ? `unknown command ${JSON.stringify(words.slice(0, 2).join(' '))}`
            : `${words[0]} needs a command (listed above)`,
        );
      }
      // Resetting the admin token needs the server's store, which this client never opens.
      if (/^(admin|reset-admin-token)$/.test(words[0] ?? ''))
        throw new UsageError(`unknown command ${JSON.stringify(words.slice(0, 2).join(' '))}: ${RESET_NOTE}`);
      throw new UsageError(`unknown command ${JSON.stringify(words.slice(0, 2).join(' '))} (see trustgate --help)`);
    }
    const { cmd, rest } = found;
    const p = parseArgs(rest, { ...GLOBAL, ...cmd.options });
    for (const [k, v] of g.options) if (!p.options.has(k)) p.options.set(k, v);
    for (const f of g.flags) p.flags.add(f);
    const json = p.flags.has('json');
    const quiet = p.flags.has('quiet');
    let client: ApiClient | undefined;
    const ctx: Context = {
      env,
      json,
      quiet,
      out: io.out,
      err: io.err,
      progress: (t) => {
        if (!quiet && !json) io.err(t.endsWith('\n') ? t : t + '\n');
      },
      api: () => {
        if (client) return client;
        const url = p.options.get('url')?.[0] ?? env.TRUSTGATE_URL;
        if (!url) throw new UsageError('no server: give --url or set TRUSTGATE_URL');
        const tokenFile = p.options.get('token-file')?.[0];
        let token = p.options.get('token')?.[0] ?? env.TRUSTGATE_TOKEN;
        if (tokenFile) {
          try {
            token = readFileSync(tokenFile, 'utf8').trim();
          } catch (e) {
            throw new CliError(`cannot read --token-file ${tokenFile}: ${(e as Error).message}`);
          }
        }
        client = new ApiClient(url, token);
        return client;
      },
    };
    return await cmd.run(ctx, p);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`trustgate: ${e.message}\n`);
      return EXIT.USAGE;
    }
    if (e instanceof CliError) {
      io.err(`trustgate: ${e.message.split('\n')[0]}\n`);
      return e.exitCode;
    }
    io.err(`trustgate: ${(e as Error).message?.split('\n')[0] ?? String(e)}\n`);
    return EXIT.ERROR;
  }
}

// Run when executed (not when imported by tests).
function invokedDirectly(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`trustgate: ${e.message}\n`);
      process.exitCode = EXIT.ERROR;
    },
  );
}
