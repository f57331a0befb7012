// CLI commands over the management API: repositories, keys, signers and tokens. Passphrases are
// read from a file (--passphrase-file) or TRUSTGATE_PASSPHRASE, never from a command-line value
// (which other users can see in the process list); private keys are written to files with mode
// 0600, or to stdout only when asked with `-o -`.
import { lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { intOpt, needPositionals, opt, opts, UsageError, type Parsed } from './args.js';
import { CliError, EXIT } from './client.js';
import { table } from './format.js';
import type { Command, Context } from './command.js';

const enc = encodeURIComponent;
const repoPath = (gun: string) => `/api/v1/repositories/${enc(gun)}`;

function passphrase(ctx: Context, p: Parsed, required: boolean): string | undefined {
  const file = opt(p, 'passphrase-file');
  if (file) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new CliError(`cannot read --passphrase-file ${file}: ${(e as Error).message}`);
    }
  }
  const env = ctx.env.TRUSTGATE_PASSPHRASE;
  if (env) return env;
  if (required) throw new UsageError('a passphrase is needed: give --passphrase-file FILE or set TRUSTGATE_PASSPHRASE');
  return undefined;
}

function readFile(path: string, what: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Writes secret material: to a new 0600 file, or stdout with `-o -`. */
function writeSecret(ctx: Context, out: string | undefined, text: string, what: string): void {
  if (!out) throw new UsageError(`give -o FILE for the ${what} (or -o - for stdout)`);
  if (out === '-') return ctx.out(text.endsWith('\n') ? text : text + '\n');
  try {
    writeFileSync(out, text, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    throw new CliError(`cannot write ${out}: ${(e as Error).message} (it must not exist yet)`);
  }
  ctx.progress(`wrote the ${what} to ${out} (mode 0600)`);
}

interface ChangeAnswer {
  status: 'published' | 'pending';
  summary?: string;
  versions?: Record<string, number>;
  pending?: {
    id: string;
    missing: number;
    parts: Array<{ role: string; missing: number; requirements: Array<{ keyids: string[]; missing: number }> }>;
  };
}

function reportChange(ctx: Context, a: ChangeAnswer & Record<string, unknown>, done: string): number {
  if (ctx.json) {
    ctx.out(JSON.stringify(a, null, 2) + '\n');
  } else if (a.status === 'pending') {
    const need = (a.pending?.parts ?? []).filter((x) => x.missing > 0).map((x) => `${x.role} needs ${x.missing}`);
    ctx.out(`pending: ${need.join(', ')} more signature(s) (change ${a.pending?.id}; complete it with the other key holders)\n`);
  } else {
    const v = Object.entries(a.versions ?? {})
      .map(([r, n]) => `${r} v${n}`)
      .join(', ');
    ctx.out(`${done}${v ? ` (${v})` : ''}\n`);
  }
  return a.status === 'pending' ? EXIT.DENIED : EXIT.OK;
}

const repoInit: Command = {
  name: 'repo init',
  usage: 'repo init REPO [--root-key keystore|offline -o ROOT.key] [--algorithm ecdsa|rsa]',
  summary: 'create trust data for a repository (root kept on the server, or handed out once)',
  options: {
    'root-key': { value: true },
    algorithm: { value: true },
    'passphrase-file': { value: true },
    output: { value: true, short: 'o' },
  },
  async run(ctx, p) {
    const [gun] = needPositionals(p, ['REPO'], this.usage);
    const rootKey = opt(p, 'root-key') ?? 'keystore';
    if (rootKey !== 'keystore' && rootKey !== 'offline') throw new UsageError('--root-key is keystore or offline');
    const out = opt(p, 'output');
    if (rootKey === 'offline' && !out) throw new UsageError('an offline root key is returned once: give -o FILE to keep it');
    const pass = rootKey === 'offline' ? passphrase(ctx, p, true) : undefined;
    const res = await ctx
      .api()
      .call<{ repository: Record<string, unknown>; rootKey?: { id: string; pem: string } }>('POST', '/api/v1/repositories', {
        gun,
        rootKey,
        ...(pass ? { passphrase: pass } : {}),
        ...(opt(p, 'algorithm') ? { algorithm: opt(p, 'algorithm') } : {}),
      });
    if (res.body.rootKey) writeSecret(ctx, out, res.body.rootKey.pem, `offline root key ${res.body.rootKey.id.slice(0, 12)}`);
    if (ctx.json)
      ctx.out(JSON.stringify({ ...res.body, ...(res.body.rootKey ? { rootKey: { id: res.body.rootKey.id } } : {}) }, null, 2) + '\n');
    else ctx.out(`initialised trust for ${gun}\n`);
    return EXIT.OK;
  },
};

interface PinInfo {
  rootVersion: number;
  rootKeyIds: string[];
}

const repoTrustReset: Command = {
  name: 'repo trust-reset',
  usage: 'repo trust-reset REPO',
  summary: "make the proxy trust a repository's current root again, e.g. after it was deleted and created anew (admin, audited)",
  options: {},
  async run(ctx, p) {
    const [gun] = needPositionals(p, ['REPO'], this.usage);
    const res = await ctx
      .api()
      .call<{ gun: string; previous: PinInfo | null; pinned: PinInfo | null }>('POST', `${repoPath(gun!)}/trust-reset`);
    if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2) + '\n');
    else {
      const root = (x: PinInfo | null) =>
        x ? `root v${x.rootVersion} (${x.rootKeyIds.map((k) => k.slice(0, 12)).join(', ')})` : 'nothing';
      const now = res.body.pinned ? root(res.body.pinned) : 'the next root it gets, on first use';
      ctx.out(`reset the trust of ${gun}: was ${root(res.body.previous)}, now ${now}\n`);
    }
    return EXIT.OK;
  },
};

