// Manifests, where the proxy enforces trust. A tag is served only as the digest its trust data
// signs, fetched from the upstream by that digest and checked byte for byte; a digest only when it
// is signed, a child of a signed index, or an artifact of an allowed type (artifacts.ts) whose
// subject is served. Pushed tags are signed as the policy says.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ociDigest } from '../core/digest.js';
import { fail, type TargetRequirement } from '../core/tuf/verify.js';
import { BodyError, readBody as readRequestBody } from '../http/body.js';
import { checkArtifact } from './artifacts.js';
import { BoundedMap } from '../core/bounded-map.js';
import { ManifestCache } from './cache.js';
import { DIGEST_RE, type Ctx, type Fetched, type ProxyHost, type ProxyOptions } from './context.js';
import { DAPI, E, send } from './errors.js';
import { requirementFor, type Rule } from './policy.js';
import { REFERRERS_TAG, ReferrerRoutes } from './referrers.js';
import { Upstream, UpstreamError, endToEnd } from '../registry/client.js';
import type { Verdict } from '../trust/verifier.js';

/** cosign's tag for the signature (and attestation, SBOM) of `sha256:<hex>`. */
const SIGNATURE_TAG = /^sha256-([0-9a-f]{64})\.(sig|att|sbom)$/;
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** How many artifacts deep a subject chain may go (a signature of an attestation of an image: 2). */
const MAX_ARTIFACT_DEPTH = 2;
/** Every manifest type, for fetches the proxy makes for itself (index children, subjects). */
const ALL_MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** GET/HEAD, PUT and DELETE of `/v2/<name>/manifests/<reference>`, and the state they keep. */
export class ManifestRoutes {
  /** Children of signed indexes, by index digest: content-addressed, so kept as long as there is room. */
  private children = new BoundedMap<string, Map<string, number>>(4096);
  private manifests: ManifestCache;
  private readonly opts: ProxyOptions;
  /** The referrers API and the fallback tag (referrers.ts), which ask this class whether a subject is served. */
  readonly referrers: ReferrerRoutes;

  constructor(private readonly host: ProxyHost) {
    this.opts = host.opts;
    this.referrers = new ReferrerRoutes(host, this);
    this.manifests = new ManifestCache(
      this.opts.manifestCacheBytes ?? 0,
      this.opts.manifestCacheTtlMs ?? 60_000,
      this.opts.now ?? Date.now,
    );
  }

  // The host's helpers, under the names the handlers below call.
  private forward(...a: Parameters<ProxyHost['forward']>) {
    return this.host.forward(...a);
  }
  private upstreamFailure(...a: Parameters<ProxyHost['upstreamFailure']>) {
    return this.host.upstreamFailure(...a);
  }
  private responseHeaders(...a: Parameters<ProxyHost['responseHeaders']>) {
    return this.host.responseHeaders(...a);
  }
  private denyPush(...a: Parameters<ProxyHost['denyPush']>) {
    return this.host.denyPush(...a);
  }
  private audit(...a: Parameters<ProxyHost['audit']>) {
    return this.host.audit(...a);
  }

  deleteManifest(ctx: Ctx, url: string): Promise<void> {
    this.manifests.forget(ctx.repo);
    return this.forward(ctx.req, ctx.res, url, { scope: ctx.scope });
  }

  // ---------------------------------------------------------------------------------------------
  // Pull enforcement

  async pullManifest(ctx: Ctx, ref: string, url: string): Promise<void> {
    const { req, res, rule } = ctx;
    req.resume();
    if (rule.mode === 'off') {
      this.count(rule, 'passed', 'off');
      return this.forward(req, res, url, { scope: `repository:${ctx.repo}:pull` });
    }
    const { require } = requirement(rule);
    const sig = SIGNATURE_TAG.exec(ref);
    let notArtifact: string | undefined;
    const index = REFERRERS_TAG.exec(ref);
    if (index) {
      // The referrers tag schema's index of a digest: served when that digest is.
      const r = await this.referrers.indexTag(ctx, ref, url, `sha256:${index[1]}`);
      if (r === 'answered') return;
      notArtifact = r;
    }
    if (sig) {
      // A cosign signature (or attestation, SBOM) tag: served as an artifact of the digest it
      // names, or else only as any other tag is.
      const r = await this.artifactTag(ctx, ref, url, `sha256:${sig[1]}`, require);
      if (r === 'answered') return;
      notArtifact = r;
    }
    let verdict = await this.verdictFor(ctx, ref);
    if (!verdict.ok && notArtifact)
      verdict = { ...verdict, message: `${verdict.message ?? 'not verified'}; not served as an artifact: ${notArtifact}` };
    if (!verdict.ok) return this.refuse(ctx, ref, url, verdict);
    return this.serveVerified(ctx, ref, url, verdict);
  }

