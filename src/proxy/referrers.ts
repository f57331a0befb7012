// The OCI referrers API, passed through; the referrers' manifests are checked when pulled (manifests.ts).
import type { Ctx, ProxyHost } from './context.js';

export function listReferrers(p: ProxyHost, ctx: Ctx, url: string): Promise<void> {
  return p.forward(ctx.req, ctx.res, url, { scope: ctx.scope });
}
