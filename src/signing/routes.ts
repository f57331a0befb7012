// REST routes for CI and release tooling, under /api/v1/signing (contract: openapi.yaml, schemas
// api/signing*.json). Every route needs a bearer token: signing, revoking and promoting need the
// signer scope for the GUN and a key of the role the token may use; verify, inspect and the
// public key need read access. Errors are `{"error":{"code","message",...}}` like the rest of
// the management API.
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalKeyId, parseKey, publicKeyObject } from '../core/crypto/keys.js';
import { naturalCompare, releasedRows, signerName, tagRows } from '../core/tuf/docker-view.js';
import { Metadata, type RootBody, type TargetsBody } from '../core/tuf/metadata.js';
import type { AuditTrail } from '../audit/trail.js';
import { actorOf, authenticate, authorize, signingIdentity as identity, type Actor } from '../auth/guard.js';
import type { Tokens } from '../auth/tokens.js';
import { ApiError, isBodyParserError } from '../http/api-error.js';
import { toApiError } from '../trust/api-errors.js';
import { API_DIR } from '../http/schemas.js';
import type { Logger } from '../observability/log.js';
import { SigningError } from '../http/signing-error.js';
import { journalOf, SigningService, type PublishedRole, type SignItem, type SignResult } from '../trust/tag-signing.js';
import {
  checkDigest,
  checkGun,
  checkPredicate,
  checkPredicateType,
  checkRole,
  checkTag,
  onlyFields,
  parseImageRef,
  SigningInputError,
} from '../http/signing-input.js';
import { MAX_PREDICATE_BYTES, predicateProblem } from '../core/crypto/predicates.js';
import { verifyImage, type ImageVerifier } from '../trust/verify-report.js';
import { repeatedParam, repeatedParamMessage } from '../http/query.js';

export interface SigningRouteDeps {
  service: SigningService;
  verifier: ImageVerifier;
  tokens: Pick<Tokens, 'authenticate'>;
  audit: AuditTrail;
  log?: Logger;
  /** The GUN for a `repository` given without its registry name (the proxy's naming); default: as given. */
  gunFor?: (repository: string) => string;
  /** Largest request body (batches of thousands of tags). */
  maxBodyBytes?: number;
  /** Most items in one batch. */
  maxBatch?: number;
  /** Told of each attestation written (the proxy drops the GUN's cached verdicts). */
  onAttested?: (gun: string) => void;
}

type Handler = (req: Request, res: Response) => Promise<void>;
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => void h(req, res).catch(next);

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

// The fields each request may hold, read from api/signing.json itself: the schema openapi.yaml
// documents stays the one list (its requests close their fields with additionalProperties false).
interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  additionalProperties?: unknown;
}
const SIGNING_DEFS = (JSON.parse(readFileSync(join(API_DIR, 'signing.json'), 'utf8')) as { $defs: Record<string, SchemaNode> }).$defs;

/** The fields of a closed object in api/signing.json: a $defs name, or `Name.property`. */
function fieldsOf(path: string): ReadonlySet<string> {
  const [def, prop] = path.split('.');
  let node: SchemaNode | undefined = SIGNING_DEFS[def!];
  if (prop !== undefined) node = node?.properties?.[prop];
  if (!node?.properties || node.additionalProperties !== false) throw new Error(`api/signing.json: ${path} does not list closed fields`);
  return new Set(Object.keys(node.properties));
}

/** Each request schema of api/signing.json (by its $defs name or path) and the fields accepted for it. */
export const REQUEST_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = Object.fromEntries(
  [
    'SignRequest',
    'BatchItem',
    'BatchRequest',
    'RevokeRequest',
    'PromoteRequest',
    'PromoteRequest.from',
    'PromoteRequest.to',
    'VerifyRequest',
    'AttestRequest',
  ].map((p) => [p, fieldsOf(p)]),
);
const SIGN_FIELDS = REQUEST_FIELDS.SignRequest!;
const ITEM_FIELDS = REQUEST_FIELDS.BatchItem!;
const BATCH_FIELDS = REQUEST_FIELDS.BatchRequest!;
const REVOKE_FIELDS = REQUEST_FIELDS.RevokeRequest!;
const PROMOTE_FIELDS = REQUEST_FIELDS.PromoteRequest!;
const FROM_FIELDS = REQUEST_FIELDS['PromoteRequest.from']!;
const TO_FIELDS = REQUEST_FIELDS['PromoteRequest.to']!;
const VERIFY_FIELDS = REQUEST_FIELDS.VerifyRequest!;
const ATTEST_FIELDS = REQUEST_FIELDS.AttestRequest!;

