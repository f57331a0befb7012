// A query parameter given twice (`from=a&from=b`) is refused rather than read by one of its
// values: another reader (the upstream registry, a proxy in front) may take the other one.

/** The name of the first parameter the request target's query holds more than once, if any. */
export function repeatedParam(target: string, allowed: readonly string[] = []): string | undefined {
  const q = target.indexOf('?');
  if (q < 0) return undefined;
  const seen = new Set<string>();
  for (const name of new URLSearchParams(target.slice(q + 1).split('#', 1)[0]).keys()) {
    if (seen.has(name) && !allowed.includes(name)) return name;
    seen.add(name);
  }
  return undefined;
}

/** The message every API answers a repeated parameter with (400). */
export const repeatedParamMessage = (name: string) => `query parameter ${JSON.stringify(name.slice(0, 40))} is given more than once`;
