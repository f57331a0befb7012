// Debian's Chromium driven by playwright-core (no browser download): one browser per test file,
// a fresh profile each time, and pages that record every request and every console error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { makeTempDir, removeTempDir } from '../helpers/services.js';

export const CHROMIUM = '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  /** A new tab (its own session storage) that records what it requests and logs. */
  open(viewport?: { width: number; height: number }): Promise<WatchedPage>;
  close(): Promise<void>;
}

export interface WatchedPage {
  page: Page;
  /** Every URL the page requested, in order. */
  requests: string[];
  /** Console errors and uncaught exceptions. */
  errors: string[];
}

/** The dashboard the tests load is the last `npm run build`'s (dist/ui), as `npm start` serves it. */
export function assertDashboardBuilt(): void {
  assert.ok(existsSync(path.join(ROOT, 'dist/ui/index.html')), 'dist/ui/index.html is missing: run `npm run build` first');
}

export async function launch(): Promise<Browser> {
  assertDashboardBuilt();
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/install-test-deps.sh)`);
  const profile = await makeTempDir('chromium-profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
  context.setDefaultTimeout(15_000);
  return {
    context,
    async open(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      const requests: string[] = [];
      const errors: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
      return { page, requests, errors };
    },
    async close() {
      await context.close();
      await removeTempDir(profile);
    },
  };
}

/** Every request went to the trust server itself on loopback (no CDN, no other host). */
export function assertLoopbackOnly(w: WatchedPage, origin: string): void {
  assert.ok(w.requests.length > 0, 'the page made requests');
  const off = w.requests.filter((u) => new URL(u).origin !== origin);
  assert.deepEqual(off, [], `requests left ${origin}`);
  assert.match(new URL(origin).hostname, /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/);
}

/** No console error and no uncaught exception, except `allowed` ones (e.g. an expected 401 load). */
export function assertNoConsoleErrors(w: WatchedPage, allowed: RegExp[] = []): void {
  assert.deepEqual(
    w.errors.filter((e) => !allowed.some((a) => a.test(e))),
    [],
  );
}

/** Signs in on the dashboard with a token, as a person would type it. */
export async function signIn(w: WatchedPage, base: string, token: string): Promise<void> {
  const { page } = w;
  await page.goto(`${base}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** A management API call with a token, as a script (not the page) makes it. */
export async function call(
  base: string,
  token: string,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const r = await fetch(`${base}/api/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

/** Like call(), but throws unless the status is `want`. */
export async function callOk(base: string, token: string, method: string, route: string, body: unknown, want: number): Promise<any> {
  const r = await call(base, token, method, route, body);
  assert.equal(r.status, want, `${method} ${route}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The hash part of the dashboard URL for a repository. */
export const repoHash = (gun: string) => `#/repo/${encodeURIComponent(gun)}`;
