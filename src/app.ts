// Composition root: builds the store, keystore and trust service from configuration and wires
// the HTTP front. Tests build the same app with their own configuration.
import express from 'express';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StartupError, type Config } from './config/config.js';
import { openKeyStore } from './keystore/open.js';
import { createRegistryAuth, type NotaryDenial } from './auth/registry-token.js';
import { ANONYMOUS_ACTOR, createTrustgateAuth } from './auth/notary-auth.js';
import type { AuditActor } from './audit/log.js';
import { PgAuditTrail } from './audit/pg.js';
import { PgTokens } from './auth/tokens-pg.js';
import { LOCKS, PgState } from './state/pg.js';
import { PgPendingRecords } from './state/pending-records.js';
import type { PendingChange } from './trust/pending.js';
import { KeyStoreError, type KeyStore } from './keystore/types.js';
import { createLogger, type Logger } from './observability/log.js';
import { createNotaryHandler } from './notary/handler.js';
import { Metrics } from './observability/metrics.js';
import { ProxyActivity } from './observability/proxy-activity.js';
import { createFileDurable } from './state/durable.js';
import { openStore } from './storage/open.js';
import type { MetadataStore } from './storage/types.js';
import { auditNote, TrustService } from './trust/service.js';
import { reconcileJournal } from './trust/audit-journal.js';
import { createManagement, type Management, type SharedState } from './management/index.js';
import { createSigningForApp, type Signing } from './signing/wire.js';
import { NotaryErrors, sendError } from './http/errcode.js';
import { Probes } from './http/probes.js';
import { errorBody, notFound } from './http/api-error.js';
import { createDashboard, isDashboardPath } from './dashboard/static.js';

export interface App {
  config: Config;
  store: MetadataStore;
  keys: KeyStore;
  trust: TrustService;
  metrics: Metrics;
  log: Logger;
  /** Express app for the management API; the Notary API runs in front of it. */
  api: express.Express;
  /** The request listener to give to http(s).createServer. */
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  /** The clock the trust service uses (tests move it). */
  now: () => number;
  /** The key-management API under /api/v1 (tokens, audit log, pending changes). */
  management: Management;
  /** Signing for CI and release tools under /api/v1/signing (src/signing). */
  signing: Signing;
  /** /livez and /readyz, on this listener and the proxy's; `draining` marks shutdown. */
  probes: Probes;
  /** The registry proxy's refusals and cache hits (it writes, GET /api/v1/proxy/denials reads). */
  proxyActivity: ProxyActivity;
  close(): Promise<void>;
}

/**
 * The key-encryption passphrase: the configured one, else a random secret kept in the data
 * directory (0600), apart from the keys themselves, so a copy of the keys directory alone does
 * not reveal any key. A keystore already set up is never given a new secret (it would unlock
 * nothing): the start is refused instead. `made.path` is set when this call wrote the secret.
 */
export function resolvePassphrase(config: Config, _log: Logger, made: { path?: string } = {}): string {
  if (config.keyPassphrase) return config.keyPassphrase;
  const path = join(config.dataDir, 'keystore.secret');
  if (!existsSync(path)) {
    if (config.keysDir && (config.keystore ?? 'file') === 'file' && existsSync(join(config.keysDir, 'keystore.json')))
      throw new StartupError(
        `TRUSTGATE_KEY_PASSPHRASE is not set and ${path} does not exist, but the keystore in ${config.keysDir} already holds keys: ` +
          'set TRUSTGATE_KEY_PASSPHRASE to the passphrase they were sealed with, or restore keystore.secret from its backup',
        2,
      );
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    // Durable before any key is sealed under it; of racing first starts exactly one secret wins.
    if (createFileDurable(path, randomBytes(32).toString('base64') + '\n')) made.path = path;
  }
  return readFileSync(path, 'utf8').trim();
}

/** Where the configured keystore is, in the words of its settings. */
function keystorePlace(config: Config): string {
  if (config.keystore === 'keyv') return 'the keyv keystore at TRUSTGATE_KEYSTORE_URL';
  if (config.keystore === 'pkcs11') return `the PKCS#11 token ${JSON.stringify(config.pkcs11?.tokenLabel ?? '')}`;
  return `the keystore in ${config.keysDir} (TRUSTGATE_KEYS_DIR)`;
}

