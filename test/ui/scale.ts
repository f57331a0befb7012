// Many repositories and one with many tags, made through the management and signing APIs, for the
// scale test and the screenshot script; and the time the Repositories page takes to show.
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { callOk } from './browser.js';
import { sha256Hex } from '../helpers/util.js';

/** A directory for a throw-away server: tmpfs when there is one (its fsyncs then cost nothing). */
export function fastTempDir(name: string): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return mkdtempSync(path.join(base, `trustgate-${name}-`));
}

export const scaleGun = (i: number) => `registry.example.com/fleet/service-${String(i).padStart(4, '0')}`;

/** `count` repositories with server-held keys (4 requests at a time). */
export async function makeRepositories(base: string, admin: string, count: number, gun = scaleGun): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < count; i = next++)
        await callOk(base, admin, 'POST', '/repositories', { gun: gun(i), rootKey: 'keystore' }, 201);
    }),
  );
}

/** `count` signed tags in `gun`'s targets role, in batches of `batch` (one publish each). */
export async function signManyTags(base: string, admin: string, gun: string, count: number, batch = 10_000): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    const items = Array.from({ length: Math.min(batch, count - start) }, (_, k) => {
      const i = start + k;
      return { tag: `build-${String(i).padStart(5, '0')}`, digest: `sha256:${sha256Hex(`${gun} ${i}`)}`, size: 1000 + i };
    });
    await callOk(base, admin, 'POST', '/signing/batch', { gun, items }, 201);
  }
}

/**
 * Milliseconds from navigating to the Repositories page (signed in) until its first page of
 * `total` repositories is on screen, and the browser's own navigation figures.
 */
export async function repositoriesLoadTime(
  page: Page,
  base: string,
  total: number,
): Promise<{ shownMs: number; domContentLoadedMs: number }> {
  await page.goto('about:blank');
  const t0 = Date.now();
  await page.goto(`${base}/ui/#/repositories`);
  await page.getByText(`${total.toLocaleString('en')} repositories`, { exact: true }).waitFor({ timeout: 60_000 });
  await page.getByRole('table').getByRole('row').nth(50).waitFor();
  const shownMs = Date.now() - t0;
  const domContentLoadedMs = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    return Math.round(nav.domContentLoadedEventEnd - nav.startTime);
  });
  return { shownMs, domContentLoadedMs };
}