  /**
   * Serves a `sha256-<hex>.sig|.att|.sbom` tag when its manifest is an artifact of an allowed type
   * whose subject (or, without one, the digest `named` by the tag) is served; the bytes checked
   * are the bytes sent. Otherwise says why not ('answered' when a reply went out).
   */
  private async artifactTag(ctx: Ctx, ref: string, url: string, named: string, require: TargetRequirement): Promise<'answered' | string> {
    const { req, res } = ctx;
    const unavailable = (v: Verdict): 'answered' => {
      void this.refuse(ctx, ref, url, v);
      return 'answered';
    };
    let got: Fetched;
    try {
      got = await this.fetchManifest(ctx.repo, ref, req.headers.accept);
    } catch (e) {
      this.upstreamFailure(res, e as Error, `manifest ${ctx.repo}:${ref}`);
      return 'answered';
    }
    if (got.status !== 200) {
      // cosign asks for the tag before signing and verifying: a missing one is relayed when the
      // digest it would be about is served.
      if (got.status >= 500)
        return unavailable(this.opts.verifier.failure(ctx.gun, ref, fail('unavailable', `upstream registry answered ${got.status}`)));
      if (got.status < 400) return `the upstream answered ${got.status}`;
      const parent = await this.servedSubject(ctx, named, require);
      if (!parent.ok) return parent.reason === 'unavailable' ? unavailable(parent) : `the upstream answered ${got.status}`;
      this.relayUpstream(ctx, got);
      return 'answered';
    }
    const art = checkArtifact(parseObject(got.body), ctx.rule.artifactTypes);
    if (!art.ok) return art.why;
    const subject = art.subject ?? named;
    if (!DIGEST_RE.test(subject)) return `its subject ${subject} is not a digest`;
    const parent = await this.servedSubject(ctx, subject, require, 1);
    if (!parent.ok)
      return parent.reason === 'unavailable'
        ? unavailable(parent)
        : `its subject ${subject} is not served: ${parent.message ?? parent.reason}`;
    const { length: _l, ...rest } = parent;
    const digest = ociDigest(got.body);
    this.serveManifest(
      ctx,
      { ...rest, digest, evidence: { ...parent.evidence, reference: ref, via: 'signature', parent: subject } },
      got.headers['content-type'],
      got.body,
    );
    return 'answered';
  }

  /**
   * The verdict a pull of `ref` (a tag or digest) gets: the TUF check, then cosign signatures and
   * attestations as the rule says. referrers.ts asks it whether a subject is served.
   */
  async verdictFor(ctx: Ctx, ref: string): Promise<Verdict> {
    const { require, key } = requirement(ctx.rule);
    let v = DIGEST_RE.test(ref)
      ? await this.decideDigest(ctx, ref, require)
      : await this.opts.cache.get(ctx.gun, `tag:${ref}|${key}`, () => this.opts.verifier.verifyTag(ctx.gun, ref, require));
    if (ctx.rule.signatures !== 'tuf' && v.reason !== 'unavailable') v = await this.applyCosign(ctx, ref, v);
    if (v.ok && ctx.rule.attestations.length) v = await this.applyAttestations(ctx, ref, v);
    return v;
  }

  /**
   * Whether the subject of an artifact is served: decideDigest, then the rule's cosign check, so
   * that under `signatures: cosign` (or `either`, `both`) the artifacts of a digest a cosign
   * signature admits are served as they are for a TUF-signed one. Attestations are not asked of it.
   */
  private async servedSubject(ctx: Ctx, subject: string, require: TargetRequirement, depth = 0): Promise<Verdict> {
    const v = await this.decideDigest(ctx, subject, require, depth);
    return ctx.rule.signatures !== 'tuf' && v.reason !== 'unavailable' ? this.applyCosign(ctx, subject, v) : v;
  }

