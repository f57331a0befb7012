// The proxy's policy: which repositories are enforced, audited or passed through, which roles or
// signers must have signed, and which role pushes are signed into. Read from a YAML or JSON file
// (schema: api/policy.schema.json), reloaded when the file changes; a file that fails to parse
// or validate is refused with a clear log line and the policy in force stays.
import { Ajv2020 } from 'ajv/dist/2020.js';
import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { compareSpecificity, compileGunPattern, GunPatternError, type GunPattern } from '../core/tuf/gun-pattern.js';
import { DEFAULT_ROLES, type TargetRequirement } from '../core/tuf/verify.js';
import type { Logger } from '../observability/log.js';
import type { AttestationRequirement } from '../trust/hooks.js';
import { SLSA_PROVENANCE_V1, SLSA_V1_FIELDS } from '../core/crypto/predicates.js';
import { DEFAULT_ARTIFACT_TYPES, NOT_ARTIFACT_TYPE } from './artifacts.js';
import { identityProblem, type SignedIdentity } from '../core/signed-identity.js';

export type Mode = 'enforce' | 'audit' | 'off';
/** Which signatures admit a pull: TUF trust data, cosign-format signatures, either, or both. */
export type SignatureMode = 'tuf' | 'cosign' | 'either' | 'both';

export interface RepoSettings {
  mode: Mode;
  require: TargetRequirement;
  /** Role pushed tags are signed into; null = do not sign. */
  signOnPush: string | null;
  signatures: SignatureMode;
  /** Media types a manifest may have to be served as an artifact (signature, attestation, SBOM) of a digest the proxy serves; lower case. */
  artifactTypes: ReadonlySet<string>;
  /** Which identity a cosign signature may claim (containers-policy.json's signedIdentity); undefined: the default. */
  signedIdentity?: SignedIdentity;
  /** Attestations a pulled digest must have (`require.attestations`); empty: none. */
  attestations: readonly AttestationRequirement[];
}

export interface Rule extends RepoSettings {
  /** The pattern that matched, or `(default)`. */
  pattern: string;
}

export interface Policy {
  /** Where it came from: a file path, or `(built-in)`. */
  source: string;
  rules: CompiledRule[];
  default: Rule;
}

interface CompiledRule extends Rule {
  match: GunPattern;
  index: number;
}

export class PolicyError extends Error {
  override name = 'PolicyError';
}

const DEFAULT_ARTIFACTS: ReadonlySet<string> = new Set(DEFAULT_ARTIFACT_TYPES);

/** With no policy file: enforce everything, sign every push into `targets`, initialising trust. */
export const BUILTIN_POLICY: Policy = {
  source: '(built-in)',
  rules: [],
  default: {
    pattern: '(default)',
    mode: 'enforce',
    require: {},
    signOnPush: 'targets',
    signatures: 'tuf',
    artifactTypes: DEFAULT_ARTIFACTS,
    attestations: [],
  },
};

/** A policy file's `default` when it has none: enforce with nothing signed on push, so unsigned is denied. */
const FILE_DEFAULT: RepoSettings = {
  mode: 'enforce',
  require: {},
  signOnPush: null,
  signatures: 'tuf',
  artifactTypes: DEFAULT_ARTIFACTS,
  attestations: [],
};

interface RawSettings {
  mode?: Mode;
  require?: { roles?: string[]; signers?: string[]; threshold?: number; attestations?: AttestationRequirement[] };
  signOnPush?: string | null;
  signatures?: SignatureMode;
  /** Shorthand for `signatures: either` (true) or `tuf` (false). */
  cosign?: boolean;
  artifactTypes?: string[];
  signedIdentity?: SignedIdentity;
}
interface RawPolicy {
  version: 1;
  default?: RawSettings;
  repositories?: Array<RawSettings & { pattern: string }>;
}

