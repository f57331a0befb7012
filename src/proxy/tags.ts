// Listings: a repository's tags and the registry's catalog, passed through as the upstream answers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Ctx, ProxyHost } from './context.js';

export function listTags(p: ProxyHost, ctx: Ctx, url: string): Promise<void> {
  return p.forward(ctx.req, ctx.res, url, { scope: ctx.scope });
}

export function catalog(p: ProxyHost, req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
  return p.forward(req, res, url, { scope: 'registry:catalog:*' });
}