interface KeyInfo {
  id: string;
  algorithm: string;
  role: string;
  held: string;
  inMetadata: boolean;
  roleExpires: string | null;
}

const keyList: Command = {
  name: 'key list',
  usage: 'key list REPO',
  summary: 'keys of a repository: role, algorithm, where held, whether in use',
  options: {},
  async run(ctx, p) {
    const [gun] = needPositionals(p, ['REPO'], this.usage);
    const res = await ctx.api().call<{ keys: KeyInfo[] }>('GET', `${repoPath(gun!)}/keys`);
    if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2) + '\n');
    else {
      ctx.out(
        table(
          ['ROLE', 'KEY ID', 'ALGORITHM', 'HELD', 'IN USE', 'ROLE EXPIRES'],
          res.body.keys.map((k) => [k.role, k.id, k.algorithm, k.held, k.inMetadata ? 'yes' : 'no', k.roleExpires ?? '-']),
        ),
      );
    }
    return EXIT.OK;
  },
};

const keyRotate: Command = {
  name: 'key rotate',
  usage: 'key rotate REPO ROLE [--key-id ID] [--algorithm ecdsa|ed25519|rsa]',
  summary: "replace a role's key with a new one (or a given held key) and re-sign",
  options: { 'key-id': { value: true }, algorithm: { value: true } },
  async run(ctx, p) {
    const [gun, role] = needPositionals(p, ['REPO', 'ROLE'], this.usage);
    const res = await ctx
      .api()
      .call<ChangeAnswer & Record<string, unknown>>(
        'POST',
        `${repoPath(gun!)}/keys/${enc(role!)}/rotate`,
        { ...(opt(p, 'key-id') ? { keyId: opt(p, 'key-id') } : {}), ...(opt(p, 'algorithm') ? { algorithm: opt(p, 'algorithm') } : {}) },
        { allow: [202] },
      );
    return reportChange(ctx, res.body, `rotated the ${role} key of ${gun}`);
  },
};

const keyExport: Command = {
  name: 'key export',
  usage: 'key export REPO KEYID -o FILE [--passphrase-file F]',
  summary: 'export a held private key as an encrypted PEM (notary format)',
  options: { 'passphrase-file': { value: true }, output: { value: true, short: 'o' } },
  async run(ctx, p) {
    const [gun, id] = needPositionals(p, ['REPO', 'KEYID'], this.usage);
    const out = opt(p, 'output');
    if (!out) throw new UsageError('give -o FILE for the exported key (or -o - for stdout)');
    const pass = passphrase(ctx, p, true)!;
    const res = await ctx
      .api()
      .call<{ keyId: string; pem: string }>('POST', `${repoPath(gun!)}/keys/${enc(id!)}/export`, { passphrase: pass });
    writeSecret(ctx, out, res.body.pem, `key ${res.body.keyId.slice(0, 12)}`);
    return EXIT.OK;
  },
};