let validator: (((v: unknown) => boolean) & { errors?: Array<{ instancePath: string; message?: string }> | null }) | undefined;
function validate(doc: unknown): void {
  if (!validator) {
    const schema = JSON.parse(readFileSync(new URL('../../api/policy.schema.json', import.meta.url), 'utf8')) as object;
    validator = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
  }
  if (!validator(doc)) {
    const errs = (validator.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
    throw new PolicyError(`policy does not match api/policy.schema.json: ${[...new Set(errs)].join('; ')}`);
  }
}

/** A rule's pattern in the grammar token scopes use (src/core/tuf/gun-pattern.ts), or PolicyError. */
function compilePattern(pattern: string): GunPattern {
  try {
    return compileGunPattern(pattern);
  } catch (e) {
    if (e instanceof GunPatternError) throw new PolicyError(`policy pattern ${JSON.stringify(pattern)} is not valid: ${e.message}`);
    throw e;
  }
}

function artifactTypes(raw: string[] | undefined, base: ReadonlySet<string>): ReadonlySet<string> {
  if (!raw) return base;
  const types = raw.map((t) => t.toLowerCase());
  // The schema refuses these too; checked here as well because serving one would pass runnable images.
  const bad = types.find((t) => NOT_ARTIFACT_TYPE.test(t));
  if (bad)
    throw new PolicyError(`policy artifactTypes may not list ${bad}: image configs, layers, manifests and indexes are never artifacts`);
  return new Set(types);
}

/** Refuses SLSA v1 conditions that cannot match: its fields live under buildDefinition and runDetails. */
function attestations(raw: AttestationRequirement[] | undefined): readonly AttestationRequirement[] {
  for (const a of raw ?? []) {
    if (a.predicateType !== SLSA_PROVENANCE_V1) continue;
    const bad = Object.keys(a.conditions ?? {}).find((p) => !SLSA_V1_FIELDS.includes(p.split('.')[0]!));
    if (bad)
      throw new PolicyError(
        `policy condition ${JSON.stringify(bad)} cannot match SLSA provenance v1, whose predicate has only ${SLSA_V1_FIELDS.join(' and ')} (the builder is runDetails.builder.id)`,
      );
  }
  return raw ?? [];
}

function settings(raw: RawSettings | undefined, base: RepoSettings): RepoSettings {
  const require: TargetRequirement = {};
  if (raw?.require?.roles) require.roles = raw.require.roles;
  if (raw?.require?.signers) require.signers = raw.require.signers;
  if (raw?.require?.threshold) require.threshold = raw.require.threshold;
  const identity = raw?.signedIdentity ?? base.signedIdentity;
  const bad = identity && identityProblem(identity);
  if (bad) throw new PolicyError(`policy signedIdentity: ${bad}`);
  return {
    mode: raw?.mode ?? base.mode,
    require: raw?.require ? require : base.require,
    signOnPush: raw?.signOnPush === undefined ? base.signOnPush : raw.signOnPush,
    signatures: raw?.signatures ?? (raw?.cosign === undefined ? base.signatures : raw.cosign ? 'either' : 'tuf'),
    artifactTypes: artifactTypes(raw?.artifactTypes, base.artifactTypes),
    ...(identity ? { signedIdentity: identity } : {}),
    attestations: raw?.require ? attestations(raw.require.attestations) : base.attestations,
  };
}

/** Parses and validates policy text (YAML is a superset of JSON, so both are read the same way). */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    throw new PolicyError(`policy is not valid YAML or JSON: ${(e as Error).message}`);
  }
  validate(doc);
  const raw = doc as RawPolicy;
  const def: Rule = { pattern: '(default)', ...settings(raw.default, FILE_DEFAULT) };
  const rules = (raw.repositories ?? []).map((r, index): CompiledRule => {
    const s = settings(r, { ...FILE_DEFAULT, mode: 'enforce' });
    return { pattern: r.pattern, ...s, match: compilePattern(r.pattern), index };
  });
  // Most specific first: exact names, then more literal characters, then file order.
  rules.sort((a, b) => compareSpecificity(a.match.specificity, b.match.specificity) || a.index - b.index);
  return { source, rules, default: def };
}

/** The rule for a repository path (without the registry name). */
export function ruleFor(policy: Policy, repo: string): Rule {
  return policy.rules.find((r) => r.match.test(repo)) ?? policy.default;
}

