// What the proxy's resource handlers (manifests.ts, blobs.ts, uploads.ts, tags.ts, referrers.ts)
// share: the proxy's options, a request's context, the host helpers they call, and the registry
// name grammar (distribution/reference) the route patterns are built from.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from '../observability/log.js';
import type { ProxyActivity } from '../observability/proxy-activity.js';
import type { ProxyAuth, Principal, ProxyAction } from './auth.js';
import type { VerdictCache } from './cache.js';
import type { AttestationHook, AuditSink, CosignHook } from '../trust/hooks.js';
import type { ProxyMetrics } from './metrics.js';
import type { PolicySource, Rule } from './policy.js';
import type { PushSigner } from './signing.js';
import type { Upstream } from '../registry/client.js';
import type { Verifier } from '../trust/verifier.js';

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
export const NAME = `${COMPONENT}(?:/${COMPONENT})*`;
export const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
export const DIGEST = '[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+';
export const DIGEST_RE = new RegExp(`^${DIGEST}$`);
export const NAME_RE = new RegExp(`^${NAME}$`);

export interface ProxyOptions {
  upstream: Upstream;
  verifier: Verifier;
  cache: VerdictCache;
  policy: PolicySource;
  signer: PushSigner;
  auth: ProxyAuth;
  metrics: ProxyMetrics;
  log: Logger;
  /** Where refusals are kept for the management API (the root shares one with it). */
  activity?: ProxyActivity;
  /** Registry part of GUNs; default: the address the proxy listens on (host:port). */
  registryName?: string;
  /** Scheme clients use to reach the proxy (for rewritten Location headers). */
  scheme?: 'http' | 'https';
  /** Requests under `/v2/<gun>/_trust/` go here (the Notary API), so docker trust works at the proxy's address. */
  notary?: (req: IncomingMessage, res: ServerResponse) => void;
  audit?: AuditSink;
  cosign?: CosignHook;
  attestations?: AttestationHook;
  /** Answers /livez and /readyz (returns false for any other request). */
  probes?: { handle(req: IncomingMessage, res: ServerResponse): boolean };
  now?: () => number;
  /**
   * Bytes of verified manifests kept in memory (keyed by repository, digest and the client's
   * Accept, each checked against its digest when fetched), for `manifestCacheTtlMs`; 0 = fetch
   * every pull from the upstream.
   */
  manifestCacheBytes?: number;
  manifestCacheTtlMs?: number;
}

/** An upstream answer with its whole body. */
export interface Fetched {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A repository request let through: who asked, the policy rule, and the upstream scope its access grants. */
export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  repo: string;
  gun: string;
  rule: Rule;
  principal: Principal;
  /** `repository:<repo>:pull`, or `:pull,push` for a write. */
  scope: string;
}

/** The proxy's helpers the resource handlers call (RegistryProxy). */
export interface ProxyHost {
  readonly opts: ProxyOptions;
  gunFor(repo: string): string;
  /** The principal, or undefined once a 401/403 went out. */
  authorize(req: IncomingMessage, res: ServerResponse, action: ProxyAction | 'ping', gun?: string): Promise<Principal | undefined>;
  forward(req: IncomingMessage, res: ServerResponse, path: string, o: { scope: string; body?: boolean; blob?: boolean }): Promise<void>;
  responseHeaders(req: IncomingMessage, upstreamHeaders: IncomingHttpHeaders): OutgoingHttpHeaders;
  upstreamFailure(res: ServerResponse, e: Error, what: string): void;
  denyPush(actor: { id: string; name: string }, gun: string | undefined, detail: Record<string, string>): void;
  /** Whether the entry was written (never rejects). */
  audit(entry: Parameters<AuditSink['append']>[0]): Promise<boolean>;
}
