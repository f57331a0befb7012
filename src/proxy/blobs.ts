// Blobs: content-addressed, so they stream through unchecked (the client checks the digest).
import type { Ctx, ProxyHost } from './context.js';

/** GET and HEAD (GET bodies copied from the upstream's socket, rawget.ts), and DELETE. */
export function blob(p: ProxyHost, ctx: Ctx, url: string): Promise<void> {
  return p.forward(ctx.req, ctx.res, url, { scope: ctx.scope, blob: true });
}