/** The request body as an object, or 400. */
function body(req: Request): Record<string, unknown> {
  if (!isObj(req.body)) throw new SigningInputError('body', 'the request body must be a JSON object (Content-Type: application/json)');
  return req.body;
}

function bool(v: unknown, field: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new SigningInputError(field, `${field} must be true or false`);
  return v;
}

/** Items one batch may hold (api/signing.json BatchRequest.items): a batch is checked and signed without yielding to other requests. */
export const MAX_BATCH_ITEMS = 1000;

export function signingRouter(deps: SigningRouteDeps): Router {
  const { service, verifier, tokens, audit } = deps;
  const gunFor = deps.gunFor ?? ((r: string) => r);
  const maxBatch = deps.maxBatch ?? MAX_BATCH_ITEMS;
  const r = express.Router();
  r.use(
    '/signing',
    (_req: Request, res: Response, next: NextFunction) => {
      res.setHeader('Cache-Control', 'no-store');
      next();
    },
    authenticate(tokens, audit),
    (req: Request, _res: Response, next: NextFunction) => {
      const repeated = repeatedParam(req.originalUrl);
      next(repeated === undefined ? undefined : new SigningInputError(repeated, repeatedParamMessage(repeated)));
    },
    express.json({ limit: deps.maxBodyBytes ?? 64 * 1024 * 1024, strict: true }),
  );

  /** The GUN of a request item: `gun` wins, else `repository` through the proxy's naming. */
  const gunOf = (o: { gun?: string; repository?: string }, field: string): string => {
    if (o.gun !== undefined) return checkGun(o.gun, `${field}gun`);
    if (o.repository !== undefined) return checkGun(gunFor(checkGun(o.repository, `${field}repository`)), `${field}repository`);
    throw new SigningInputError(`${field}gun`, `${field}gun (or ${field}repository) is required`);
  };

  const mayRead = (a: Actor, gun: string, action: string) => authorize(audit, a, 'read', gun, action);
  const maySign = (a: Actor, gun: string, action: string) => authorize(audit, a, 'sign', gun, action);

  /** The journal id of a published role's commit, for its entry; acknowledged once every entry is written. */
  const journaled = (p: PublishedRole, ids: Set<string>): Record<string, string> => {
    const j = journalOf(p);
    if (j) ids.add(j);
    return j ? { journal: j } : {};
  };
  const acknowledge = (ids: Set<string>) => ids.forEach((j) => service.editor.trust.acknowledge(j));
  const auditSign = async (a: Actor, action: string, res: SignResult, extra: Record<string, string | number | boolean> = {}) => {
    const ids = new Set<string>();
    for (const p of res.published) {
      await audit.append({
        actor: { id: a.id, name: a.name },
        action,
        outcome: 'success',
        gun: p.gun,
        role: p.role,
        detail: {
          version: p.version,
          tags: res.items.filter((i) => i.gun === p.gun && i.role === p.role).length,
          ...extra,
          ...journaled(p, ids),
        },
      });
    }
    acknowledge(ids);
    for (const p of res.pending) {
      await audit.append({
        actor: { id: a.id, name: a.name },
        action,
        outcome: 'pending',
        gun: p.gun,
        detail: { pending: p.id, roles: p.roles.map((x) => `${x.role}:${x.needed}`), ...extra },
      });
    }
  };
  const answer = (res: Response, result: SignResult & Record<string, unknown>) => {
    const pending = result.status === 'pending';
    res.status(pending ? 202 : 201).json({
      ...result,
      ...(pending
        ? {
            message: result.pending
              .map((p) =>
                p.roles.map((x) => `${x.role} in ${p.gun} needs ${x.needed} more signature(s) (pending change ${p.id})`).join('; '),
              )
              .join('; '),
          }
        : {}),
    });
  };

  // POST /signing/sign: one tag.
  r.post(
    '/signing/sign',
    wrap(async (req, res) => {
      const b = body(req);
      onlyFields(b, SIGN_FIELDS);
      const a = actorOf(res);
      const raw = SigningService.parseItem(b);
      const item: SignItem = { ...raw, gun: gunOf(raw, '') };
      maySign(a, item.gun, 'tag.sign');
      const out = await service.sign([item], identity(a), { cosign: bool(b.cosign, 'cosign'), bundle: bool(b.bundle, 'bundle') });
      await auditSign(a, 'tag.sign', out);
      answer(res, { ...out });
    }),
  );

  // POST /signing/batch: many tags, one publish per GUN.
  r.post(
    '/signing/batch',
    wrap(async (req, res) => {
      const b = body(req);
      onlyFields(b, BATCH_FIELDS);
      const a = actorOf(res);
      if (!Array.isArray(b.items) || b.items.length === 0)
        throw new SigningInputError('items', 'items must be a non-empty list of {tag, digest, size}');
      if (b.items.length > maxBatch) throw new SigningInputError('items', `a batch holds at most ${maxBatch} items`);
      const defGun = b.gun !== undefined || b.repository !== undefined ? gunOf(b as { gun?: string; repository?: string }, '') : undefined;
      const defRole = b.role !== undefined ? checkRole(b.role) : undefined;
      const defaults = defRole ? { role: defRole } : {};
      const items: SignItem[] = new Array(b.items.length);
      for (let i = 0; i < b.items.length; i++) {
        if (isObj(b.items[i])) onlyFields(b.items[i], ITEM_FIELDS, `items[${i}]`);
        const raw = SigningService.parseItem(b.items[i], defaults, `items[${i}]`);
        let gun = defGun;
        if (raw.gun !== undefined || raw.repository !== undefined) {
          gun = gunOf(raw, `items[${i}].`);
          delete raw.repository;
        }
        if (!gun) throw new SigningInputError(`items[${i}].gun`, `items[${i}].gun is required (or a gun for the whole batch)`);
        items[i] = { ...(raw as Omit<SignItem, 'gun'>), gun };
      }
      for (const g of new Set(items.map((i) => i.gun))) maySign(a, g, 'tag.sign');
      const out = await service.sign(items, identity(a), { cosign: bool(b.cosign, 'cosign'), bundle: bool(b.bundle, 'bundle') });
      await auditSign(a, 'tag.sign', out, { batch: true });
      answer(res, { ...out });
    }),
  );

  // POST /signing/attest: {gun|repository, digest, predicateType, predicate, role?} → a signed attestation in the upstream.
  r.post(
    '/signing/attest',
    wrap(async (req, res) => {
      const b = body(req);
      onlyFields(b, ATTEST_FIELDS);
      const a = actorOf(res);
      const gun = gunOf(b as { gun?: string; repository?: string }, '');
      const digest = checkDigest(b.digest);
      const role = checkRole(b.role ?? 'targets');
      const predicateType = checkPredicateType(b.predicateType);
      const predicate = checkPredicate(b.predicate, MAX_PREDICATE_BYTES, (p) => predicateProblem(predicateType, p));
      maySign(a, gun, 'attestation.sign');
      const out = await service.attest({ gun, digest, role, predicateType, predicate }, identity(a));
      await audit.append({
        actor: { id: a.id, name: a.name },
        action: 'attestation.sign',
        outcome: 'success',
        gun,
        role,
        detail: { digest, predicateType, keyId: out.keyId, cosign: out.cosign.tag, bundle: out.bundle.manifestDigest },
      });
      deps.onAttested?.(gun);
      res.status(201).json(out);
    }),
  );

  // POST /signing/revoke: {gun|repository, tag, role?}
  r.post(
    '/signing/revoke',
    wrap(async (req, res) => {
      const b = body(req);
      onlyFields(b, REVOKE_FIELDS);
      const a = actorOf(res);
      const gun = gunOf(b as { gun?: string; repository?: string }, '');
      const tag = checkTag(b.tag);
      const role = b.role !== undefined ? checkRole(b.role) : undefined;
      maySign(a, gun, 'tag.revoke');
      const out = await service.revoke(gun, tag, role, identity(a));
      const ids = new Set<string>();
      for (const p of out.published)
        await audit.append({
          actor: { id: a.id, name: a.name },
          action: 'tag.revoke',
          outcome: 'success',
          gun,
          role: p.role,
          detail: { tag, version: p.version, ...journaled(p, ids) },
        });
      acknowledge(ids);
      if (out.pending)
        await audit.append({
          actor: { id: a.id, name: a.name },
          action: 'tag.revoke',
          outcome: 'pending',
          gun,
          detail: { tag, pending: out.pending.id },
        });
      res.status(out.status === 'pending' ? 202 : 200).json(out);
    }),
  );

  // POST /signing/promote: {gun|repository, from: {tag, role?}, to: {tag?, role, gun?}}
  r.post(
    '/signing/promote',
    wrap(async (req, res) => {
      const b = body(req);
      const a = actorOf(res);
      const gun = gunOf(b as { gun?: string; repository?: string }, '');
      if (!isObj(b.from)) throw new SigningInputError('from', 'from must be {tag, role?}');
      if (!isObj(b.to)) throw new SigningInputError('to', 'to must be {role, tag?, gun?}');
      onlyFields(b, PROMOTE_FIELDS);
      onlyFields(b.from, FROM_FIELDS, 'from');
      onlyFields(b.to, TO_FIELDS, 'to');
      const from = {
        gun,
        tag: checkTag(b.from.tag, 'from.tag'),
        ...(b.from.role !== undefined ? { role: checkRole(b.from.role, 'from.role') } : {}),
      };
      const toGun =
        b.to.gun !== undefined || b.to.repository !== undefined ? gunOf(b.to as { gun?: string; repository?: string }, 'to.') : gun;
      const to = { gun: toGun, tag: checkTag(b.to.tag ?? from.tag, 'to.tag'), role: checkRole(b.to.role ?? 'targets', 'to.role') };
      mayRead(a, gun, 'tag.promote');
      maySign(a, toGun, 'tag.promote');
      const out = await service.promote(from, to, identity(a), { cosign: bool(b.cosign, 'cosign'), bundle: bool(b.bundle, 'bundle') });
      await auditSign(a, 'tag.promote', out, { from: `${gun}:${from.tag}` });
      answer(res, { ...out });
    }),
  );

  // GET|POST /signing/verify: {image} → verdict and evidence. 200 either way: the verdict is the answer.
  const verify = wrap(async (req, res) => {
    const a = actorOf(res);
    const src = req.method === 'GET' ? (req.query as Record<string, unknown>) : body(req);
    // The query too: a misspelt `?role=` was ignored, and the verdict then counted every role.
    onlyFields(src, VERIFY_FIELDS);
    const image = src.image;
    if (typeof image !== 'string') throw new SigningInputError('image', 'image is required: host/repo:tag or host/repo@sha256:<hex>');
    const ref = parseImageRef(image);
    if (!ref.tag && !ref.digest) throw new SigningInputError('image', 'image needs a :tag or an @sha256:<hex> digest');
    // A JSON body's roles is a non-empty list (api/signing.json): an empty one verified against
    // every role, and a string or object was taken apart as if it were the GET query's text.
    if (req.method !== 'GET' && src.roles !== undefined && (!Array.isArray(src.roles) || src.roles.length === 0)) {
      throw new SigningInputError('roles', 'roles must be a non-empty list of targets roles');
    }
    const roles =
      src.roles === undefined
        ? undefined
        : (Array.isArray(src.roles) ? src.roles : String(src.roles).split(',')).map((x, i) => checkRole(x, `roles[${i}]`));
    const gun = ref.name;
    mayRead(a, gun, 'image.verify');
    const report = await verifyImage(
      verifier,
      image,
      gun,
      { ...(ref.tag ? { tag: ref.tag } : {}), ...(ref.digest ? { digest: ref.digest } : {}) },
      roles ? { roles } : {},
    );
    res.status(200).json(report);
  });
  r.get('/signing/verify', verify);
  r.post('/signing/verify', verify);

  // GET /signing/inspect?gun=: signed tags, signers (delegations) and administrative keys.
  r.get(
    '/signing/inspect',
    wrap(async (req, res) => {
      const a = actorOf(res);
      const gun = gunOf(req.query as { gun?: string; repository?: string }, '');
      mayRead(a, gun, 'repository.inspect');
      res.json(await inspect(service, verifier, gun));
    }),
  );

  // GET /signing/public-key?gun=&role=: the PEM that verifies cosign signatures and bundles of that role.
  r.get(
    '/signing/public-key',
    wrap(async (req, res) => {
      const a = actorOf(res);
      const q = req.query as Record<string, unknown>;
      const gun = gunOf(q as { gun?: string; repository?: string }, '');
      const role = checkRole(q.role ?? 'targets');
      mayRead(a, gun, 'key.public');
      const { keyId, signer } = await service.publicKeyFor(gun, role);
      const pem = publicKeyObject(signer.key).export({ type: 'spki', format: 'pem' }).toString();
      if ((req.headers.accept ?? '').includes('application/json')) res.json({ gun, role, keyId, pem });
      else res.type('application/x-pem-file').set('X-Trustgate-Key-Id', keyId).send(pem);
    }),
  );

  r.use('/signing', (_req: Request, _res: Response, next: NextFunction) => next(new ApiError(404, 'NOT_FOUND', 'no such signing route')));
  r.use('/signing', (e: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    const err = e as { type?: string; status?: number };
    if (err?.type === 'entity.parse.failed')
      return void res.status(400).json({ error: { code: 'INVALID_JSON', message: 'the request body is not valid JSON' } });
    if (err?.type === 'entity.too.large')
      return void res.status(413).json({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'the request body is too large' } });
    if (e instanceof SigningInputError)
      return void res.status(400).json({ error: { code: 'INVALID_REQUEST', message: e.message, field: e.field } });
    if (e instanceof SigningError) return void res.status(e.status).json({ error: { code: e.code, message: e.message, ...e.extra } });
    // Other refusals of the JSON parser (unknown encoding or charset, corrupt gzip) fell through to 500.
    if (isBodyParserError(e))
      return void res
        .status(400)
        .json({ error: { code: 'INVALID_REQUEST', message: 'the request body could not be read: unsupported or corrupt encoding' } });
    const api = toApiError(e);
    // An outage fails every request alike: a warning each, not an error.
    if (api.status >= 500) deps.log?.(api.status === 503 ? 'warn' : 'error', 'signing request failed', { error: (e as Error)?.message });
    if (api.status === 401) res.setHeader('WWW-Authenticate', res.getHeader('WWW-Authenticate') ?? 'Bearer realm="trustgate"');
    res.status(api.status).json({ error: { code: api.code, message: api.message } });
  });
  return r;
}