  /** Combines the TUF verdict with a cosign-format check as the rule's `signatures` says. */
  private async applyCosign(ctx: Ctx, ref: string, tuf: Verdict): Promise<Verdict> {
    const mode = ctx.rule.signatures;
    // An artifact of a served subject (servedSubject made the rule's checks of that subject): it has no signature of its own.
    if (tuf.ok && tuf.evidence.via === 'referrer') return tuf;
    if (mode === 'either' && tuf.ok) return tuf;
    if (mode === 'both' && !tuf.ok) return tuf;
    const hook = this.opts.cosign;
    if (!hook) {
      return mode === 'either'
        ? tuf
        : this.opts.verifier.failure(
            ctx.gun,
            ref,
            fail('unavailable', 'the policy needs cosign-format signatures, and no cosign verifier is configured'),
          );
    }
    // For `both`, the cosign signature must be over the very digest the TUF data signed.
    const reference = mode === 'both' ? tuf.digest! : ref;
    const cosign = await hook
      .verify({
        gun: ctx.gun,
        repository: ctx.repo,
        reference,
        pulled: ref,
        ...(ctx.rule.signedIdentity ? { identity: ctx.rule.signedIdentity } : {}),
      })
      .catch((e: Error) => this.opts.verifier.failure(ctx.gun, ref, fail('unavailable', `cosign verification failed: ${e.message}`)));
    if (mode !== 'both' || !cosign.ok) return cosign;
    if (cosign.digest !== tuf.digest)
      return this.opts.verifier.failure(
        ctx.gun,
        ref,
        fail('digest-mismatch', 'the cosign signature and the TUF trust data name different digests'),
      );
    return { ...tuf, signers: [...tuf.signers, ...cosign.signers] };
  }

  /**
   * Requires the rule's attestations of an admitted digest (an index child may rely on its
   * index's). Artifacts of a served digest are exempt: an attestation needs no attestation.
   * Cached per digest and requirement, dropped with the GUN's other verdicts.
   */
  private async applyAttestations(ctx: Ctx, ref: string, v: Verdict): Promise<Verdict> {
    const via = v.evidence.via;
    if (via === 'referrer' || via === 'signature') return v;
    const { verifier } = this.opts;
    const hook = this.opts.attestations;
    if (!hook)
      return verifier.failure(
        ctx.gun,
        ref,
        fail('unavailable', 'the policy requires attestations, and no attestation verifier is configured'),
      );
    const require = ctx.rule.attestations;
    const key = attestationKey(ctx.rule);
    const subjects = [v.digest!, ...(via === 'index' && v.evidence.parent ? [v.evidence.parent] : [])];
    let denied: Verdict | undefined;
    for (const digest of subjects) {
      const a = await this.opts.cache.get(ctx.gun, `att:${digest}|${key}`, async () => {
        const r = await hook
          .verify({ gun: ctx.gun, repository: ctx.repo, digest, require })
          .catch((e: Error) => ({ ok: false as const, unavailable: true, message: `attestation check failed: ${e.message}` }));
        if (!r.ok)
          return {
            ...verifier.failure(ctx.gun, digest, fail(r.unavailable ? 'unavailable' : 'attestation-missing', r.message)),
            ...(v.expiresAtMs !== undefined ? { expiresAtMs: v.expiresAtMs } : {}),
          };
        return {
          ok: true,
          digest,
          signers: r.matched.map((m) => m.keyId),
          evidence: {
            gun: ctx.gun,
            reference: digest,
            attestations: r.matched,
            checkedAt: new Date((this.opts.now ?? Date.now)()).toISOString(),
          },
          ...(v.expiresAtMs !== undefined ? { expiresAtMs: v.expiresAtMs } : {}),
        };
      });
      if (a.ok) return { ...v, evidence: { ...v.evidence, attestations: a.evidence.attestations ?? [] } };
      if (a.reason === 'unavailable') return a;
      denied ??= a;
    }
    return { ...denied!, digest: v.digest! };
  }

