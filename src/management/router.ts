// HTTP edge of the management API (`/api/v1`): one declarative route table (method, OpenAPI
// path, permission, request schema, handler). The router authenticates, checks the GUN and the
// token's scope, validates the body against the schema in api/, calls the service, and maps
// errors to `{"error":{"code","message"}}`. Tests compare this table with openapi.yaml.
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { AuditTrail } from '../audit/trail.js';
import { actorOf, authenticate, authorize, isAdmin, type Actor } from '../auth/guard.js';
import { LastAdminTokenError, ScopeError, allows, validateScope, type Permission, type Scope, type Tokens } from '../auth/tokens.js';
import type { Algorithm } from '../core/crypto/signer.js';
import type { Logger } from '../observability/log.js';
import { ProxyActivity } from '../observability/proxy-activity.js';
import type { AuditEntry } from '../audit/log.js';
import { makeBackupDir } from '../storage/backup-dirs.js';
import { ApiError, badRequest, conflict, errorBody, isBodyParserError, notFound } from '../http/api-error.js';
import { toApiError } from '../trust/api-errors.js';
import { RequestValidator } from '../http/schemas.js';
import { parseDuration, type ChangeResult, type OfflineKeyInput } from './context.js';
import type { ManagementService } from './service.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';
import { resolveKeyId, resolveKeyIds } from './key-ids.js';

