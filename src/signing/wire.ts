// Composition of the signing feature: the service over the trust service and keystore, the
// proxy's verifier, the upstream registry (when configured), the change pipeline (trust/changes.ts),
// and the REST router. app.ts calls this once with the shared token store and audit log.
import type { Router } from 'express';
import type { ProxyConfig } from '../config/proxy.js';
import type { AuditTrail } from '../audit/trail.js';
import type { Tokens } from '../auth/tokens.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import { Upstream } from '../registry/client.js';
import { Verifier } from '../trust/verifier.js';
import type { TrustChanges } from '../trust/changes.js';
import type { TrustService } from '../trust/service.js';
import type { AttestationHook, CosignHook } from '../trust/hooks.js';
import { cosignHook } from './cosign-hook.js';
import { attestationHook } from './attestation-hook.js';
import { UpstreamRegistry, type RegistryClient } from '../registry/artifacts.js';
import { signingRouter } from './routes.js';
import { SigningService, defaultUpstreamRepo } from '../trust/tag-signing.js';
import type { ImageVerifier } from '../trust/verify-report.js';
import type { BundleOptions } from '../core/crypto/sigstore.js';
import { tsaBundleOptions } from '../tsa/client.js';

export interface SigningDeps {
  trust: TrustService;
  keys: KeyStore;
  tokens: Tokens;
  audit: AuditTrail;
  log: Logger;
  /** The change pipeline, shared with the management API and sign-on-push. */
  changes: TrustChanges;
  /** The proxy's verifier, shared so verdicts and caches are the same; made here when absent. */
  verifier?: Verifier;
  /** The proxy's upstream client, or its URL. */
  upstream?: Upstream | string;
  /** Refuse digests the upstream does not have. */
  checkUpstream?: boolean;
  /** How bundles are made (the TSA that timestamps them). */
  bundles?: BundleOptions;
  /** GUN for a bare repository name, and the upstream repository for a GUN (the proxy's naming). */
  gunFor?: (repository: string) => string;
  upstreamRepo?: (gun: string) => string;
  maxBodyBytes?: number;
  /** Items one batch may hold (default MAX_BATCH_ITEMS). */
  maxBatch?: number;
  now?: () => number;
}

export interface Signing {
  service: SigningService;
  verifier: ImageVerifier;
  registry?: RegistryClient;
  /** Cosign-format verification for the proxy (policy `cosign: true`); needs the upstream. */
  cosignHook?: CosignHook;
  /** Attestation verification for the proxy (policy `require.attestations`); needs the upstream. */
  attestationHook?: AttestationHook;
  router: Router;
  close(): void;
}

export function createSigning(d: SigningDeps): Signing {
  const verifier = d.verifier ?? new Verifier(d.trust, { ...(d.now ? { now: d.now } : {}) });
  const ownUpstream = typeof d.upstream === 'string' ? new Upstream({ url: d.upstream }) : undefined;
  const upstream = ownUpstream ?? (d.upstream as Upstream | undefined);
  const registry = upstream ? new UpstreamRegistry(upstream) : undefined;
  const service = new SigningService({
    changes: d.changes,
    verifier,
    ...(registry ? { registry } : {}),
    ...(d.upstreamRepo ? { upstreamRepo: d.upstreamRepo } : {}),
    checkUpstream: d.checkUpstream ?? false,
    ...(d.bundles ? { bundles: d.bundles } : {}),
    log: d.log,
    ...(d.now ? { now: d.now } : {}),
  });
  const attestations = registry ? attestationHook({ trust: d.trust, verifier, registry }) : undefined;
  const router = signingRouter({
    service,
    verifier,
    tokens: d.tokens,
    audit: d.audit,
    log: d.log,
    ...(d.gunFor ? { gunFor: d.gunFor } : {}),
    ...(d.maxBodyBytes ? { maxBodyBytes: d.maxBodyBytes } : {}),
    ...(d.maxBatch ? { maxBatch: d.maxBatch } : {}),
    ...(attestations ? { onAttested: (gun: string) => attestations.written(gun) } : {}),
  });
  const hook = registry
    ? cosignHook({
        trust: d.trust,
        verifier: verifier as ImageVerifier & Pick<Verifier, 'failure'>,
        registry,
        ...(d.now ? { now: d.now } : {}),
      })
    : undefined;
  return {
    service,
    verifier,
    ...(registry ? { registry } : {}),
    ...(hook ? { cosignHook: hook } : {}),
    ...(attestations ? { attestationHook: attestations } : {}),
    router,
    close: () => ownUpstream?.close(),
  };
}

/** What createApp hands over: its services, and the management API's tokens, audit log and change pipeline. */
export interface AppSigningDeps {
  trust: TrustService;
  keys: KeyStore;
  log: Logger;
  management: { tokens: Tokens; audit: AuditTrail; changes: TrustChanges };
  now?: () => number;
}

/** The settings the signing feature reads (app.ts's Config has them). */
export interface SigningSettings {
  proxy?: Pick<
    ProxyConfig,
    'registryName' | 'listen' | 'upstream' | 'upstreamTimeoutMs' | 'upstreamUsername' | 'upstreamPassword' | 'upstreamToken'
  >;
  signCheckUpstream: boolean;
  maxBodyBytes: number;
  signMaxBatch: number;
  /** TRUSTGATE_TSA_URL and TRUSTGATE_TSA_CA (DER, timeStamping certificate first). */
  tsa?: { url: string; chain?: Buffer[] };
}

/**
 * The signing feature as the app runs it. With the proxy configured (TRUSTGATE_UPSTREAM), its
 * upstream registry is used for sizes, upstream checks and registry-side signatures, and bare
 * repository names map to GUNs as the proxy names them (`<registry name>/<repository>`).
 */
export function createSigningForApp(config: SigningSettings, d: AppSigningDeps): Signing {
  const px = config.proxy;
  const registryName = px
    ? (px.registryName ?? `${px.listen.host.includes(':') ? `[${px.listen.host}]` : px.listen.host}:${px.listen.port}`)
    : undefined;
  const upstream = px
    ? new Upstream({
        url: px.upstream,
        timeoutMs: px.upstreamTimeoutMs,
        ...(px.upstreamUsername !== undefined ? { username: px.upstreamUsername, password: px.upstreamPassword ?? '' } : {}),
        ...(px.upstreamToken ? { token: px.upstreamToken } : {}),
      })
    : undefined;
  const signing = createSigning({
    trust: d.trust,
    keys: d.keys,
    tokens: d.management.tokens,
    audit: d.management.audit,
    changes: d.management.changes,
    log: d.log,
    ...(upstream ? { upstream } : {}),
    checkUpstream: config.signCheckUpstream,
    ...(config.tsa ? { bundles: tsaBundleOptions(config.tsa) } : {}),
    ...(registryName
      ? {
          gunFor: (repo: string) => `${registryName}/${repo}`,
          upstreamRepo: (gun: string) =>
            gun.startsWith(`${registryName}/`) ? gun.slice(registryName.length + 1) : defaultUpstreamRepo(gun),
        }
      : {}),
    maxBodyBytes: config.maxBodyBytes,
    maxBatch: config.signMaxBatch,
    ...(d.now ? { now: d.now } : {}),
  });
  return { ...signing, close: () => upstream?.close() };
}