/** A keystore that would not open, as the start-up error that names the cause and the fix. */
function keystoreFailure(config: Config, e: unknown, madeSecret: boolean): StartupError {
  if (e instanceof StartupError) return e;
  const msg = (e as Error).message;
  const where = keystorePlace(config);
  if (e instanceof KeyStoreError && /wrong key-encryption passphrase/.test(msg)) {
    if (madeSecret)
      return new StartupError(
        `TRUSTGATE_KEY_PASSPHRASE is not set, but ${where} already holds keys: set it to the passphrase they were sealed with`,
        2,
        e,
      );
    const source = config.keyPassphrase
      ? 'TRUSTGATE_KEY_PASSPHRASE'
      : `${join(config.dataDir, 'keystore.secret')} (TRUSTGATE_KEY_PASSPHRASE is unset)`;
    return new StartupError(
      `cannot open ${where}: the key-encryption passphrase from ${source} is not the one its keys were sealed with; set TRUSTGATE_KEY_PASSPHRASE to that passphrase`,
      2,
      e,
    );
  }
  if (e instanceof KeyStoreError) return new StartupError(`cannot open ${where}: ${msg}`, 2, e);
  const code = (e as NodeJS.ErrnoException).code;
  const hint =
    code === 'EACCES' || code === 'EPERM'
      ? ': check the directory and its permissions'
      : config.keystore === 'keyv'
        ? ': check that the server at TRUSTGATE_KEYSTORE_URL is up and reachable'
        : '';
  return new StartupError(`cannot open ${where}: ${msg.split('\n')[0]}${hint}`, 1, e);
}

/** The metadata store of the configuration, or the start-up error saying why it did not open. */
async function openStoreForStart(config: Config, log: Logger): Promise<MetadataStore> {
  try {
    return await openStore({ dataDir: config.dataDir, log, ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}) });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const [where, hint] = config.databaseUrl
      ? ['PostgreSQL at TRUSTGATE_DATABASE_URL', 'check that the database is up, reachable, and that the URL names a user who may use it']
      : [`SQLite in ${config.dataDir}`, 'check that TRUSTGATE_DATA_DIR is a directory this user may write'];
    throw new StartupError(`cannot open the metadata store (${where}): ${msg}; ${hint}`, 1, e);
  }
}

/**
 * The passphrase with state in PostgreSQL: instances sharing a keyv keystore must seal with one
 * secret, so without TRUSTGATE_KEY_PASSPHRASE the generated one is kept in the database (a data
 * directory's older secret is taken as that one if the database has none yet).
 */
async function sharedPassphrase(config: Config, db: PgState, log: Logger, made: { path?: string }): Promise<string> {
  if (config.keyPassphrase || config.keystore !== 'keyv') return resolvePassphrase(config, log, made);
  const local = join(config.dataDir, 'keystore.secret');
  const seed = existsSync(local) ? readFileSync(local, 'utf8').trim() : undefined;
  const { value, created } = await db.secret('keystore.secret', () => seed ?? randomBytes(32).toString('base64'));
  if (created)
    log(
      'warn',
      'TRUSTGATE_KEY_PASSPHRASE is not set: the key-encryption secret of the shared keyv keystore is kept in TRUSTGATE_DATABASE_URL; set TRUSTGATE_KEY_PASSPHRASE on every instance to keep it apart from the database',
    );
  return value;
}

/** Tokens, the audit log and pending changes in PostgreSQL, for every instance of one database. */
function pgState(db: PgState, log: Logger, now: () => number): SharedState {
  return { tokens: new PgTokens(db, now), audit: new PgAuditTrail(db, log, now), pending: new PgPendingRecords<PendingChange>(db, now) };
}

/** dist/ui/ beside the built server, or (running from src/ under tsx) the last build's. */
function dashboardDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, 'ui'), join(here, '..', 'dist', 'ui')].find((d) => existsSync(join(d, 'index.html')));
}

export interface AppOverrides {
  store?: MetadataStore;
  keys?: KeyStore;
  log?: Logger;
  now?: () => number;
}

