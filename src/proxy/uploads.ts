// Blob uploads, streamed to the upstream. A write needs a token that may push (the route table).
import { MAX_GUN_LENGTH } from '../core/tuf/gun.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';
import { NAME_RE, type Ctx, type ProxyHost } from './context.js';
import { E, send } from './errors.js';

/** POST `/blobs/uploads/`: starts an upload, or mounts a blob from another repository (`?from=`). */
export async function startUpload(p: ProxyHost, ctx: Ctx, url: string): Promise<void> {
  const { req, res, scope } = ctx;
  const q = url.indexOf('?');
  // A cross-repository mount reads the source repository too: the client needs read access
  // to it here, as the upstream would ask of it (the proxy's own credentials can read it all).
  const repeated = repeatedParam(url);
  if (repeated !== undefined) return send(res, E.REPEATED_PARAMETER, { parameter: repeated }, repeatedParamMessage(repeated));
  const from = new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('from');
  if (from) {
    const fromGun = p.gunFor(from);
    if (!NAME_RE.test(from) || Buffer.byteLength(fromGun) > MAX_GUN_LENGTH)
      return send(res, E.NAME_INVALID, { from }, 'invalid repository name to mount from');
    if (!(await p.authorize(req, res, 'pull', fromGun))) return;
  }
  const mountScope = from ? `${scope} repository:${from}:pull` : scope;
  return p.forward(req, res, url, { scope: mountScope, body: true });
}

/** GET (status), PATCH, PUT (chunks, the last one commits) and DELETE (cancel) of an upload. */
export function upload(p: ProxyHost, ctx: Ctx, url: string): Promise<void> {
  const method = ctx.req.method;
  return p.forward(ctx.req, ctx.res, url, { scope: ctx.scope, body: method === 'PATCH' || method === 'PUT' });
}
