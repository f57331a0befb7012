// A CLI command and what it runs with: admin.ts and sign.ts define commands, main.ts runs them.
import type { OptionSpec, Parsed } from './args.js';
import type { ApiClient } from './client.js';

export interface Context {
  api(): ApiClient;
  json: boolean;
  quiet: boolean;
  out(text: string): void;
  err(text: string): void;
  /** Progress for long work (stderr; silent with --quiet or --json). */
  progress(text: string): void;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** e.g. `sign`, `key list`. */
  name: string;
  usage: string;
  summary: string;
  /** More about what it does and its options, for `--help` (wrapped at 100 columns). */
  details?: string;
  /** Command lines shown under `examples:` in `--help`. */
  examples?: string[];
  options: Record<string, OptionSpec>;
  run(ctx: Context, args: Parsed): Promise<number>;
}
