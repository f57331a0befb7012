// CLI commands over the signing API: sign (one image or a batch file), verify, inspect, revoke,
// promote and attest.
import { readFileSync } from 'node:fs';
import { intOpt, needPositionals, opt, opts, UsageError, type Parsed } from './args.js';
import { CliError, EXIT } from './client.js';
import { prettyInspect, type InspectBody } from './format.js';
import type { Command, Context } from './command.js';
import {
  checkDigest,
  checkPredicate,
  checkPredicateType,
  checkRole,
  checkSize,
  checkTag,
  parseImageRef,
  SigningInputError,
  type ImageRef,
} from '../http/signing-input.js';
import { CYCLONEDX_BOM, MAX_PREDICATE_BYTES, SLSA_PROVENANCE_V1, SPDX_DOCUMENT, predicateProblem } from '../core/crypto/predicates.js';

/** Input errors found on the client are usage errors: nothing was sent. */
function local<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SigningInputError) throw new UsageError(e.message);
    throw e;
  }
}

/** `gun` for an image name with a registry host, `repository` for a bare path (the server's naming). */
const where = (ref: ImageRef) => (ref.host ? { gun: ref.name } : { repository: ref.name });

/** The manifest size from a registry (HEAD by digest), or undefined when it cannot be read. */
async function sizeFromRegistry(registry: string, ref: ImageRef, digest: string): Promise<number | undefined> {
  const base = registry.replace(/\/+$/, '');
  try {
    const res = await fetch(`${base}/v2/${ref.path}/manifests/${digest}`, {
      method: 'HEAD',
      headers: {
        Accept:
          'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json',
      },
      signal: AbortSignal.timeout(30_000),
    });
    if (!res.ok) return undefined;
    if (res.headers.get('docker-content-digest') && res.headers.get('docker-content-digest') !== digest) return undefined;
    const n = Number(res.headers.get('content-length'));
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

interface SignAnswer {
  status: 'published' | 'pending';
  published: Array<{ gun: string; role: string; version: number; tags: number }>;
  pending: Array<{ id: string; gun: string; roles: Array<{ role: string; needed: number; keyIds: string[] }> }>;
  items: Array<{
    gun: string;
    tag: string;
    digest: string;
    size: number;
    role: string;
    cosign?: { tag: string };
    bundle?: { manifestDigest: string };
  }>;
  message?: string;
}

/** The tags one published role took: the answer's items of that repository and role. */
const signedIn = (a: SignAnswer, p: SignAnswer['published'][number]) => [
  ...new Set(a.items.filter((i) => i.gun === p.gun && i.role === p.role).map((i) => i.tag)),
];

/** Items listed one per line at most; more are counted (`--json` has them all). */
const MAX_LINES = 20;

/** `signed[k]`: the tags `a.published[k]` took (a merged batch passes them per request). */
function reportSign(ctx: Context, a: SignAnswer, signed = a.published.map((p) => signedIn(a, p))): number {
  if (ctx.json) ctx.out(JSON.stringify(a, null, 2) + '\n');
  else {
    // `published[].tags` counts every tag the role lists; the tags signed now are the items.
    for (const [k, p] of a.published.entries()) {
      const tags = signed[k]!;
      const names =
        tags.length <= MAX_LINES ? tags.join(', ') : `${tags.slice(0, MAX_LINES).join(', ')}, ... (${tags.length - MAX_LINES} more)`;
      ctx.out(`signed ${tags.length} tag(s) in ${p.role} of ${p.gun}: ${names}; ${p.role} is now version ${p.version}\n`);
    }
    if (a.status === 'published') {
      for (const i of a.items.slice(0, MAX_LINES)) {
        const extra = [i.cosign ? `cosign ${i.cosign.tag}` : '', i.bundle ? `bundle ${i.bundle.manifestDigest.slice(0, 19)}` : '']
          .filter(Boolean)
          .join(', ');
        ctx.out(`  ${i.gun}:${i.tag} -> ${i.digest} (${i.size} bytes)${extra ? ` [${extra}]` : ''}\n`);
      }
      if (a.items.length > MAX_LINES) ctx.out(`  ... and ${a.items.length - MAX_LINES} more (--json lists them all)\n`);
    }
    for (const p of a.pending) {
      for (const r of p.roles)
        ctx.out(
          `pending: ${r.role} of ${p.gun} needs ${r.needed} more signature(s) from ${r.keyIds.map((k) => k.slice(0, 12)).join(', ')} (change ${p.id})\n`,
        );
    }
  }
  if (a.status === 'pending') {
    ctx.err(`trustgate: not signed yet: the change is pending further signatures (trustgate exits 3 until it is published)\n`);
    return EXIT.DENIED;
  }
  return EXIT.OK;
}

const SIGN_USAGE = 'sign IMAGE@DIGEST --tag T [--tag T2...] [--role R] [--size N] [--cosign] [--bundle] | sign --batch FILE';

const sign: Command = {
  name: 'sign',
  usage: SIGN_USAGE,
  summary: 'sign an image digest under one or more tags (or a batch file of tags) into a role',
  options: {
    tag: { value: true, repeat: true, short: 't' },
    role: { value: true, short: 'r' },
    size: { value: true },
    custom: { value: true },
    registry: { value: true },
    cosign: {},
    bundle: {},
    batch: { value: true },
    gun: { value: true },
    chunk: { value: true },
  },
  async run(ctx, p) {
    if (opt(p, 'batch')) return signBatch(ctx, p);
    const [image] = needPositionals(p, ['IMAGE@DIGEST'], SIGN_USAGE);
    const ref = local(() => parseImageRef(image!));
    if (!ref.digest) throw new UsageError(`${image} has no @sha256:<digest>: sign names the exact manifest (IMAGE@sha256:...)`);
    const tags = opts(p, 'tag');
    if (ref.tag) tags.unshift(ref.tag);
    if (tags.length === 0) throw new UsageError('give --tag (the tag to sign the digest as)');
    local(() => tags.forEach((t) => checkTag(t, '--tag')));
    const role = opt(p, 'role');
    if (role) local(() => checkRole(role, '--role'));
    let size = intOpt(p, 'size');
    const registry = opt(p, 'registry') ?? ctx.env.TRUSTGATE_REGISTRY;
    if (size === undefined && registry) size = await sizeFromRegistry(registry, ref, ref.digest);
    let custom: unknown;
    const c = opt(p, 'custom');
    if (c) {
      try {
        custom = JSON.parse(c);
      } catch {
        throw new UsageError('--custom must be a JSON object');
      }
    }
    const base = {
      ...where(ref),
      digest: ref.digest,
      ...(size !== undefined ? { size } : {}),
      ...(role ? { role } : {}),
      ...(custom !== undefined ? { custom } : {}),
    };
    const flags = { ...(p.flags.has('cosign') ? { cosign: true } : {}), ...(p.flags.has('bundle') ? { bundle: true } : {}) };
    const api = ctx.api();
    const res =
      tags.length === 1
        ? await api.call<SignAnswer>('POST', '/api/v1/signing/sign', { ...base, tag: tags[0], ...flags })
        : await api.call<SignAnswer>('POST', '/api/v1/signing/batch', { items: tags.map((t) => ({ ...base, tag: t })), ...flags });
    return reportSign(ctx, res.body);
  },
};

interface BatchItem {
  gun?: string;
  repository?: string;
  image?: string;
  tag?: string;
  digest?: string;
  size?: number;
  role?: string;
  custom?: unknown;
}

/**
 * A batch file: `{"gun"?, "role"?, "items": [...]}` or a bare list of items. An item gives
 * `tag`, `digest`, `size` and optionally `gun`/`repository`/`role`/`custom`, or `image`
 * (`host/repo@sha256:...` or `host/repo:tag@sha256:...`) in place of gun and digest.
 */
async function signBatch(ctx: Context, p: Parsed): Promise<number> {
  if (p.positionals.length) throw new UsageError(`sign --batch takes no image argument\nusage: ${SIGN_USAGE}`);
  const file = opt(p, 'batch')!;
  let doc: unknown;
  try {
    doc = JSON.parse(file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CliError(`cannot read batch file ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const top = (Array.isArray(doc) ? { items: doc } : doc) as {
    gun?: string;
    repository?: string;
    role?: string;
    items?: BatchItem[];
    cosign?: boolean;
    bundle?: boolean;
  };
  if (!top || !Array.isArray(top.items) || top.items.length === 0)
    throw new UsageError(`${file}: expected {"items":[{"tag","digest","size"},...]} or a list of such items`);
  const role = opt(p, 'role') ?? top.role;
  const gun = opt(p, 'gun') ?? top.gun;
  const total = top.items.length;
  // Check every item locally first: a bad line is reported with its index, and nothing is sent.
  const items = top.items.map((it, i) =>
    local(() => {
      const at = `items[${i}]`;
      const o: BatchItem = { ...it };
      if (o.image) {
        const ref = parseImageRef(o.image, `${at}.image`);
        if (!ref.digest && !o.digest) throw new SigningInputError(`${at}.image`, `${at}.image has no @sha256:<digest>`);
        Object.assign(o, where(ref));
        o.digest = ref.digest ?? o.digest;
        if (ref.tag && !o.tag) o.tag = ref.tag;
        delete o.image;
      }
      checkTag(o.tag, `${at}.tag`);
      checkDigest(o.digest, `${at}.digest`);
      if (o.size !== undefined) checkSize(o.size, `${at}.size`);
      if (o.role !== undefined) checkRole(o.role, `${at}.role`);
      if (!o.gun && !o.repository && !gun && !top.repository)
        throw new SigningInputError(`${at}.gun`, `${at} names no repository (give "gun" in the item or the file, or --gun)`);
      return o;
    }),
  );
  const chunk = intOpt(p, 'chunk') ?? 1000; // the server's default batch limit (TRUSTGATE_SIGN_MAX_BATCH)
  const chunks: BatchItem[][] = [];
  for (let i = 0; i < items.length; i += chunk) chunks.push(items.slice(i, i + chunk));
  ctx.progress(`checked ${total} item(s); signing in ${chunks.length} request(s)${chunks.length > 1 ? ` of up to ${chunk}` : ''}`);
  const api = ctx.api();
  const all: SignAnswer = { status: 'published', published: [], pending: [], items: [] };
  const signed: string[][] = [];
  let done = 0;
  const started = Date.now();
  for (const [k, part] of chunks.entries()) {
    const t0 = Date.now();
    const res = await api.call<SignAnswer>('POST', '/api/v1/signing/batch', {
      ...(gun ? { gun } : top.repository ? { repository: top.repository } : {}),
      ...(role ? { role } : {}),
      items: part,
      ...(p.flags.has('cosign') || top.cosign ? { cosign: true } : {}),
      ...(p.flags.has('bundle') || top.bundle ? { bundle: true } : {}),
    });
    done += part.length;
    all.published.push(...res.body.published);
    signed.push(...res.body.published.map((x) => signedIn(res.body, x)));
    all.pending.push(...res.body.pending);
    all.items.push(...res.body.items);
    if (res.body.status === 'pending') all.status = 'pending';
    const pct = Math.round((done / total) * 100);
    const versions = res.body.published.map((x) => `${x.role} v${x.version}`).join(', ');
    ctx.progress(
      `[${k + 1}/${chunks.length}] ${done}/${total} (${pct}%) ${res.body.status}${versions ? `: ${versions}` : ''} in ${((Date.now() - t0) / 1000).toFixed(2)}s`,
    );
    if (res.body.status === 'pending') break;
  }
  const secs = (Date.now() - started) / 1000;
  ctx.progress(
    `${all.status === 'published' ? 'signed' : 'sent'} ${done} item(s) in ${secs.toFixed(2)}s (${Math.round(done / Math.max(secs, 0.001))}/s)`,
  );
  return reportSign(ctx, all, signed);
}

interface VerifyReport {
  verdict: 'signed' | 'denied';
  image: string;
  digest?: string;
  size?: number;
  tags?: string[];
  roles: Array<{ role: string; version: number; expires: string; keyIds: string[] }>;
  validUntil?: string;
  reason?: string;
  message?: string;
}

const verify: Command = {
  name: 'verify',
  usage: 'verify IMAGE[:TAG|@DIGEST] [--role R]...',
  summary: 'check that an image is signed (exit 0) or not (exit 3), with the evidence',
  options: { role: { value: true, repeat: true, short: 'r' } },
  async run(ctx, p) {
    const [image] = needPositionals(p, ['IMAGE'], this.usage);
    const ref = local(() => parseImageRef(image!));
    if (!ref.tag && !ref.digest) throw new UsageError(`${image} needs a :tag or an @sha256:<digest>`);
    const roles = opts(p, 'role');
    local(() => roles.forEach((r) => checkRole(r, '--role')));
    const res = await ctx.api().call<VerifyReport>('POST', '/api/v1/signing/verify', { image, ...(roles.length ? { roles } : {}) });
    const r = res.body;
    if (ctx.json) ctx.out(JSON.stringify(r, null, 2) + '\n');
    else if (r.verdict === 'signed') {
      ctx.out(`${image} is signed: ${r.digest}${r.size ? ` (${r.size} bytes)` : ''}${r.tags ? ` as ${r.tags.join(', ')}` : ''}\n`);
      for (const x of r.roles)
        ctx.out(`  ${x.role} v${x.version}, expires ${x.expires}, keys ${x.keyIds.map((k) => k.slice(0, 12)).join(', ')}\n`);
      if (r.validUntil) ctx.out(`  verdict valid until ${r.validUntil}\n`);
    }
    if (r.verdict !== 'signed') {
      ctx.err(`trustgate: ${image} is not trusted: ${r.reason ?? 'denied'}: ${r.message ?? ''}\n`);
      return EXIT.DENIED;
    }
    return EXIT.OK;
  },
};

const inspect: Command = {
  name: 'inspect',
  usage: 'inspect REPO [--json]',
  summary: 'signed tags, signers and keys of a repository, as docker trust inspect --pretty prints them',
  options: {},
  async run(ctx, p) {
    const [repo] = needPositionals(p, ['REPO'], this.usage);
    const ref = local(() => parseImageRef(repo!, 'REPO'));
    if (ref.tag || ref.digest) throw new UsageError('inspect takes a repository name, without :tag or @digest');
    const q = new URLSearchParams(ref.host ? { gun: ref.name } : { repository: ref.name });
    const res = await ctx.api().call<InspectBody>('GET', `/api/v1/signing/inspect?${q}`);
    if (res.body.verified === false)
      ctx.err(`trustgate: the trust data of ${repo} does not verify: ${res.body.message ?? 'unknown reason'}\n`);
    ctx.out(ctx.json ? JSON.stringify(res.body, null, 2) + '\n' : prettyInspect(res.body, repo));
    return res.body.verified === false ? EXIT.DENIED : EXIT.OK;
  },
};

const revoke: Command = {
  name: 'revoke',
  usage: 'revoke IMAGE:TAG [--role R]',
  summary: "remove a tag's signature from one role, or from every role that signs it",
  options: { role: { value: true, short: 'r' } },
  async run(ctx, p) {
    const [image] = needPositionals(p, ['IMAGE:TAG'], this.usage);
    const ref = local(() => parseImageRef(image!));
    if (!ref.tag) throw new UsageError(`${image} has no :tag to revoke`);
    const role = opt(p, 'role');
    if (role) local(() => checkRole(role, '--role'));
    const res = await ctx.api().call<{
      status: string;
      removed: Array<{ role: string }>;
      published: Array<{ role: string; version: number }>;
      pending?: { id: string };
    }>('POST', '/api/v1/signing/revoke', {
      ...where(ref),
      tag: ref.tag,
      ...(role ? { role } : {}),
    });
    if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2) + '\n');
    else if (res.body.status === 'pending')
      ctx.out(`revocation of ${ref.tag} is pending further signatures (change ${res.body.pending?.id})\n`);
    else
      ctx.out(
        `revoked ${ref.tag} from ${res.body.removed.map((r) => r.role).join(', ')} (${res.body.published.map((x) => `${x.role} v${x.version}`).join(', ')})\n`,
      );
    return res.body.status === 'pending' ? EXIT.DENIED : EXIT.OK;
  },
};

const promote: Command = {
  name: 'promote',
  usage: 'promote IMAGE:TAG --to-role R [--to-tag T] [--from-role R] [--to-repo REPO]',
  summary: 'sign an already signed digest under another tag/role, after verifying the source',
  options: {
    'to-role': { value: true },
    'to-tag': { value: true },
    'from-role': { value: true },
    'to-repo': { value: true },
    cosign: {},
    bundle: {},
  },
  async run(ctx, p) {
    const [image] = needPositionals(p, ['IMAGE:TAG'], this.usage);
    const ref = local(() => parseImageRef(image!));
    if (!ref.tag) throw new UsageError(`${image} has no :tag to promote`);
    const toRole = opt(p, 'to-role');
    if (!toRole) throw new UsageError('give --to-role (e.g. targets/releases)');
    const toRepo = opt(p, 'to-repo');
    const toRef = toRepo ? local(() => parseImageRef(toRepo, '--to-repo')) : undefined;
    const res = await ctx.api().call<SignAnswer & { source: { digest: string } }>('POST', '/api/v1/signing/promote', {
      ...where(ref),
      from: { tag: ref.tag, ...(opt(p, 'from-role') ? { role: opt(p, 'from-role') } : {}) },
      to: { role: toRole, ...(opt(p, 'to-tag') ? { tag: opt(p, 'to-tag') } : {}), ...(toRef ? where(toRef) : {}) },
      ...(p.flags.has('cosign') ? { cosign: true } : {}),
      ...(p.flags.has('bundle') ? { bundle: true } : {}),
    });
    return reportSign(ctx, res.body);
  },
};

/** cosign's names for the well-known predicate types; anything else is given as its URI. */
const PREDICATE_TYPES: Record<string, string> = {
  slsaprovenance1: SLSA_PROVENANCE_V1,
  spdx: SPDX_DOCUMENT,
  spdxjson: SPDX_DOCUMENT,
  cyclonedx: CYCLONEDX_BOM,
};

const attest: Command = {
  name: 'attest',
  usage: 'attest IMAGE@DIGEST --predicate FILE --type TYPE [--role R]',
  summary: 'sign an in-toto attestation (SLSA provenance, SBOM, ...) about an image digest and attach it in the registry',
  options: { predicate: { value: true }, type: { value: true }, role: { value: true, short: 'r' } },
  async run(ctx, p) {
    const [image] = needPositionals(p, ['IMAGE@DIGEST'], this.usage);
    const ref = local(() => parseImageRef(image!));
    if (!ref.digest) throw new UsageError(`${image} has no @sha256:<digest>: an attestation is about the exact manifest`);
    const file = opt(p, 'predicate');
    if (!file) throw new UsageError('give --predicate FILE (the predicate JSON; - reads stdin)');
    const typeOpt = opt(p, 'type');
    if (!typeOpt) throw new UsageError(`give --type (${Object.keys(PREDICATE_TYPES).join(', ')} or a predicate type URI)`);
    const predicateType = local(() => checkPredicateType(PREDICATE_TYPES[typeOpt] ?? typeOpt, '--type'));
    const role = opt(p, 'role');
    if (role) local(() => checkRole(role, '--role'));
    let text: string;
    try {
      text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
    } catch (e) {
      throw new CliError(`cannot read predicate file ${file}: ${(e as Error).message.split('\n')[0]}`);
    }
    let predicate: unknown;
    try {
      predicate = JSON.parse(text);
    } catch {
      throw new UsageError(`${file} is not JSON`);
    }
    local(() => checkPredicate(predicate, MAX_PREDICATE_BYTES, (x) => predicateProblem(predicateType, x), '--predicate'));
    const res = await ctx
      .api()
      .call<{ gun: string; digest: string; keyId: string; cosign: { tag: string }; bundle: { manifestDigest: string } }>(
        'POST',
        '/api/v1/signing/attest',
        { ...where(ref), digest: ref.digest, predicateType, predicate, ...(role ? { role } : {}) },
      );
    const a = res.body;
    if (ctx.json) ctx.out(JSON.stringify(a, null, 2) + '\n');
    else
      ctx.out(
        `attested ${a.gun}@${a.digest} (${predicateType}) with key ${a.keyId.slice(0, 12)}: cosign ${a.cosign.tag}, bundle ${a.bundle.manifestDigest}\n`,
      );
    return EXIT.OK;
  },
};

const G = 'trustgate.example.com:5000/team/app';
const HELP: Record<string, Pick<Command, 'details' | 'examples'>> = {
  sign: {
    details:
      "The size is read from the server's upstream registry when --size is left out (or from --registry URL). " +
      '--cosign and --bundle also write a cosign signature and a Sigstore bundle to the upstream. A batch file is ' +
      '{"gun","role","items":[{"tag","digest","size"}...]}; every item is checked before anything is sent.',
    examples: [`trustgate sign ${G}@sha256:3e1f... --tag 1.4.0 --role targets/releases`, 'trustgate sign --batch tags.json --chunk 500'],
  },
  verify: { examples: [`trustgate verify ${G}:1.4.0`, `trustgate verify ${G}@sha256:3e1f... --role targets/releases`] },
  inspect: { examples: [`trustgate inspect ${G}`] },
  revoke: { examples: [`trustgate revoke ${G}:1.4.0 --role targets/releases`] },
  promote: { examples: [`trustgate promote ${G}:rc-7 --to-role targets/releases --to-tag 1.4.0`] },
  attest: {
    details:
      'TYPE is slsaprovenance1, spdxjson, cyclonedx or any predicate type URI. The statement names the image digest, which ' +
      "the server's upstream registry must hold; it is signed with an ECDSA key of the role (default targets) and pushed as " +
      'a cosign attestation (sha256-<hex>.att) and a Sigstore bundle referrer. Trust data is not changed.',
    examples: [`trustgate attest ${G}@sha256:3e1f... --predicate provenance.json --type slsaprovenance1`],
  },
};

export const signCommands: Command[] = [sign, verify, inspect, revoke, promote, attest];
for (const c of signCommands) Object.assign(c, HELP[c.name]);