  private count(rule: Rule, result: string, reason: string): void {
    this.opts.metrics.decision(rule.mode, result, reason);
  }

  /** Keeps a refusal for the management API's denials page (observability/proxy-activity.ts). */
  private recordRefusal(ctx: Ctx, ref: string, outcome: 'denied' | 'unavailable', reason: string, message: string | undefined): void {
    this.opts.activity?.record({
      repository: ctx.repo,
      gun: ctx.gun,
      reference: ref,
      reason,
      message: message ?? 'not verified',
      outcome,
      actor: ctx.principal.name,
    });
  }

  /** Relays an upstream answer other than 200 (a 404, say) as the registry gave it, counted as `upstream`. */
  relayUpstream(ctx: Ctx, got: Pick<Fetched, 'status' | 'headers' | 'body'>): void {
    this.count(ctx.rule, 'upstream', String(got.status));
    ctx.res.writeHead(got.status, {
      ...DAPI,
      ...endToEnd(got.headers, ['www-authenticate', 'content-length']),
      'content-length': got.body.length,
    });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : got.body);
  }

  /** A failed verdict: 403 (or 503 when unavailable) in enforce mode; served anyway in audit mode. */
  refuse(ctx: Ctx, ref: string, url: string, v: Verdict): Promise<void> | void {
    const reason = v.reason ?? 'not-signed';
    if (reason === 'unavailable') {
      this.count(ctx.rule, 'unavailable', reason);
      this.recordRefusal(ctx, ref, 'unavailable', reason, v.message);
      this.opts.log('warn', 'proxy could not verify; failing closed', { gun: ctx.gun, reference: ref, message: v.message });
      return send(
        ctx.res,
        E.UNAVAILABLE,
        { reason, repository: ctx.repo, reference: ref },
        `cannot verify ${ctx.repo}:${ref}: ${v.message}`,
      );
    }
    if (ctx.rule.mode === 'audit') {
      this.count(ctx.rule, 'audit-violation', reason);
      this.opts.metrics.auditViolations.inc({ repository: ctx.repo, reason });
      this.opts.log('warn', 'audit mode: serving unverified content', { gun: ctx.gun, reference: ref, reason, message: v.message });
      return this.forward(ctx.req, ctx.res, url, { scope: `repository:${ctx.repo}:pull` });
    }
    this.count(ctx.rule, 'denied', reason);
    this.recordRefusal(ctx, ref, 'denied', reason, v.message);
    this.opts.log('info', 'pull denied', { gun: ctx.gun, reference: ref, reason, message: v.message, actor: ctx.principal.name });
    send(
      ctx.res,
      E.DENIED,
      { reason, ...(v.role ? { role: v.role } : {}), repository: ctx.repo, reference: ref, gun: ctx.gun },
      `${reason}: ${v.message ?? 'not verified'}`,
    );
  }

  /** Fetches the manifest by its verified digest and serves it if its bytes match. */
  private async serveVerified(ctx: Ctx, ref: string, url: string, v: Verdict): Promise<void> {
    const { req, res } = ctx;
    const digest = v.digest!;
    const cached = this.manifests.get(ctx.repo, digest, req.headers.accept);
    if (cached) return this.serveManifest(ctx, v, cached.contentType, cached.body);
    let got: Fetched;
    try {
      got = await this.fetchManifest(ctx.repo, digest, req.headers.accept);
    } catch (e) {
      return this.upstreamFailure(res, e as Error, `manifest ${ctx.repo}@${digest}`);
    }
    const { status, headers, body } = got;
    if (status >= 300 && status < 400) {
      // Relayed, a redirect would have the client fetch bytes nobody checked against the digest.
      return this.upstreamFailure(
        res,
        new UpstreamError(`the upstream answered ${status} (a redirect) for ${digest}; manifests are served only as bytes checked here`),
        `manifest ${ctx.repo}@${digest}`,
      );
    }
    if (status !== 200) {
      // The signed digest is not (or not in an accepted form) upstream: relay the registry's answer.
      this.relayUpstream(ctx, { status, headers, body });
      return;
    }
    const actual = ociDigest(body);
    const lengthOk = v.length === undefined || v.length === body.length;
    if (actual !== digest || !lengthOk) {
      const message =
        actual !== digest
          ? `upstream content for ${digest} hashes to ${actual}`
          : `upstream content for ${digest} is ${body.length} bytes, signed length is ${v.length}`;
      return this.refuse(ctx, ref, url, { ...v, ok: false, reason: 'digest-mismatch', message });
    }
    const contentType = headers['content-type'];
    this.manifests.set(ctx.repo, digest, req.headers.accept, contentType, body);
    return this.serveManifest(ctx, v, contentType, body);
  }

  private serveManifest(ctx: Ctx, v: Verdict, contentType: string | undefined, body: Buffer): void {
    this.count(ctx.rule, 'allowed', v.evidence.via ?? 'tag');
    ctx.res.writeHead(200, {
      ...DAPI,
      'Content-Type': contentType ?? 'application/vnd.oci.image.manifest.v1+json',
      'Content-Length': body.length,
      'Docker-Content-Digest': v.digest!,
      Etag: `"${v.digest!}"`,
    });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
  }

  /** GET a manifest by digest from the upstream, whole (bounded). */
  private async fetchManifest(repo: string, digest: string, accept: string | undefined): Promise<Fetched> {
    const got = await this.opts.upstream.getWhole(
      { path: `/v2/${repo}/manifests/${digest}`, headers: accept ? { accept } : {}, scope: `repository:${repo}:pull` },
      MAX_MANIFEST_BYTES,
    );
    if (got.status === 401) throw new UpstreamError("the upstream registry refused trustgate's credentials");
    return got;
  }

  /** Parsed JSON of a manifest the upstream holds under `digest`, checked against the digest. */
  private async manifestJson(repo: string, digest: string): Promise<Record<string, unknown> | undefined> {
    const got = await this.fetchManifest(repo, digest, ALL_MANIFEST_TYPES);
    // A failing upstream is not an answer about the digest (it must not become a cached denial).
    if (got.status >= 500) throw new UpstreamError(`the upstream answered ${got.status} for ${digest}`);
    if (got.status !== 200 || ociDigest(got.body) !== digest) return undefined;
    return parseObject(got.body);
  }

  /** Digests (and sizes) an index lists; empty for anything else. Cached: content-addressed. */
  private async childrenOf(repo: string, index: string): Promise<Map<string, number>> {
    const hit = this.children.get(index);
    if (hit) return hit;
    const doc = await this.manifestJson(repo, index);
    const kids = new Map<string, number>();
    if (doc && Array.isArray(doc.manifests)) {
      for (const d of doc.manifests as Array<{ digest?: unknown; size?: unknown }>) {
        if (typeof d?.digest === 'string') kids.set(d.digest, typeof d.size === 'number' ? d.size : -1);
      }
    }
    if (doc) this.children.set(index, kids);
    return kids;
  }

  /**
   * Whether a digest may be served: signed for a tag; else a child of a signed index; else an
   * artifact of a type the rule allows (signature, attestation, SBOM; never a runnable image)
   * whose `subject` may be served. Cached (with the depth: deeper, fewer subjects are followed).
   */
  private decideDigest(ctx: Ctx, digest: string, require: TargetRequirement, depth = 0): Promise<Verdict> {
    const { artifacts } = requirement(ctx.rule);
    return this.opts.cache.get(ctx.gun, `digest:${digest}|${reqKey(require)}|${artifacts}${depth ? `|d${depth}` : ''}`, async () => {
      const { verifier } = this.opts;
      const direct = await verifier.verifyDigest(ctx.gun, digest, require);
      if (direct.ok || direct.reason !== 'not-signed') return direct;
      let why: string | undefined;
      try {
        const signed = await verifier.signedDigests(ctx.gun, require);
        if (!signed.ok) return verifier.failure(ctx.gun, digest, signed);
        let n = 0;
        for (const [parent, t] of signed.digests) {
          if (++n > 256) break; // bounded work per decision
          const size = (await this.childrenOf(ctx.repo, parent)).get(digest);
          if (size === undefined) continue;
          const v = verifier.allow(ctx.gun, digest, t, signed.repo, { via: 'index', parent, tags: [t.name] });
          return { ...v, digest, ...(size >= 0 ? { length: size } : {}) };
        }
        if (depth < MAX_ARTIFACT_DEPTH) {
          const art = checkArtifact(await this.manifestJson(ctx.repo, digest), ctx.rule.artifactTypes);
          if (!art.ok) why = art.why;
          else if (!art.subject || !DIGEST_RE.test(art.subject)) why = 'it is an artifact without a subject digest';
          else {
            const parent = await this.servedSubject(ctx, art.subject, require, depth + 1);
            if (parent.ok) {
              const { length: _l, ...rest } = parent;
              return { ...rest, digest, evidence: { ...parent.evidence, reference: digest, via: 'referrer', parent: art.subject } };
            }
            if (parent.reason === 'unavailable') return parent;
            why = `its subject ${art.subject} is not served`;
          }
        }
      } catch (e) {
        return verifier.failure(ctx.gun, digest, fail('unavailable', `upstream registry unavailable: ${(e as Error).message}`));
      }
      return {
        ...direct,
        message: `${digest} is not signed for any tag in ${(require.roles ?? []).join(', ')}, not listed by a signed index, and not an artifact of a served digest${why ? ` (${why})` : ''}`,
      };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Push and sign

  async pushManifest(ctx: Ctx, ref: string, url: string): Promise<void> {
    const { req, res, rule } = ctx;
    let body: Buffer;
    try {
      // Not Upstream.readBody: it destroys the request past the limit, and with it the socket
      // the 413 must go out on. This one drains the rest, so the client still sending reads it.
      body = await readRequestBody(req, MAX_MANIFEST_BYTES);
    } catch (e) {
      if (e instanceof BodyError && e.kind === 'TOO_LARGE')
        return send(res, E.SIZE_INVALID, { limit: MAX_MANIFEST_BYTES }, undefined, { Connection: 'close' });
      return void res.destroy(); // the request broke off: nobody to answer
    }
    const skip = this.signSkipReason(ref, body, rule);
    if (!skip) {
      // Refused before anything is written upstream, or the tag would land there unsigned.
      const why = await this.opts.signer.refusal(ctx.gun, rule.signOnPush!, ctx.principal, { cosign: writesCosign(rule) });
      if (why) {
        this.denyPush(ctx.principal, ctx.gun, { reason: why, method: 'PUT', tag: ref, role: rule.signOnPush! });
        return send(
          res,
          E.DENIED,
          { reason: 'cannot-sign', repository: ctx.repo, tag: ref, role: rule.signOnPush! },
          `the policy signs pushes to ${ctx.repo} into ${rule.signOnPush!}, and this token cannot: ${why}`,
        );
      }
    }
    let up: IncomingMessage;
    try {
      up = await this.opts.upstream.request({
        method: 'PUT',
        path: url,
        headers: endToEnd(req.headers, ['content-length']),
        data: body,
        scope: `repository:${ctx.repo}:pull,push`,
      });
    } catch (e) {
      return this.upstreamFailure(res, e as Error, `PUT manifest ${ctx.repo}:${ref}`);
    }
    const headers = this.responseHeaders(req, up.headers);
    const upBody = await Upstream.readBody(up, 1024 * 1024).catch(() => Buffer.alloc(0));
    const relay = () => {
      res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': upBody.length });
      res.end(upBody);
    };
    if (up.statusCode !== 201) return relay();
    if (skip) {
      this.opts.metrics.signedPushes.inc({ result: 'skipped' });
      this.opts.log('debug', 'push not signed', { gun: ctx.gun, reference: ref, why: skip });
      return relay();
    }
    const digest = ociDigest(body);
    const role = rule.signOnPush!;
    const actor = { id: ctx.principal.id, name: ctx.principal.name };
    try {
      const upstreamDigest = up.headers['docker-content-digest'];
      if (upstreamDigest && upstreamDigest !== digest)
        throw new Error(`the upstream stored ${upstreamDigest}, the pushed bytes hash to ${digest}`);
      const r = await this.opts.signer.sign(
        ctx.gun,
        role,
        ref,
        digest,
        body.length,
        ctx.principal,
        writesCosign(rule) ? { cosign: { repo: ctx.repo } } : {},
      );
      this.opts.metrics.signedPushes.inc({ result: 'signed' });
      this.opts.log('info', 'signed pushed tag', { gun: ctx.gun, tag: ref, digest, role, initialised: r.initialised, actor: actor.name });
      const audited = await this.audit({
        actor,
        action: 'proxy.sign',
        outcome: 'success',
        gun: ctx.gun,
        role,
        detail: {
          tag: ref,
          digest,
          length: body.length,
          initialised: r.initialised,
          ...(r.cosign ? { cosign: r.cosign.tag } : {}),
          ...(r.journal ? { journal: r.journal } : {}),
        },
      });
      // Only once the entry is written: a journal row left behind is appended at the next start.
      if (r.journal && audited) this.opts.signer.changes.trust.acknowledge(r.journal);
      // The cache holds verdicts of the old trust data; the trust 'change' event drops them too.
      this.opts.cache.invalidate(ctx.gun);
      return relay();
    } catch (e) {
      const message = (e as Error).message;
      this.opts.metrics.signedPushes.inc({ result: 'failed' });
      this.opts.log('error', 'signing a pushed tag failed', { gun: ctx.gun, tag: ref, digest, role, error: message });
      await this.audit({
        actor,
        action: 'proxy.sign',
        outcome: 'failure',
        gun: ctx.gun,
        role,
        detail: { tag: ref, digest, error: message },
      });
      return send(
        res,
        E.UNKNOWN,
        { reason: 'signing-failed', repository: ctx.repo, tag: ref, digest, role, error: message },
        `the manifest was stored upstream as ${digest} but signing it into ${role} failed: ${message}`,
      );
    }
  }

  /** Why a push is not signed, or undefined when it is. */
  private signSkipReason(ref: string, body: Buffer, rule: Rule): string | undefined {
    if (!rule.signOnPush) return 'the policy signs no pushes here';
    if (DIGEST_RE.test(ref)) return 'pushed by digest';
    if (SIGNATURE_TAG.test(ref)) return 'a signature artifact';
    // Signed, the index would make every manifest it lists a child of a signed index.
    if (REFERRERS_TAG.test(ref)) return 'a referrers index (the tag schema)';
    try {
      const doc = JSON.parse(body.toString('utf8')) as { subject?: unknown };
      if (doc && typeof doc === 'object' && doc.subject) return 'a referrer (has a subject)';
    } catch {
      // the upstream accepted it; not JSON we understand, sign it as given
    }
    return undefined;
  }
}

const reqKey = (r: TargetRequirement) => JSON.stringify([r.roles ?? [], r.signers ?? [], r.threshold ?? 1]);

/** A rule's pull requirement, its cache-key form and its artifact types' key, worked out once per rule of a loaded policy. */
const requirements = new WeakMap<Rule, { require: TargetRequirement; key: string; artifacts: string }>();
function requirement(rule: Rule): { require: TargetRequirement; key: string; artifacts: string } {
  let r = requirements.get(rule);
  if (!r) {
    const require = requirementFor(rule);
    // What decides an artifact: its allowed types, and how its subject is checked (servedSubject).
    const artifacts = createHash('sha256')
      .update(JSON.stringify([[...rule.artifactTypes].sort(), rule.signatures, rule.signedIdentity ?? null]))
      .digest('hex')
      .slice(0, 16);
    requirements.set(rule, (r = { require, key: reqKey(require), artifacts }));
  }
  return r;
}

/** A rule's attestation requirements as a cache-key part, worked out once per rule. */
const attestationKeys = new WeakMap<Rule, string>();
function attestationKey(rule: Rule): string {
  let k = attestationKeys.get(rule);
  if (!k) attestationKeys.set(rule, (k = createHash('sha256').update(JSON.stringify(rule.attestations)).digest('hex').slice(0, 16)));
  return k;
}

/** A JSON object, or undefined for anything else. */
export function parseObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const doc = JSON.parse(body.toString('utf8')) as unknown;
    return doc && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether pulls under `rule` need a cosign signature, so sign-on-push writes one too. */
const writesCosign = (rule: Rule) => rule.signatures === 'cosign' || rule.signatures === 'both';
