// The web dashboard's files (built by `npm run build` into dist/ui/) under /ui/, with headers that
// keep the page to its own origin: no inline code, no other host, no framing.
import express from 'express';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Everything the page loads comes from this origin; nothing inline runs, nothing frames it. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': DASHBOARD_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

/** True for a request this edge answers: /ui and everything under /ui/. */
export const isDashboardPath = (url: string): boolean => /^\/ui(\/|\?|$)/.test(url);

/**
 * The handler for /ui paths. `dir` holds index.html and assets/ (hashed names, cached for a
 * year); without it every path answers 404 saying how to build the dashboard.
 */
export function createDashboard(dir: string | undefined): (req: IncomingMessage, res: ServerResponse) => void {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', 'strong');
  app.use((_req, res, next) => {
    res.set(SECURITY_HEADERS);
    next();
  });
  // The page's links are relative to /ui/: the bare path moves there, keeping the query.
  app.use((req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.set('Allow', 'GET, HEAD').status(405).type('text/plain').send('method not allowed\n');
      return;
    }
    if (req.path === '/ui') return res.redirect(301, '/ui/' + req.originalUrl.slice('/ui'.length));
    next();
  });
  const built = dir !== undefined && existsSync(join(dir, 'index.html'));
  if (built)
    app.use(
      '/ui',
      express.static(dir, {
        index: 'index.html',
        redirect: false,
        dotfiles: 'ignore',
        fallthrough: true,
        setHeaders: (res, path) => {
          res.setHeader('Cache-Control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
        },
      }),
    );
  app.use((_req, res) => {
    res
      .status(404)
      .type('text/plain')
      .set('Cache-Control', 'no-store')
      .send(built ? 'not found: the dashboard routes are under /ui/#/\n' : 'the dashboard is not built: run `npm run build`\n');
  });
  return (req, res) => app(req as express.Request, res as express.Response);
}
