// A small command-line parser: positionals, `--flag value` / `--flag=value`, boolean switches
// and repeatable options, checked against what each command declares. Anything unknown or
// missing is a UsageError (exit code 2).

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface OptionSpec {
  /** Takes a value (otherwise a boolean switch). */
  value?: boolean;
  /** May be given more than once (values collected in order). */
  repeat?: boolean;
  short?: string;
}

export interface Parsed {
  positionals: string[];
  options: Map<string, string[]>;
  flags: Set<string>;
}

export function parseArgs(argv: readonly string[], spec: Record<string, OptionSpec>): Parsed {
  const positionals: string[] = [];
  const options = new Map<string, string[]>();
  const flags = new Set<string>();
  const byShort = new Map(
    Object.entries(spec)
      .filter(([, s]) => s.short)
      .map(([k, s]) => [s.short!, k]),
  );
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    } else if (/^-[A-Za-z]$/.test(a)) {
      name = byShort.get(a.slice(1));
      if (!name) throw new UsageError(`unknown option ${a}`);
    } else {
      positionals.push(a);
      continue;
    }
    // Own entries only: `--constructor` must be an unknown option, not Object.prototype's member.
    const s = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!s) throw new UsageError(`unknown option --${name}`);
    if (!s.value) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      flags.add(name);
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`--${name} needs a value`);
    const list = options.get(name) ?? [];
    if (list.length > 0 && !s.repeat) throw new UsageError(`--${name} may be given only once`);
    list.push(v);
    options.set(name, list);
  }
  return { positionals, options, flags };
}

export const opt = (p: Parsed, name: string): string | undefined => p.options.get(name)?.[0];
export const opts = (p: Parsed, name: string): string[] => p.options.get(name) ?? [];

export function needPositionals(p: Parsed, names: string[], usage: string): string[] {
  if (p.positionals.length < names.length) throw new UsageError(`missing ${names.slice(p.positionals.length).join(' ')}\nusage: ${usage}`);
  if (p.positionals.length > names.length)
    throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[names.length])}\nusage: ${usage}`);
  return p.positionals;
}

export function intOpt(p: Parsed, name: string, min = 1): number | undefined {
  const v = opt(p, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v)))
    throw new UsageError(`--${name} must be a whole number of at least ${min}`);
  return Number(v);
}