const keyImport: Command = {
  name: 'key import',
  usage: 'key import REPO FILE --role R [--activate] [--passphrase-file F]',
  summary: 'import a private key (PEM, encrypted or not) for a role',
  options: { role: { value: true, short: 'r' }, activate: {}, 'passphrase-file': { value: true }, replace: { value: true } },
  async run(ctx, p) {
    const [gun, file] = needPositionals(p, ['REPO', 'FILE'], this.usage);
    const role = opt(p, 'role');
    if (!role) throw new UsageError('give --role (the role the key signs)');
    const pem = readFile(file!, 'key file');
    const pass = /ENCRYPTED/.test(pem) ? passphrase(ctx, p, true) : passphrase(ctx, p, false);
    const res = await ctx
      .api()
      .call<Omit<ChangeAnswer, 'status'> & { status: 'published' | 'pending' | 'stored'; keyId?: string } & Record<string, unknown>>(
        'POST',
        `${repoPath(gun!)}/keys/import`,
        {
          pem,
          role,
          ...(pass ? { passphrase: pass } : {}),
          ...(p.flags.has('activate') ? { activate: true } : {}),
          ...(opt(p, 'replace') ? { replaceKeyId: opt(p, 'replace') } : {}),
        },
        { allow: [202] },
      );
    if (res.body.status === 'stored') {
      if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2) + '\n');
      else ctx.out(`imported key ${String(res.body.keyId ?? '').slice(0, 12)} for ${role} of ${gun}\n`);
      return EXIT.OK;
    }
    return reportChange(ctx, res.body as ChangeAnswer & Record<string, unknown>, `imported and activated a ${role} key for ${gun}`);
  },
};

const signerAdd: Command = {
  name: 'signer add',
  usage: 'signer add REPO NAME (--key FILE.pub... | --generate) [--threshold N]',
  summary: 'add a signer: targets/NAME and targets/releases, with its public keys',
  options: { key: { value: true, repeat: true, short: 'k' }, generate: {}, threshold: { value: true }, algorithm: { value: true } },
  async run(ctx, p) {
    const [gun, name] = needPositionals(p, ['REPO', 'NAME'], this.usage);
    const keys = opts(p, 'key').map((f) => readFile(f, 'public key'));
    if (keys.length === 0 && !p.flags.has('generate'))
      throw new UsageError('give --key FILE.pub (one per key) or --generate (a key held by the server)');
    const threshold = intOpt(p, 'threshold');
    const res = await ctx.api().call<ChangeAnswer & { keyIds?: string[] } & Record<string, unknown>>(
      'POST',
      `${repoPath(gun!)}/signers`,
      {
        name,
        ...(keys.length ? { publicKeys: keys } : {}),
        ...(p.flags.has('generate') ? { generate: true } : {}),
        ...(threshold ? { threshold } : {}),
        ...(opt(p, 'algorithm') ? { algorithm: opt(p, 'algorithm') } : {}),
      },
      { allow: [202] },
    );
    return reportChange(
      ctx,
      res.body,
      `added signer ${name} to ${gun} with key(s) ${(res.body.keyIds ?? []).map((k) => k.slice(0, 12)).join(', ')}`,
    );
  },
};

const signerRemove: Command = {
  name: 'signer remove',
  usage: 'signer remove REPO NAME',
  summary: 'remove a signer and its keys from targets/releases',
  options: {},
  async run(ctx, p) {
    const [gun, name] = needPositionals(p, ['REPO', 'NAME'], this.usage);
    const res = await ctx
      .api()
      .call<ChangeAnswer & Record<string, unknown>>('DELETE', `${repoPath(gun!)}/signers/${enc(name!)}`, undefined, { allow: [202] });
    return reportChange(ctx, res.body, `removed signer ${name} from ${gun}`);
  },
};

const tokenCreate: Command = {
  name: 'token create',
  usage: 'token create --name N --scope S... [--key-id ID]... [--expires 30d]',
  summary: 'create an API token (scopes: admin, reader[:PATTERN], signer:PATTERN); prints the token',
  options: {
    name: { value: true },
    scope: { value: true, repeat: true, short: 's' },
    'key-id': { value: true, repeat: true },
    expires: { value: true },
  },
  async run(ctx, p) {
    needPositionals(p, [], this.usage);
    const name = opt(p, 'name');
    const scopes = opts(p, 'scope');
    if (!name || scopes.length === 0) throw new UsageError(`give --name and at least one --scope\nusage: ${this.usage}`);
    let expiresInSeconds: number | undefined;
    const ex = opt(p, 'expires');
    if (ex) {
      const m = /^(\d{1,9})(s|m|h|d|w)?$/.exec(ex);
      if (!m) throw new UsageError('--expires looks like 3600, 90m, 12h, 30d or 2w');
      expiresInSeconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? 's') as 's'];
    }
    const res = await ctx.api().call<{ token: string; info: Record<string, unknown> }>('POST', '/api/v1/tokens', {
      name,
      scopes,
      ...(opts(p, 'key-id').length ? { keyIds: opts(p, 'key-id') } : {}),
      ...(expiresInSeconds ? { expiresInSeconds } : {}),
    });
    if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2) + '\n');
    else {
      ctx.out(res.body.token + '\n');
      ctx.progress(`created token ${String(res.body.info.id)} (${name}: ${scopes.join(' ')}); it is shown only once`);
    }
    return EXIT.OK;
  },
};