export async function createApp(config: Config, over: AppOverrides = {}): Promise<App> {
  const log = over.log ?? createLogger(config.logLevel);
  const store = over.store ?? (await openStoreForStart(config, log));
  const db = config.databaseUrl ? await PgState.open(config.databaseUrl) : undefined;
  const made: { path?: string } = {};
  let opened: Awaited<ReturnType<typeof openKeyStore>> | undefined;
  if (!over.keys) {
    const open = () => openKeyStore(config, () => (db ? sharedPassphrase(config, db, log, made) : resolvePassphrase(config, log, made)));
    try {
      // Instances starting together must not each create the shared keystore's KDF parameters.
      opened = db ? await db.exclusive(LOCKS.keystore, open) : await open();
    } catch (e) {
      if (made.path) rmSync(made.path, { force: true }); // it unlocks nothing: leave no stray secret behind
      if (!over.store) await store.close().catch(() => undefined);
      await db?.close().catch(() => undefined);
      throw keystoreFailure(config, e, !!made.path);
    }
    if (made.path)
      log(
        'warn',
        'TRUSTGATE_KEY_PASSPHRASE is not set: generated a key-encryption secret; back it up with the keys directory, but store it apart',
        { path: made.path },
      );
  }
  const keys = over.keys ?? opened!.keys;
  const trust = new TrustService(store, keys, { serverKeyAlgorithm: config.serverKeyAlgorithm, ...(over.now ? { now: over.now } : {}) });
  const metrics = new Metrics();
  const proxyActivity = new ProxyActivity(undefined, over.now ?? Date.now);
  // Refused Notary API tokens go to the audit log, which the management API (made below) owns.
  let auditDenial: ((d: NotaryDenial) => void) | undefined;
  // Who made each Notary API request let through, so its write is audited with its actor.
  const actors = new WeakMap<IncomingMessage, AuditActor>();
  const registryAuth = config.auth
    ? createRegistryAuth(
        config.auth,
        log,
        over.now,
        (d) => auditDenial?.(d),
        (req, subject) => actors.set(req, { id: 'registry-token', name: subject || 'unknown' }),
      )
    : undefined;
  let management: Management | undefined;
  const trustgateAuth =
    config.authMode === 'trustgate'
      ? createTrustgateAuth({
          tokens: { authenticate: async (t) => management?.tokens.authenticate(t) },
          anonymousRead: config.anonymousRead,
          ...(config.authRealm ? { realm: config.authRealm } : {}),
          log,
          audit: () => management?.audit,
          onGranted: (req, actor) => actors.set(req, actor),
        })
      : undefined;
  if (config.authMode === 'none')
    log(
      'warn',
      'TRUSTGATE_AUTH=none: the Notary API takes no credentials, so anyone who can reach it may publish, delete and rewrite trust data',
    );
  const notary = createNotaryHandler(trust, metrics, {
    maxBodyBytes: config.maxBodyBytes,
    gunPrefixes: config.gunPrefixes,
    cacheMaxAge: config.cacheMaxAge,
    ...(registryAuth ? { authorize: registryAuth.authorize } : {}),
    ...(trustgateAuth ? { authorize: trustgateAuth.authorize, anonymousReads: config.anonymousRead } : {}),
    auditNote: (req, action) => auditNote(actors.get(req) ?? ANONYMOUS_ACTOR, action, { detail: { api: 'notary' } }),
    onWrite: async (req, w) => {
      try {
        await management?.audit.append({
          actor: actors.get(req) ?? ANONYMOUS_ACTOR,
          action: w.action,
          outcome: 'success',
          gun: w.gun,
          ...(w.role !== undefined ? { role: w.role } : {}),
          ...(w.keyId !== undefined ? { keyId: w.keyId } : {}),
          detail: { api: 'notary', ...(w.files ? { files: w.files } : {}), ...(w.journal ? { journal: w.journal } : {}) },
        });
        // Only once the entry is on disk: a row left behind is appended at the next start.
        if (w.journal) trust.acknowledge(w.journal);
      } catch (e) {
        log('error', 'audit log write failed', { action: w.action, gun: w.gun, error: (e as Error).message });
      }
    },
    log,
  });

  const api = express();
  api.disable('x-powered-by');
  // The registry token endpoint (TRUSTGATE_AUTH_TOKEN_*), ahead of the management API's guard.
  if (registryAuth?.tokenEndpoint) api.get('/api/v1/token', (req, res, next) => void registryAuth.tokenEndpoint!(req, res).catch(next));
  if (trustgateAuth) api.get('/api/v1/token', (req, res) => trustgateAuth.tokenEndpoint(req, res));
  management = await createManagement({
    dataDir: config.dataDir,
    ...(store.backup ? { backup: (dest: string) => store.backup!(dest) } : {}),
    trust,
    keys,
    log,
    pendingTtlSeconds: config.pendingTtlSeconds,
    gunPrefixes: config.gunPrefixes,
    serverKeyAlgorithm: config.serverKeyAlgorithm,
    ...(over.now ? { now: over.now } : {}),
    tagSigning: () => signing.service,
    proxyActivity,
    ...(db ? { shared: pgState(db, log, over.now ?? Date.now) } : {}),
  });
  const mgmt = management;
  // Changes committed by a process that died before auditing them.
  await reconcileJournal(store, mgmt.audit, log);
  auditDenial = (d) =>
    mgmt.audit.appendDenial(
      {
        actor: d.subject !== undefined ? { id: 'registry-token', name: d.subject || 'unknown' } : { id: 'anonymous', name: 'anonymous' },
        action: 'auth.denied',
        outcome: 'denied',
        ...(d.gun !== undefined ? { gun: d.gun } : {}),
        detail: { api: 'notary', reason: d.error, why: d.reason, needs: d.needs, method: d.method },
      },
      { api: 'notary', reason: d.error },
    );
  // Signing routes first: the management router answers 404 for paths it does not know.
  const signing = createSigningForApp(config, { trust, keys, log, management: mgmt, ...(over.now ? { now: over.now } : {}) });
  api.use('/api/v1', signing.router);
  api.use('/api/v1', mgmt.router);
  // Anything no route claims: under /api/v1 the management API's 404, elsewhere notary's
  // catch-all answer, so each client sees the error vocabulary it expects.
  const fallthrough = (req: IncomingMessage, res: ServerResponse) => {
    if (!/^\/api\/v1(\/|\?|$)/.test(req.url ?? '')) return sendError(res, NotaryErrors.METADATA_NOT_FOUND);
    const body = JSON.stringify(errorBody(notFound('NOT_FOUND', 'no such endpoint (or not with this method): see openapi.yaml')));
    res.writeHead(404, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
    });
    res.end(body);
  };

  const probes = new Probes(
    {
      store: () => store.ping(),
      keystore: () => (keys.ping ? keys.ping() : keys.get('0'.repeat(64))),
    },
    log,
  );
  const dashboard = createDashboard(dashboardDir());
  const toApi = (req: IncomingMessage, res: ServerResponse) =>
    api(req as express.Request, res as express.Response, () => fallthrough(req, res));
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    let handled: boolean | Promise<boolean>;
    // The dashboard shares this origin (and its token): no answer here (metadata a signer wrote is
    // served as text/plain) may be sniffed into something a browser runs.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (req.url!.startsWith('/livez') || req.url!.startsWith('/readyz')) {
      if (probes.handle(req, res)) return;
    }
    if (isDashboardPath(req.url!)) return dashboard(req, res);
    try {
      handled = notary(req, res);
    } catch (e) {
      handled = Promise.reject(e as Error);
    }
    if (handled === true) return; // answered synchronously (the hot GET path)
    if (handled === false) return void toApi(req, res);
    handled
      .then((done) => {
        if (!done) toApi(req, res);
      })
      .catch((e: Error) => {
        log('error', 'unhandled request error', { error: e.message });
        if (!res.headersSent) sendError(res, NotaryErrors.UNKNOWN);
      });
  };

  return {
    config,
    store,
    keys,
    trust,
    metrics,
    log,
    api,
    listener,
    now: over.now ?? Date.now,
    management: mgmt,
    signing,
    probes,
    proxyActivity,
    close: async () => {
      signing.close();
      await mgmt.close().catch((e: Error) => log('warn', 'audit log refusal counts not written', { error: e.message }));
      await trust
        .flushAcks()
        .catch((e: Error) => log('warn', 'audit journal acknowledgements not written; the next start settles them', { error: e.message }));
      await store.close();
      await db?.close();
      await opened?.close();
    },
  };
}