export interface Ctx {
  req: Request;
  res: Response;
  actor: Actor;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

export interface Reply {
  status: number;
  body: unknown;
  /** Sent instead of `body` when set: a file's bytes, then `done` (which may remove it). */
  file?: { path: string; type: string; size: number; done: () => Promise<void> };
}

export interface Route {
  method: 'get' | 'post' | 'put' | 'delete';
  /** The OpenAPI path template, relative to /api/v1. */
  path: string;
  /** `any`: authenticated; checks that need the loaded object happen in the handler. */
  perm: Permission | 'any';
  /** Request body schema in api/ (`file.json#/$defs/Name`). */
  body?: string;
  /** Verb recorded when the scope check refuses the request. */
  action: string;
  handler(c: Ctx): Promise<Reply>;
}

export interface RouterDeps {
  service: ManagementService;
  tokens: Tokens;
  audit: AuditTrail;
  log: Logger;
  validator?: RequestValidator;
  /** The registry proxy's refusals (GET /proxy/denials); none when no proxy runs here. */
  proxyActivity?: ProxyActivity;
  /** Where a backup is written before it is sent (the data directory: same disk, 0700). */
  dataDir?: string;
  backup?: (dest: string) => Promise<void>;
}

const changeReply = (r: ChangeResult & Record<string, unknown>): Reply => ({ status: r.status === 'published' ? 200 : 202, body: r });

function intParam(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw badRequest('INVALID_REQUEST', `${name} must be a whole number from ${min} to ${max}`);
  return Number(v);
}

/** A search text of 1 to `max` characters. */
function textParam(v: string | undefined, name: string, max: number): string | undefined {
  if (v === undefined) return undefined;
  if (v.length < 1 || v.length > max) throw badRequest('INVALID_REQUEST', `${name} must be 1 to ${max} characters`);
  return v;
}

/** The largest page a list route answers. */
export const MAX_PAGE = 1000;
const MAX_OFFSET = 1_000_000_000;

function timeParam(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw badRequest('INVALID_REQUEST', `${name} must be an RFC 3339 time`);
  return t;
}

const AUDIT_OUTCOMES: readonly string[] = ['success', 'denied', 'failure', 'pending'];

export function routes(d: RouterDeps): Route[] {
  const s = d.service;
  const readable = (a: Actor) => (gun: string) => allows(a.scopes, 'read', gun);
  /** A pending change, once the actor may `perm` its repository. */
  /** Every key ID a repository knows (held or in its metadata): what a prefix is matched against. */
  const repoKeyIds = async (gun: string) => (await s.keyring.list(gun)).map((k) => k.id);
  const repoKey = async (gun: string, id: string) => resolveKeyId(id, /^[0-9a-f]{64}$/.test(id) ? [] : await repoKeyIds(gun), gun);
  // Without a proxy in this process, an empty record that reports `enabled: false`.
  const proxyActivity = d.proxyActivity ?? new ProxyActivity();
  const pendingFor = async (a: Actor, id: string, perm: Permission, action: string) => {
    const p = await s.pendingChanges.get(id);
    authorize(d.audit, a, perm, p.gun, action);
    return p;
  };
  return [
    {
      method: 'get',
      path: '/whoami',
      perm: 'any',
      action: 'whoami',
      handler: async ({ actor }) => ({ status: 200, body: { id: actor.id, name: actor.name, scopes: actor.scopes, keyIds: actor.keyIds } }),
    },
    // Repositories
    {
      method: 'get',
      path: '/repositories',
      perm: 'any',
      action: 'repository.list',
      handler: async ({ actor, query }) => {
        const q = textParam(query.q, 'q', 255);
        const offset = intParam(query.offset, 'offset', 0, MAX_OFFSET);
        const limit = intParam(query.limit, 'limit', 1, MAX_PAGE);
        return {
          status: 200,
          body: await s.repositories.list(readable(actor), { q, offset, limit }),
        };
      },
    },
    {
      method: 'post',
      path: '/repositories',
      perm: 'admin',
      body: 'repositories.json#/$defs/CreateRepositoryRequest',
      action: 'repository.create',
      handler: async ({ actor, body }) => {
        if (body.algorithm === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ecdsa or rsa');
        return { status: 201, body: await s.repositories.create(actor, body) };
      },
    },
    {
      method: 'get',
      path: '/repositories/{gun}',
      perm: 'read',
      action: 'repository.inspect',
      handler: async ({ params }) => ({ status: 200, body: await s.repositories.inspect(params.gun!) }),
    },
    {
      method: 'delete',
      path: '/repositories/{gun}',
      perm: 'admin',
      action: 'repository.delete',
      handler: async ({ actor, params, query }) => {
        if (query.keys !== undefined && query.keys !== 'keep' && query.keys !== 'delete')
          throw badRequest('INVALID_REQUEST', 'keys must be keep or delete');
        return { status: 200, body: await s.repositories.delete(actor, params.gun!, query.keys === 'delete') };
      },
    },
    {
      method: 'post',
      path: '/repositories/{gun}/root',
      perm: 'admin',
      body: 'repositories.json#/$defs/UploadRootRequest',
      action: 'root.upload',
      handler: async ({ actor, params, body }) => ({ status: 200, body: await s.repositories.uploadRoot(actor, params.gun!, body.root) }),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/trust-reset',
      perm: 'admin',
      action: 'repository.trust-reset',
      handler: async ({ actor, params }) => ({ status: 200, body: await s.repositories.trustReset(actor, params.gun!) }),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/resign',
      perm: 'sign',
      body: 'repositories.json#/$defs/ResignRequest',
      action: 'repository.resign',
      handler: async ({ actor, params, body }) => {
        if ((body.roles ?? []).includes('root') && !isAdmin(actor))
          throw new ApiError(403, 'FORBIDDEN', 're-signing root needs the admin scope');
        const r = await s.expiry.resign(actor, params.gun!, {
          ...(body.roles ? { roles: body.roles } : {}),
          ...(body.within ? { withinMs: parseDuration(body.within) } : {}),
          ...(body.signWith ? { signWith: await resolveKeyIds(body.signWith, () => repoKeyIds(params.gun!), params.gun!) } : {}),
          ...(body.offlineRootKey ? { offlineRootKey: body.offlineRootKey } : {}),
        });
        return { status: 200, body: r };
      },
    },
    // Keys
    {
      method: 'get',
      path: '/repositories/{gun}/keys',
      perm: 'read',
      action: 'key.list',
      handler: async ({ params }) => ({ status: 200, body: { gun: params.gun, keys: await s.keyring.list(params.gun!) } }),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/keys/import',
      perm: 'admin',
      body: 'keys.json#/$defs/ImportKeyRequest',
      action: 'key.import',
      handler: async ({ actor, params, body }) => {
        if (body.replaceKeyId !== undefined) body.replaceKeyId = await repoKey(params.gun!, body.replaceKeyId);
        const r = await s.keyring.import(actor, params.gun!, body);
        return r.status === 'stored' ? { status: 201, body: r } : changeReply(r as ChangeResult & Record<string, unknown>);
      },
    },
    {
      method: 'post',
      path: '/repositories/{gun}/keys/{role}/rotate',
      perm: 'admin',
      body: 'keys.json#/$defs/RotateKeyRequest',
      action: 'key.rotate',
      handler: async ({ actor, params, body }) => {
        if (body.keyId !== undefined) body.keyId = await repoKey(params.gun!, body.keyId);
        return changeReply(await s.keyring.rotate(actor, params.gun!, params.role!, body));
      },
    },
    {
      method: 'post',
      path: '/repositories/{gun}/keys/{keyId}/export',
      perm: 'admin',
      body: 'keys.json#/$defs/ExportKeyRequest',
      action: 'key.export',
      handler: async ({ actor, params, body }) => ({
        status: 200,
        body: await s.keyring.export(actor, params.gun!, await repoKey(params.gun!, params.keyId!), body.passphrase),
      }),
    },
    {
      method: 'delete',
      path: '/repositories/{gun}/keys/{keyId}',
      perm: 'admin',
      body: 'keys.json#/$defs/DeleteKeyRequest',
      action: 'key.delete',
      handler: async ({ actor, params, body }) =>
        changeReply(
          await s.keyring.delete(
            actor,
            params.gun!,
            await repoKey(params.gun!, params.keyId!),
            body as { offlineRootKey?: OfflineKeyInput },
          ),
        ),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/roles/{role}/keys',
      perm: 'admin',
      body: 'keys.json#/$defs/AddRoleKeyRequest',
      action: 'role.key.add',
      handler: async ({ actor, params, body }) => changeReply(await s.keyring.addToRole(actor, params.gun!, params.role!, body)),
    },
    {
      method: 'put',
      path: '/repositories/{gun}/roles/{role}/threshold',
      perm: 'admin',
      body: 'keys.json#/$defs/ThresholdRequest',
      action: 'role.threshold',
      handler: async ({ actor, params, body }) =>
        changeReply((await s.keyring.setThreshold(actor, params.gun!, params.role!, body)) as ChangeResult & Record<string, unknown>),
    },
    // Delegations and signers
    {
      method: 'get',
      path: '/repositories/{gun}/delegations',
      perm: 'read',
      action: 'delegation.list',
      handler: async ({ params }) => ({ status: 200, body: { gun: params.gun, delegations: await s.delegations.list(params.gun!) } }),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/delegations',
      perm: 'admin',
      body: 'delegations.json#/$defs/AddDelegationRequest',
      action: 'delegation.add',
      handler: async ({ actor, params, body }) =>
        changeReply(await s.delegations.add(actor, params.gun!, body as { role: string; algorithm?: Algorithm })),
    },
    {
      method: 'delete',
      path: '/repositories/{gun}/delegations/{role}',
      perm: 'admin',
      action: 'delegation.remove',
      handler: async ({ actor, params }) =>
        changeReply((await s.delegations.remove(actor, params.gun!, params.role!)) as ChangeResult & Record<string, unknown>),
    },
    {
      method: 'get',
      path: '/repositories/{gun}/signers',
      perm: 'read',
      action: 'signer.list',
      handler: async ({ params }) => ({ status: 200, body: { gun: params.gun, signers: await s.delegations.listSigners(params.gun!) } }),
    },
    {
      method: 'post',
      path: '/repositories/{gun}/signers',
      perm: 'admin',
      body: 'delegations.json#/$defs/AddSignerRequest',
      action: 'signer.add',
      handler: async ({ actor, params, body }) => changeReply(await s.delegations.addSigner(actor, params.gun!, body)),
    },
    {
      method: 'delete',
      path: '/repositories/{gun}/signers/{name}',
      perm: 'admin',
      action: 'signer.remove',
      handler: async ({ actor, params }) =>
        changeReply((await s.delegations.removeSigner(actor, params.gun!, params.name!)) as ChangeResult & Record<string, unknown>),
    },
    // Tags
    {
      method: 'get',
      path: '/repositories/{gun}/tags',
      perm: 'read',
      action: 'tag.list',
      handler: async ({ params, query }) => {
        const q = textParam(query.q, 'q', 128);
        const role = textParam(query.role, 'role', 255);
        const offset = intParam(query.offset, 'offset', 0, MAX_OFFSET);
        return {
          status: 200,
          body: await s.tags.list(params.gun!, {
            q,
            role,
            offset,
            limit: intParam(query.limit, 'limit', 1, MAX_PAGE) ?? 100,
          }),
        };
      },
    },
    {
      method: 'post',
      path: '/repositories/{gun}/tags',
      perm: 'sign',
      body: 'tags.json#/$defs/AddTagRequest',
      action: 'tag.add',
      handler: async ({ actor, params, body }) => {
        if (body.signWith) body.signWith = await resolveKeyIds(body.signWith, () => repoKeyIds(params.gun!), params.gun!);
        return changeReply(await s.tags.add(actor, params.gun!, body));
      },
    },
    {
      method: 'delete',
      path: '/repositories/{gun}/tags/{tag}',
      perm: 'sign',
      action: 'tag.remove',
      handler: async ({ actor, params, query }) =>
        changeReply(
          (await s.tags.remove(actor, params.gun!, params.tag!, {
            ...(query.role !== undefined ? { role: query.role } : {}),
          })) as ChangeResult & Record<string, unknown>,
        ),
    },
    // Pending changes
    {
      method: 'get',
      path: '/pending',
      perm: 'any',
      action: 'pending.list',
      handler: async ({ actor, query }) => ({
        status: 200,
        body: { pending: await s.pendingChanges.explain(actor, await s.pendingChanges.list(readable(actor), query.gun)) },
      }),
    },
    {
      method: 'get',
      path: '/pending/{id}',
      perm: 'any',
      action: 'pending.get',
      handler: async ({ actor, params }) => ({
        status: 200,
        body: (await s.pendingChanges.explain(actor, [await pendingFor(actor, params.id!, 'read', 'pending.get')]))[0],
      }),
    },
    {
      method: 'post',
      path: '/pending/{id}/signatures',
      perm: 'any',
      body: 'pending.json#/$defs/SignPendingRequest',
      action: 'pending.sign',
      handler: async ({ actor, params, body }) => {
        const p = await pendingFor(actor, params.id!, 'sign', 'pending.sign');
        if (body.keyId !== undefined)
          body.keyId = resolveKeyId(
            body.keyId,
            (await s.keys.list({ gun: p.gun })).map((k) => k.id),
            `the keys held for ${p.gun}`,
          );
        return { status: 200, body: await s.pendingChanges.sign(actor, params.id!, body) };
      },
    },
    {
      method: 'delete',
      path: '/pending/{id}',
      perm: 'any',
      action: 'pending.cancel',
      handler: async ({ actor, params }) => {
        await pendingFor(actor, params.id!, 'sign', 'pending.cancel');
        return { status: 200, body: await s.pendingChanges.cancel(actor, params.id!) };
      },
    },
    // Expiry
    {
      method: 'get',
      path: '/expiring',
      perm: 'any',
      action: 'expiring.list',
      handler: async ({ actor, query }) => {
        if (query.manual !== undefined && query.manual !== 'true' && query.manual !== 'false')
          throw badRequest('INVALID_REQUEST', 'manual must be true or false');
        const offset = intParam(query.offset, 'offset', 0, MAX_OFFSET);
        const limit = intParam(query.limit, 'limit', 1, MAX_PAGE);
        return {
          status: 200,
          body: await s.expiry.expiring(parseDuration(query.within ?? '30d'), readable(actor), {
            manual: query.manual === 'true',
            offset,
            limit,
          }),
        };
      },
    },
    // Tokens
    {
      method: 'get',
      path: '/tokens',
      perm: 'admin',
      action: 'token.list',
      handler: async () => ({ status: 200, body: { tokens: await d.tokens.list() } }),
    },
    {
      method: 'post',
      path: '/tokens',
      perm: 'admin',
      body: 'tokens.json#/$defs/CreateTokenRequest',
      action: 'token.create',
      handler: async ({ actor, body }) => {
        let scopes: Scope[];
        try {
          scopes = (body.scopes as string[]).map(validateScope);
        } catch (e) {
          if (e instanceof ScopeError) throw badRequest('INVALID_REQUEST', e.message);
          throw e;
        }
        body.keyIds = await resolveKeyIds(body.keyIds, async () => (await s.keys.list()).map((k) => k.id), 'the keys the server holds');
        for (const id of (body.keyIds ?? []) as string[]) {
          if (!(await s.keys.get(id))) throw notFound('KEY_NOT_FOUND', `the server holds no key with the ID ${id}`);
        }
        const { token, info } = await d.tokens.create({
          name: body.name,
          scopes,
          ...(body.keyIds ? { keyIds: body.keyIds } : {}),
          ...(body.expiresInSeconds ? { expiresInSeconds: body.expiresInSeconds } : {}),
          createdBy: actor.id,
        });
        await d.audit.append({
          actor: { id: actor.id, name: actor.name },
          action: 'token.create',
          outcome: 'success',
          detail: { tokenId: info.id, name: info.name, scopes: info.scopes },
        });
        return { status: 201, body: { token, info } };
      },
    },
    {
      method: 'delete',
      path: '/tokens/{id}',
      perm: 'admin',
      action: 'token.revoke',
      handler: async ({ actor, params }) => {
        const t = await d.tokens.get(params.id!);
        if (!t) throw notFound('NOT_FOUND', `no token ${params.id}`);
        // Checked and revoked atomically: two processes must not revoke the last two admins.
        try {
          await d.tokens.revoke(t.id, { keepAnAdmin: true });
        } catch (e) {
          if (e instanceof LastAdminTokenError)
            throw conflict('LAST_ADMIN_TOKEN', 'this is the last admin token: create another admin token first');
          throw e;
        }
        await d.audit.append({
          actor: { id: actor.id, name: actor.name },
          action: 'token.revoke',
          outcome: 'success',
          detail: { tokenId: t.id, name: t.name },
        });
        return { status: 200, body: { id: t.id, revoked: true } };
      },
    },
    // Audit
    {
      method: 'get',
      path: '/audit',
      perm: 'admin',
      action: 'audit.query',
      handler: async ({ query }) => {
        const since = timeParam(query.since, 'since');
        const until = timeParam(query.until, 'until');
        const limit = intParam(query.limit, 'limit', 1, 100000);
        const before = intParam(query.before, 'before', 1, Number.MAX_SAFE_INTEGER);
        const outcome = query.outcome;
        if (outcome !== undefined && !AUDIT_OUTCOMES.includes(outcome))
          throw badRequest('INVALID_REQUEST', `outcome must be one of ${AUDIT_OUTCOMES.join(', ')}`);
        // One more than asked: whether an older page exists.
        const found = await d.audit.query({
          ...(query.gun !== undefined ? { gun: query.gun } : {}),
          ...(query.actor !== undefined ? { actor: query.actor } : {}),
          ...(query.action !== undefined ? { action: query.action } : {}),
          ...(since !== undefined ? { since } : {}),
          ...(until !== undefined ? { until } : {}),
          ...(outcome !== undefined ? { outcome: outcome as AuditEntry['outcome'] } : {}),
          ...(before !== undefined ? { before } : {}),
          ...(limit !== undefined ? { limit: limit + 1 } : {}),
        });
        const entries = limit !== undefined && found.length > limit ? found.slice(1) : found;
        const nextBefore = limit !== undefined && found.length > limit ? entries[0]!.seq : null;
        return { status: 200, body: { entries, nextBefore } };
      },
    },
    {
      method: 'get',
      path: '/audit/verify',
      perm: 'admin',
      action: 'audit.verify',
      handler: async () => {
        const checkedAt = new Date(s.context.now()).toISOString();
        return { status: 200, body: { ...(await d.audit.verify()), checkedAt } };
      },
    },
    // Proxy
    {
      method: 'get',
      path: '/proxy/denials',
      // Refusals name repositories of every GUN: a token that may read every repository.
      perm: 'read',
      action: 'proxy.denials',
      handler: async ({ query }) => {
        const reason = textParam(query.reason, 'reason', 64);
        const limit = intParam(query.limit, 'limit', 1, MAX_PAGE) ?? 100;
        return { status: 200, body: proxyActivity.report({ limit, reason }) };
      },
    },
    // Backup
    {
      method: 'get',
      path: '/backup',
      perm: 'admin',
      action: 'backup.create',
      handler: async ({ actor }) => {
        const backup = d.backup;
        if (!backup || !d.dataDir)
          throw conflict('BACKUP_UNSUPPORTED', 'this store has no built-in backup: back up PostgreSQL with its own tools (pg_dump)');
        const dir = await makeBackupDir(d.dataDir);
        const done = () => rm(dir, { recursive: true, force: true });
        const path = join(dir, 'trustgate.db');
        let bytes: number;
        try {
          await backup(path);
          bytes = (await stat(path)).size;
        } catch (e) {
          await done();
          throw e;
        }
        await d.audit.append({ actor: { id: actor.id, name: actor.name }, action: 'backup.create', outcome: 'success', detail: { bytes } });
        return { status: 200, body: undefined, file: { path, type: 'application/vnd.sqlite3', size: bytes, done } };
      },
    },
  ];
}

/** Streams a reply's file, then lets it go (also when the client leaves early). */
function sendFile(res: Response, file: NonNullable<Reply['file']>, log: Logger): void {
  const src = createReadStream(file.path);
  const finish = () =>
    void file.done().catch((e: Error) => log('error', 'cannot remove a sent file', { file: file.path, error: e.message }));
  src.once('open', () => {
    res.status(200).type(file.type).setHeader('Content-Length', String(file.size));
    src.pipe(res);
  });
  src.once('error', (e) => {
    log('error', 'cannot send a file', { file: file.path, error: e.message });
    if (!res.headersSent) res.status(500).json(errorBody(new ApiError(500, 'INTERNAL', 'internal error')));
    else res.destroy();
  });
  res.once('close', () => {
    src.destroy();
    finish();
  });
}

/** `/repositories/{gun}` → `/repositories/:gun` (express 5 uses braces for optional parts). */
export const expressPath = (p: string) => p.replace(/\{(\w+)\}/g, ':$1');

export function createManagementRouter(d: RouterDeps): express.Router {
  const validator = d.validator ?? new RequestValidator();
  const router = express.Router();
  const table = routes(d);
  // Only paths of the table are claimed; anything else under /api/v1 (e.g. the registry token
  // endpoint another module serves) passes through untouched.
  const owned = table.map((r) => new RegExp(`^${r.path.replace(/\{\w+\}/g, '[^/]+')}/?$`));
  router.use((req, res, next) => {
    if (!owned.some((re) => re.test(req.path))) return next('router');
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  router.use(authenticate(d.tokens, d.audit));
  router.use(express.json({ limit: '1mb' }));
  for (const r of table) {
    router[r.method](expressPath(r.path), (req: Request, res: Response, next: NextFunction) => {
      (async () => {
        const actor = actorOf(res);
        const params = Object.fromEntries(Object.entries(req.params as Record<string, string>).map(([k, v]) => [k, String(v)]));
        if (params.gun !== undefined) d.service.checkGun(params.gun);
        if (r.perm !== 'any') authorize(d.audit, actor, r.perm, params.gun, r.action);
        const body = req.body === undefined ? {} : req.body;
        if (r.body) validator.check(r.body, body);
        else if (req.body !== undefined && Object.keys(req.body as object).length > 0)
          throw badRequest('INVALID_REQUEST', 'this endpoint takes no request body');
        const repeated = repeatedParam(req.originalUrl);
        if (repeated !== undefined) throw badRequest('INVALID_REQUEST', repeatedParamMessage(repeated));
        const query: Record<string, string | undefined> = {};
        // `?keys=delete&keys=delete` arrives as an array: refuse it rather than drop it, which went
        // on as if the parameter were absent (that DELETE removed the repository and kept its keys).
        for (const [k, v] of Object.entries(req.query as Record<string, unknown>)) {
          if (typeof v !== 'string') throw badRequest('INVALID_REQUEST', repeatedParamMessage(k));
          query[k] = v;
        }
        const reply = await r.handler({ req, res, actor, params, query, body });
        // The service log names each change too (the audit log has the detail).
        if (r.method !== 'get' && reply.status < 300)
          d.log('info', 'management API change', {
            actor: actor.name,
            actorId: actor.id,
            action: r.action,
            ...(params.gun !== undefined ? { gun: params.gun } : typeof body.gun === 'string' ? { gun: body.gun } : {}),
            ...(reply.status === 202 ? { pending: true } : {}),
          });
        if (reply.file) return sendFile(res, reply.file, d.log);
        res.status(reply.status).json(reply.body);
      })().catch(next);
    });
  }
  router.use((_req: Request, _res: Response, next: NextFunction) =>
    next(notFound('NOT_FOUND', 'no such endpoint (or not with this method)')),
  );
  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    let e: ApiError;
    const t = (err as { type?: string }).type;
    if (t === 'entity.parse.failed') e = badRequest('INVALID_JSON', 'the request body is not valid JSON');
    else if (t === 'entity.too.large') e = new ApiError(413, 'PAYLOAD_TOO_LARGE', 'the request body is too large');
    // Any other refusal of the JSON parser (an unknown encoding or charset: 415; a corrupt gzip
    // body: 400 without a `type`) is the client's: it answered 500 INTERNAL when untyped.
    else if (isBodyParserError(err))
      e = new ApiError(400, 'INVALID_REQUEST', 'the request body could not be read: unsupported or corrupt encoding');
    // Express decodes path parameters and raises a URIError for `%ZZ`: a bad request, not a 500.
    else if (err instanceof URIError) e = badRequest('INVALID_REQUEST', 'a path segment is not valid percent-encoding');
    else e = toApiError(err);
    if (e.status >= 500) d.log('error', 'management API error', { error: (err as Error).message });
    res.status(e.status).json(errorBody(e));
  });
  return router;
}
