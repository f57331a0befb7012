// Small things many tests need: hashes, fresh GUNs, and a bounded wait.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

/** Hex sha256 of the bytes (or UTF-8 text). */
export const sha256Hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** An OCI digest (`sha256:<hex>`) of the bytes (or UTF-8 text). */
export const digestOf = (b: Buffer | string): string => `sha256:${sha256Hex(b)}`;

/** Makes fresh GUNs under `registry.example.com:5000/<prefix>/`, unique per process, so tests on one server do not see each other. */
export function gunNamer(prefix: string, fallback: string): (name?: string) => string {
  let n = 0;
  return (name = fallback) => `registry.example.com:5000/${prefix}/${name}-${process.pid}-${++n}`;
}

/**
 * Polls `ok` every `intervalMs` until it returns something truthy, and returns that; throws
 * after `ms`. `check` runs before each poll (e.g. to fail early when a process died).
 */
export async function until<T>(
  what: string,
  ok: () => T | Promise<T>,
  ms: number,
  opts: { intervalMs?: number; check?: () => void } = {},
): Promise<NonNullable<T>> {
  const interval = opts.intervalMs ?? 100;
  const deadline = Date.now() + ms;
  for (let i = 0; i <= Math.ceil(ms / interval); i++) {
    opts.check?.();
    const v = await ok();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) break;
    await sleep(interval);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