/**
 * The requirement a pull is checked against: the policy's, or by default docker's
 * `targets/releases` then `targets`, preceded by the sign-on-push role when it is another
 * delegation (so what the proxy signs is what it serves).
 */
export function requirementFor(rule: Rule): TargetRequirement {
  if (rule.require.roles?.length) return rule.require;
  const own = rule.signOnPush && !DEFAULT_ROLES.includes(rule.signOnPush) ? [rule.signOnPush] : [];
  const roles = [...own, ...DEFAULT_ROLES];
  return { ...rule.require, roles };
}

/** What a stat said about the policy file; a change in any of these means it must be read again. */
interface FileState {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

const sameFile = (a: FileState, b: FileState) => a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

/**
 * A file changed this recently may change again within the same timestamp tick without its stat
 * changing, so until it is older than this its text is compared on every check.
 */
const RACY_MS = 2000;

/**
 * Holds the policy in force and reloads it when the file changes. `check()` (run every `pollMs`,
 * and callable directly) stats the file and re-reads it when it differs from the state taken just
 * before the last read, so a change made between reading and watching is never missed; a new text
 * is parsed and validated, an invalid one refused once with a log line while the policy in force
 * stays.
 */
export class PolicySource {
  private policy: Policy;
  private listeners: Array<(p: Policy) => void> = [];
  /** The file's state as of the last read (taken before reading it). */
  private seen?: FileState;
  /** The text last read: the policy in force, or a refused one (refused once, not on every check). */
  private text?: string;
  private problem?: string;
  private timer?: NodeJS.Timeout;

  constructor(
    readonly path: string | undefined,
    private log: Logger,
    pollMs = 1000,
  ) {
    if (!path) {
      this.policy = BUILTIN_POLICY;
      return;
    }
    const st = this.stat(path);
    const text = this.readText(path);
    this.policy = parsePolicy(text, path);
    this.seen = st;
    this.text = text;
    this.timer = setInterval(() => this.check(), pollMs);
    this.timer.unref();
  }

  private stat(path: string): FileState {
    try {
      const { ino, size, mtimeMs, ctimeMs } = statSync(path);
      return { ino, size, mtimeMs, ctimeMs };
    } catch (e) {
      throw new PolicyError(`cannot read policy ${path}: ${(e as Error).message}`);
    }
  }

  private readText(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new PolicyError(`cannot read policy ${path}: ${(e as Error).message}`);
    }
  }

  /**
   * Re-reads the file when it may have changed since the last read. Returns whether a new policy
   * took effect; an unreadable or invalid file is refused (logged once per problem) and the policy
   * in force stays.
   */
  check(): boolean {
    if (!this.path) return false;
    let st: FileState;
    let text: string;
    try {
      st = this.stat(this.path);
      if (this.seen && sameFile(st, this.seen) && Date.now() - st.mtimeMs > RACY_MS) return false;
      text = this.readText(this.path);
    } catch (e) {
      this.refuse((e as Error).message);
      return false;
    }
    this.seen = st;
    this.problem = undefined;
    if (text === this.text) return false;
    this.text = text;
    return this.apply(text);
  }

  /** Reads the file again whatever its stat says; returns whether a new policy took effect. */
  reload(): boolean {
    if (!this.path) return false;
    this.seen = undefined;
    this.text = undefined;
    return this.check();
  }

  private apply(text: string): boolean {
    try {
      this.policy = parsePolicy(text, this.path!);
    } catch (e) {
      this.refuse((e as Error).message);
      return false;
    }
    this.log('info', 'policy reloaded', { path: this.path, rules: this.policy.rules.length });
    for (const l of this.listeners) l(this.policy);
    return true;
  }

  private refuse(error: string): void {
    if (error === this.problem) return;
    this.problem = error;
    this.log('error', 'policy reload refused; the previous policy stays in force', { path: this.path, error });
  }

  current(): Policy {
    return this.policy;
  }

  onChange(l: (p: Policy) => void): void {
    this.listeners.push(l);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