const backup: Command = {
  name: 'backup',
  usage: 'backup -o FILE',
  summary: "save a consistent copy of the server's metadata store (SQLite) to a new file (admin)",
  options: { out: { value: true, short: 'o' } },
  async run(ctx, p) {
    needPositionals(p, [], this.usage);
    const out = opt(p, 'out');
    if (!out || out === '-') throw new UsageError(`give -o FILE, a file that does not exist yet\nusage: ${this.usage}`);
    // Checked before the server is asked: a copy of the store is not made only to be thrown away.
    if (lstatSync(out, { throwIfNoEntry: false })) throw new CliError(`cannot write ${out}: it exists already (give a new file name)`);
    ctx.progress('copying the metadata store…');
    const bytes = await ctx.api().download('/api/v1/backup', out, 'application/vnd.sqlite3');
    if (ctx.json) ctx.out(JSON.stringify({ file: out, bytes }) + '\n');
    else ctx.progress(`wrote ${bytes} bytes to ${out} (mode 0600); the keys directory is backed up separately`);
    return EXIT.OK;
  },
};

const G = 'trustgate.example.com:5000/team/app';
const HELP: Record<string, Pick<Command, 'details' | 'examples'>> = {
  'repo init': {
    details:
      'By default the root key stays in the server keystore. With --root-key offline the root key is made, returned once as ' +
      'an encrypted PEM written to -o FILE (passphrase from --passphrase-file or TRUSTGATE_PASSPHRASE), and not kept.',
    examples: [`trustgate repo init ${G}`, `TRUSTGATE_PASSPHRASE=... trustgate repo init ${G} --root-key offline -o root.key`],
  },
  'repo trust-reset': { examples: [`trustgate repo trust-reset ${G}`] },
  'key list': {
    details: 'Key IDs are printed in full; every command that takes a key ID also takes a unique prefix of 12 or more characters.',
    examples: [`trustgate key list ${G}`, `trustgate key list ${G} --json | jq -r '.keys[] | select(.role=="targets/ci") | .id'`],
  },
  'key rotate': {
    details: 'A role with several keys needs --key-id, the key to replace (a unique prefix of 12+ characters will do).',
    examples: [`trustgate key rotate ${G} targets`, `trustgate key rotate ${G} targets/releases --key-id 8c2f1d6b0e4a`],
  },
  'key export': {
    examples: [`TRUSTGATE_PASSPHRASE=... trustgate key export ${G} 8c2f1d6b0e4a -o targets.key`],
  },
  'key import': {
    details: 'Without --activate the key is only stored; with it the role is rotated to the imported key.',
    examples: [`trustgate key import ${G} targets.key --role targets --passphrase-file pass.txt`],
  },
  'signer add': {
    details:
      'Creates the delegation targets/NAME and adds its keys to targets/releases (created when missing), as docker trust signer add ' +
      'does. --generate makes a key held by the server; --key FILE.pub adds public keys held elsewhere.',
    examples: [`trustgate signer add ${G} ci --generate`, `trustgate signer add ${G} alice --key alice.pub`],
  },
  'signer remove': { examples: [`trustgate signer remove ${G} alice`] },
  'token create': {
    details:
      'The token is printed once, on stdout. A signer token signs only with the keys named by --key-id (full IDs or unique ' +
      'prefixes of 12+ characters).',
    examples: [
      'trustgate token create --name ops --scope admin --expires 30d',
      `trustgate token create --name ci --scope signer:${G} --key-id 8c2f1d6b0e4a --expires 90d`,
    ],
  },
  backup: {
    details: 'FILE must not exist yet: that is checked before the server is asked for a copy. The keys directory is backed up apart.',
    examples: ['trustgate backup -o trustgate-$(date +%F).db'],
  },
};

export const adminCommands: Command[] = [
  repoInit,
  repoTrustReset,
  keyList,
  keyRotate,
  keyExport,
  keyImport,
  signerAdd,
  signerRemove,
  tokenCreate,
  backup,
];
for (const c of adminCommands) Object.assign(c, HELP[c.name]);