export interface InspectReport {
  name: string;
  signedTags: Array<{ tag: string; digest: string; size: number; signers: string[] }>;
  signers: Array<{ name: string; keys: Array<{ id: string }>; threshold: number }>;
  administrativeKeys: Array<{ name: string; keys: Array<{ id: string }> }>;
  versions?: Record<string, number>;
  expiries?: Record<string, string>;
  verified: boolean;
  reason?: string;
  message?: string;
}

/** Notary's canonical ID of a delegation key (the plain key inside an x509 certificate). */
function canonicalId(raw: unknown, id: string): string {
  try {
    return canonicalKeyId(parseKey(raw));
  } catch {
    return id;
  }
}

/**
 * `docker trust inspect` in JSON, read from verified trust data: the tags released in `targets`
 * or `targets/releases` with their signers, the signers (every delegation but
 * `targets/releases`, with canonical key IDs) and the administrative keys (root, and the
 * repository key that signs `targets`).
 */
export async function inspect(service: SigningService, verifier: ImageVerifier, gun: string): Promise<InspectReport> {
  const rootFile = await service.editor.trust.current(gun, 'root');
  if (!rootFile) throw new SigningError(404, 'REPOSITORY_NOT_FOUND', `repository ${gun} has no trust data`);
  const root = Metadata.parse<RootBody>('root', rootFile.bytes).body;
  const admin = [
    { name: 'Root', keys: root.roles.root.keyids.map((id) => ({ id })) },
    { name: 'Repository', keys: root.roles.targets.keyids.map((id) => ({ id })) },
  ];
  const repo = await verifier.repository(gun);
  if (!repo.ok)
    return {
      name: gun,
      signedTags: [],
      signers: [],
      administrativeKeys: admin,
      verified: false,
      reason: repo.reason,
      message: repo.message,
    };
  const inPaths = (paths: string[], tag: string) => paths.some((p) => tag.startsWith(p));
  const rows = tagRows(
    [...repo.roles].map(
      ([name, role]) =>
        [name, Object.fromEntries(Object.entries(role.targets).filter(([t, fm]) => fm.hashes.sha256 && inPaths(role.paths, t)))] as const,
    ),
  );
  // Delegation keys come from the parents' delegation entries; names and key IDs as Docker shows them.
  const signers = new Map<string, InspectReport['signers'][number]>();
  const targetsFile = await service.editor.trust.current(gun, 'targets');
  const walk = async (body: TargetsBody | undefined) => {
    for (const d of body?.delegations.roles ?? []) {
      if (d.name !== 'targets/releases')
        signers.set(signerName(d.name), {
          name: signerName(d.name),
          keys: d.keyids.map((id) => ({ id: canonicalId(body!.delegations.keys[id], id) })),
          threshold: d.threshold,
        });
      const f = repo.roles.has(d.name) ? await service.editor.trust.current(gun, d.name) : undefined;
      if (f && d.name.split('/').length < 6) await walk(Metadata.parse<TargetsBody>(d.name, f.bytes).body);
    }
  };
  await walk(targetsFile && Metadata.parse<TargetsBody>('targets', targetsFile.bytes).body);
  return {
    name: gun,
    signedTags: releasedRows(rows).map(({ tag, digest, size, signers: s }) => ({ tag, digest, size, signers: s })),
    signers: [...signers.values()].sort((a, b) => naturalCompare(a.name, b.name)),
    administrativeKeys: admin,
    versions: repo.versions,
    expiries: repo.expiries,
    verified: true,
  };
}
