// Interop: the REAL docker CLI's trust commands (`docker trust inspect`, `key generate`,
// `signer add`, `revoke`) against trustgate served over https with a throwaway CA. There is no
// Docker engine here, and none is needed: these commands only talk to the trust server. Every
// run gets its own HOME and DOCKER_CONFIG, and DOCKER_HOST points at a socket that does not exist,
// so nothing global is read or touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { cli } from '../cli/support.js';
import { notaryCli, type NotaryCli } from '../helpers/notary-cli.js';
import { makeTempDir, removeTempDir, runCommand, type RunResult } from '../helpers/services.js';
import { makeTestCerts, type TestCerts } from '../helpers/tls.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

const FIXTURES = '/work/shared/fixtures/notary';
const PASSPHRASE = 'docker-trust-test-passphrase';

const sha256Hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function fakeManifest(label: string): { hex: string; size: number } {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 1470, digest: `sha256:${sha256Hex(`cfg-${label}`)}` },
      layers: [
        { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 3370706, digest: `sha256:${sha256Hex(`l-${label}`)}` },
      ],
    }),
  );
  return { hex: sha256Hex(bytes), size: bytes.length };
}

/** TUF key id (spec §5.6), written out by hand so it does not depend on src/. */
const tufKeyId = (keytype: string, publicB64: string) =>
  sha256Hex(`{"keytype":"${keytype}","keyval":{"private":null,"public":"${publicB64}"}}`);

interface KeyJson {
  keytype: string;
  keyval: { public: string };
}
interface RootSigned {
  version: number;
  keys: Record<string, KeyJson>;
  roles: Record<'root' | 'targets' | 'snapshot' | 'timestamp', { keyids: string[]; threshold: number }>;
}
interface TargetsSigned {
  version: number;
  targets: Record<string, { hashes: { sha256?: string }; length: number }>;
  delegations: { keys: Record<string, KeyJson>; roles: { name: string; keyids: string[]; paths?: string[]; threshold: number }[] | null };
}
interface Envelope<T> {
  signed: T;
  signatures: { keyid: string }[];
}

interface InspectJson {
  Name: string;
  SignedTags: { SignedTag: string; Digest: string; Signers: string[] }[];
  Signers: { Name: string; Keys: { ID: string }[] }[];
  AdministrativeKeys: { Name: string; Keys: { ID: string }[] }[];
}

/** GET over https trusting only the test CA. */
function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 10_000, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

interface Env {
  tg: RunningTrustgate;
  certs: TestCerts;
  ca: Buffer;
  home: string;
  dockerConfig: string;
  /** host:port of trustgate, as docker names the trust server. */
  hostPort: string;
  docker(args: readonly string[], opts?: { withCa?: boolean; input?: string }): Promise<RunResult>;
  /** A notary CLI on trustgate; with `dockerTrustDir` it shares docker's keys and cache. */
  notary(opts?: { dockerTrustDir?: boolean }): Promise<NotaryCli>;
  tuf<T>(gun: string, file: string): Promise<Envelope<T>>;
}

async function withDockerEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const certs = await makeTestCerts();
  const tg = await startTrustgate({ tls: { cert: certs.cert, key: certs.key } });
  const home = await makeTempDir('docker-trust-home');
  const clis: NotaryCli[] = [];
  try {
    const ca = await fsp.readFile(certs.caCert);
    const hostPort = `127.0.0.1:${tg.port}`;
    const dockerConfig = path.join(home, '.docker');
    // docker/cli reads extra CAs for a trust server from $DOCKER_CONFIG/tls/<server host:port>/*.crt.
    const caDir = path.join(dockerConfig, 'tls', hostPort);
    await fsp.mkdir(caDir, { recursive: true });
    await fsp.copyFile(certs.caCert, path.join(caDir, 'ca.crt'));
    const noCaConfig = path.join(home, 'docker-no-ca');
    await fsp.mkdir(noCaConfig, { recursive: true });
    // docker sends the image registry's credentials to the trust server: the admin token for each.
    const auth = Buffer.from(`trustgate:${tg.adminToken}`).toString('base64');
    const auths = { [hostPort]: { auth }, 'https://index.docker.io/v1/': { auth } };
    for (const dir of [dockerConfig, noCaConfig]) await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths }));

    const baseEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      DOCKER_HOST: `unix://${path.join(home, 'no-engine.sock')}`,
      DOCKER_CONTENT_TRUST_SERVER: tg.url,
      DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE: PASSPHRASE,
      DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: PASSPHRASE,
      DOCKER_CLI_HINTS: 'false',
    };
    const env: Env = {
      tg,
      certs,
      ca,
      home,
      dockerConfig,
      hostPort,
      docker: (args, o = {}) =>
        runCommand('docker', args, {
          env: { ...baseEnv, DOCKER_CONFIG: o.withCa === false ? noCaConfig : dockerConfig },
          ...(o.input !== undefined ? { input: o.input } : {}),
          timeoutMs: 60_000,
        }),
      notary: async (o = {}) => {
        const cli = await notaryCli({
          server: tg.url,
          tlsCaCert: certs.caCert,
          passphrase: PASSPHRASE,
          token: tg.adminToken,
          ...(o.dockerTrustDir ? { trustDir: path.join(dockerConfig, 'trust') } : {}),
        });
        clis.push(cli);
        return cli;
      },
      tuf: async <T>(gun: string, file: string) => {
        const r = await httpsGet(`${tg.url}/v2/${gun}/_trust/tuf/${file}`, ca);
        assert.equal(r.status, 200, `GET ${file}: ${r.status} ${r.body.toString()}`);
        return JSON.parse(r.body.toString('utf8')) as Envelope<T>;
      },
    };
    await fn(env);
  } finally {
    for (const c of clis) await c.cleanup();
    await tg.stop();
    await removeTempDir(home);
    await certs.cleanup();
  }
}

const ok = (r: RunResult, what: string) => assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);

/**
 * The shape of `docker trust inspect --pretty` output: the repository name, digests, key ids and
 * tag/signer rows replaced by placeholders, so two outputs compare by layout only.
 */
function prettySkeleton(text: string, name: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    let line = raw
      .split(name)
      .join('<NAME>')
      .replace(/[0-9a-f]{64}/g, '<ID>');
    if (/^\S+\s+<ID>\s+\S.*$/.test(line) && !/^SIGNED TAG/.test(line)) line = '<TAG ROW>';
    else if (/^\S+\s+[0-9a-f]{12}(, [0-9a-f]{12})*$/.test(line)) line = '<SIGNER ROW>';
    if (line === out.at(-1) && line.startsWith('<')) continue; // n rows look like one
    out.push(line.replace(/\s+$/, '').replace(/ {2,}/g, '  '));
  }
  while (out.at(-1) === '') out.pop();
  return out;
}

/** Parses the tag table of `docker trust inspect --pretty`. */
function prettyTags(text: string): { tag: string; digest: string; signers: string }[] {
  const rows: { tag: string; digest: string; signers: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+([0-9a-f]{64})\s+(.+?)\s*$/.exec(line);
    if (m) rows.push({ tag: m[1]!, digest: m[2]!, signers: m[3]! });
  }
  return rows;
}

test('docker trust inspect (pretty and JSON) reads tags published with the notary CLI to trustgate over TLS', async () => {
  await withDockerEnv(async (env) => {
    const gun = `${env.hostPort}/ns/app`; // what docker normalises "127.0.0.1:PORT/ns/app" to (spec §5.9)
    const [m1, m2] = [fakeManifest('one'), fakeManifest('two')];
    const admin = await env.notary();
    await admin.runOk(['init', gun, '-p']);
    await admin.runOk(['key', 'rotate', gun, 'snapshot', '-r']); // Docker's layout: server-held snapshot
    await admin.runOk(['addhash', gun, 'v1', String(m1.size), '--sha256', m1.hex, '-p']);
    await admin.runOk(['addhash', gun, 'v2', String(m2.size), '--sha256', m2.hex, '-p']);
    await admin.runOk(['addhash', gun, 'latest', String(m2.size), '--sha256', m2.hex, '-p']);
    const root = (await env.tuf<RootSigned>(gun, 'root.json')).signed;
    const rootId = root.roles.root.keyids[0]!;
    const targetsId = root.roles.targets.keyids[0]!;

    const pretty = await env.docker(['trust', 'inspect', '--pretty', gun]);
    ok(pretty, 'docker trust inspect --pretty');
    assert.deepEqual(prettyTags(pretty.stdout), [
      { tag: 'latest', digest: m2.hex, signers: '(Repo Admin)' },
      { tag: 'v1', digest: m1.hex, signers: '(Repo Admin)' },
      { tag: 'v2', digest: m2.hex, signers: '(Repo Admin)' },
    ]);
    assert.match(pretty.stdout, new RegExp(`^Signatures for ${gun.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(pretty.stdout, /^SIGNED TAG\s+DIGEST\s+SIGNERS$/m);
    assert.match(pretty.stdout, new RegExp(`^\\s+Repository Key:\\t${targetsId}$`, 'm'));
    assert.match(pretty.stdout, new RegExp(`^\\s+Root Key:\\t${rootId}$`, 'm'));
    assert.doesNotMatch(pretty.stdout, /List of signers/); // no delegations in this repository

    // Same layout as the reference output recorded from notary-server, minus its signer section.
    const fixturePretty = await fsp.readFile(path.join(FIXTURES, 'docker-trust-inspect-pretty.txt'), 'utf8');
    const fixtureShape = prettySkeleton(fixturePretty, 'localhost:5000/library/app');
    const signersAt = fixtureShape.findIndex((l) => l.startsWith('List of signers'));
    assert.ok(signersAt > 0);
    // "List of signers…", "", "SIGNER  KEYS", rows, "".
    const withoutSigners = [...fixtureShape.slice(0, signersAt), ...fixtureShape.slice(signersAt + 5)];
    assert.deepEqual(prettySkeleton(pretty.stdout, gun), withoutSigners);

    const json = await env.docker(['trust', 'inspect', gun]);
    ok(json, 'docker trust inspect');
    const parsed = JSON.parse(json.stdout) as InspectJson[];
    assert.equal(parsed.length, 1);
    assert.deepEqual(parsed[0], {
      Name: gun,
      SignedTags: [
        { SignedTag: 'latest', Digest: m2.hex, Signers: ['Repo Admin'] },
        { SignedTag: 'v1', Digest: m1.hex, Signers: ['Repo Admin'] },
        { SignedTag: 'v2', Digest: m2.hex, Signers: ['Repo Admin'] },
      ],
      Signers: [],
      AdministrativeKeys: [
        { Name: 'Root', Keys: [{ ID: rootId }] },
        { Name: 'Repository', Keys: [{ ID: targetsId }] },
      ],
    });
    const fixtureJson = JSON.parse(await fsp.readFile(path.join(FIXTURES, 'docker-trust-inspect.json'), 'utf8')) as InspectJson[];
    assert.deepEqual(Object.keys(parsed[0]!), Object.keys(fixtureJson[0]!));
    assert.deepEqual(Object.keys(parsed[0]!.SignedTags[0]!), Object.keys(fixtureJson[0]!.SignedTags[0]!));
    assert.deepEqual(
      parsed[0]!.AdministrativeKeys.map((k) => k.Name),
      fixtureJson[0]!.AdministrativeKeys.map((k) => k.Name),
    );

    // One tag only.
    const one = JSON.parse((await env.docker(['trust', 'inspect', `${gun}:v1`])).stdout) as InspectJson[];
    assert.deepEqual(one[0]!.SignedTags, [{ SignedTag: 'v1', Digest: m1.hex, Signers: ['Repo Admin'] }]);

    // A repository without trust data.
    const none = await env.docker(['trust', 'inspect', `${env.hostPort}/ns/none`]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no signatures or cannot access/);
  });
});

test('docker trust key generate + signer add (two signers) initialise a repository on trustgate; signers and revoke show up', async () => {
  await withDockerEnv(async (env) => {
    const gun = `${env.hostPort}/ns/signed`;
    const keyDir = path.join(env.home, 'keys');
    await fsp.mkdir(keyDir);

    const gen = await env.docker(['trust', 'key', 'generate', 'alice', '--dir', keyDir]);
    ok(gen, 'docker trust key generate');
    const pub = await fsp.readFile(path.join(keyDir, 'alice.pub'), 'utf8');
    const spkiB64 = pub.replace(/-----[^-]+-----|^[a-z]+:.*$|\s/gim, '');
    const aliceId = tufKeyId('ecdsa', spkiB64);
    // The private key lands in docker's trust dir under its canonical id.
    await fsp.access(path.join(env.dockerConfig, 'trust', 'private', `${aliceId}.key`));

    const add = await env.docker(['trust', 'signer', 'add', '--key', path.join(keyDir, 'alice.pub'), 'alice', gun]);
    ok(add, 'docker trust signer add');
    assert.match(add.stdout, new RegExp(`Initializing signed repository for ${gun.replace(/\./g, '\\.')}`));
    assert.match(add.stdout, /Successfully added signer: alice to /);

    // Docker's first push layout (spec §6): root v1, client targets, server snapshot + timestamp,
    // and the signer's key in both targets/alice and targets/releases.
    const root = (await env.tuf<RootSigned>(gun, 'root.json')).signed;
    assert.equal(root.version, 1);
    for (const role of ['snapshot', 'timestamp'] as const) {
      const r = await httpsGet(`${env.tg.url}/v2/${gun}/_trust/tuf/${role}.key`, env.ca, { Authorization: `Bearer ${env.tg.adminToken}` });
      const key = JSON.parse(r.body.toString()) as KeyJson;
      assert.deepEqual(root.roles[role].keyids, [tufKeyId(key.keytype, key.keyval.public)], `${role} key is the server's`);
    }
    const targets = (await env.tuf<TargetsSigned>(gun, 'targets.json')).signed;
    const roles = [...(targets.delegations.roles ?? [])].sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(roles, [
      { keyids: [aliceId], name: 'targets/alice', paths: [''], threshold: 1 },
      { keyids: [aliceId], name: 'targets/releases', paths: [''], threshold: 1 },
    ]);
    assert.equal(targets.delegations.keys[aliceId]?.keytype, 'ecdsa');

    // A second signer goes into targets/bob and joins targets/releases.
    ok(await env.docker(['trust', 'key', 'generate', 'bob', '--dir', keyDir]), 'docker trust key generate bob');
    const bobPub = await fsp.readFile(path.join(keyDir, 'bob.pub'), 'utf8');
    const bobId = tufKeyId('ecdsa', bobPub.replace(/-----[^-]+-----|^[a-z]+:.*$|\s/gim, ''));
    const addBob = await env.docker(['trust', 'signer', 'add', '--key', path.join(keyDir, 'bob.pub'), 'bob', gun]);
    ok(addBob, 'docker trust signer add bob');
    assert.doesNotMatch(addBob.stdout, /Initializing/);
    const targets2 = (await env.tuf<TargetsSigned>(gun, 'targets.json')).signed;
    const byName = new Map((targets2.delegations.roles ?? []).map((r) => [r.name, [...r.keyids].sort()]));
    assert.deepEqual(byName.get('targets/releases'), [aliceId, bobId].sort());
    assert.deepEqual(byName.get('targets/bob'), [bobId]);
    assert.deepEqual(byName.get('targets/alice'), [aliceId]);

    // Sign as the repository admin (targets) and as alice (targets/releases + targets/alice, which is
    // what `docker trust sign` writes; that command itself needs an engine to read the image).
    const admin = await env.notary({ dockerTrustDir: true });
    const [mAdmin, mAlice] = [fakeManifest('admin'), fakeManifest('alice')];
    await admin.runOk(['addhash', gun, 'base', String(mAdmin.size), '--sha256', mAdmin.hex, '-p']);
    await admin.runOk([
      'addhash',
      gun,
      'v1',
      String(mAlice.size),
      '--sha256',
      mAlice.hex,
      '--roles',
      'targets/releases',
      '--roles',
      'targets/alice',
      '-p',
    ]);
    const rel = await env.tuf<TargetsSigned>(gun, 'targets/releases.json');
    assert.equal(Buffer.from(rel.signed.targets.v1!.hashes.sha256!, 'base64').toString('hex'), mAlice.hex);
    // Both signer keys sit in this one docker trust dir, so notary signs targets/releases with both.
    assert.deepEqual(rel.signatures.map((s) => s.keyid).sort(), [aliceId, bobId].sort());

    const pretty = await env.docker(['trust', 'inspect', '--pretty', gun]);
    ok(pretty, 'docker trust inspect --pretty');
    assert.deepEqual(prettyTags(pretty.stdout), [
      { tag: 'base', digest: mAdmin.hex, signers: '(Repo Admin)' },
      { tag: 'v1', digest: mAlice.hex, signers: 'alice' },
    ]);
    assert.match(pretty.stdout, new RegExp(`^alice\\s+${aliceId.slice(0, 12)}\\nbob\\s+${bobId.slice(0, 12)}$`, 'm'));
    const fixturePretty = await fsp.readFile(path.join(FIXTURES, 'docker-trust-inspect-pretty.txt'), 'utf8');
    assert.deepEqual(prettySkeleton(pretty.stdout, gun), prettySkeleton(fixturePretty, 'localhost:5000/library/app'));

    const parsed = JSON.parse((await env.docker(['trust', 'inspect', gun])).stdout) as InspectJson[];
    assert.deepEqual(parsed[0]!.SignedTags, [
      { SignedTag: 'base', Digest: mAdmin.hex, Signers: ['Repo Admin'] },
      { SignedTag: 'v1', Digest: mAlice.hex, Signers: ['alice'] },
    ]);
    // docker builds this list from a Go map, so its order varies from run to run.
    assert.deepEqual(
      [...parsed[0]!.Signers].sort((a, b) => a.Name.localeCompare(b.Name)),
      [
        { Name: 'alice', Keys: [{ ID: aliceId }] },
        { Name: 'bob', Keys: [{ ID: bobId }] },
      ],
    );
    assert.deepEqual(
      parsed[0]!.AdministrativeKeys.map((k) => [k.Name, k.Keys.map((x) => x.ID)]),
      [
        ['Root', root.roles.root.keyids],
        ['Repository', root.roles.targets.keyids],
      ],
    );

    // Revoke alice's signature for v1: docker removes it from every delegation and publishes.
    const revoke = await env.docker(['trust', 'revoke', '--yes', `${gun}:v1`]);
    ok(revoke, 'docker trust revoke');
    assert.match(revoke.stdout, /Successfully deleted signature for .*:v1/);
    const after = JSON.parse((await env.docker(['trust', 'inspect', gun])).stdout) as InspectJson[];
    assert.deepEqual(
      after[0]!.SignedTags.map((t) => t.SignedTag),
      ['base'],
    );
    assert.deepEqual((await env.tuf<TargetsSigned>(gun, 'targets/releases.json')).signed.targets, {});
  });
});

test('docker verifies trustgate with the CA from $DOCKER_CONFIG/tls for a non-loopback registry name; "alpine" maps to docker.io/library/alpine', async () => {
  await withDockerEnv(async (env) => {
    // Loopback registries skip TLS verification in docker, so use a Hub name: docker then verifies
    // the trust server's certificate, and the trust server is trustgate via DOCKER_CONTENT_TRUST_SERVER.
    const gun = 'docker.io/library/alpine';
    const m = fakeManifest('alpine');
    const admin = await env.notary();
    await admin.runOk(['init', gun, '-p']);
    await admin.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    await admin.runOk(['addhash', gun, '3.19', String(m.size), '--sha256', m.hex, '-p']);

    const untrusted = await env.docker(['trust', 'inspect', 'alpine:3.19'], { withCa: false });
    assert.equal(untrusted.code, 1, untrusted.stdout);
    assert.match(untrusted.stderr, /no signatures or cannot access alpine:3\.19/);

    const trusted = await env.docker(['trust', 'inspect', 'alpine:3.19']);
    ok(trusted, 'docker trust inspect alpine:3.19');
    const parsed = JSON.parse(trusted.stdout) as InspectJson[];
    assert.equal(parsed[0]!.Name, 'alpine:3.19');
    assert.deepEqual(parsed[0]!.SignedTags, [{ SignedTag: '3.19', Digest: m.hex, Signers: ['Repo Admin'] }]);
  });
});

test('GOLDEN: trustgate inspect prints byte for byte what docker trust inspect --pretty prints, and the APIs agree with docker on signed tags', async () => {
  await withDockerEnv(async (env) => {
    const tgCli = cli(env.tg.url, env.tg.adminToken);
    const cliEnv = { NODE_EXTRA_CA_CERTS: env.certs.caCert };
    const api = async (p: string) => {
      const r = await httpsGet(`${env.tg.url}/api/v1${p}`, env.ca, { Authorization: `Bearer ${env.tg.adminToken}` });
      assert.equal(r.status, 200, `GET ${p}: ${r.status} ${r.body.toString()}`);
      return JSON.parse(r.body.toString('utf8'));
    };
    /** trustgate inspect == docker trust inspect --pretty; the signing and management APIs == docker's JSON. */
    const same = async (gun: string, expectRows: string[]) => {
      const docker = await env.docker(['trust', 'inspect', '--pretty', gun]);
      ok(docker, `docker trust inspect --pretty ${gun}`);
      const ours = await tgCli.run(['inspect', gun], { env: cliEnv });
      ok(ours, `trustgate inspect ${gun}`);
      assert.equal(
        ours.stdout,
        docker.stdout,
        `trustgate inspect ${gun} differs from docker:\n--- docker\n${docker.stdout}\n--- trustgate\n${ours.stdout}`,
      );
      // The rows the case is about, so a shape both get wrong the same way cannot pass.
      assert.deepEqual(
        prettyTags(docker.stdout).map((r) => `${r.tag} ${r.signers}`),
        expectRows,
      );

      const [dj] = JSON.parse((await env.docker(['trust', 'inspect', gun])).stdout) as InspectJson[];
      const dockerTags = dj!.SignedTags.map((t) => [t.SignedTag, `sha256:${t.Digest}`, t.Signers]);
      const signing = await api(`/signing/inspect?gun=${encodeURIComponent(gun)}`);
      const mgmt = await api(`/repositories/${encodeURIComponent(gun)}`);
      for (const [what, tags] of [
        ['signing API', signing.signedTags],
        ['management API', mgmt.signedTags],
      ] as const) {
        assert.deepEqual(
          tags.map((t: { tag: string; digest: string; signers: string[] }) => [t.tag, t.digest, t.signers]),
          dockerTags,
          `${what} signedTags of ${gun}`,
        );
      }
      assert.deepEqual(
        signing.signers.map((s: { name: string; keys: Array<{ id: string }> }) => [s.name, s.keys.map((k) => k.id)]),
        [...dj!.Signers].sort((a, b) => a.Name.localeCompare(b.Name)).map((s) => [s.Name, s.Keys.map((k) => k.ID)]),
      );
    };

    // 1. Only targets signed, no delegations; v2 before v10 (docker sorts tags naturally).
    const plain = `${env.hostPort}/golden/plain`;
    const admin = await env.notary();
    await admin.runOk(['init', plain, '-p']);
    await admin.runOk(['key', 'rotate', plain, 'snapshot', '-r']);
    const [m1, m2, m10] = [fakeManifest('g1'), fakeManifest('g2'), fakeManifest('g10')];
    for (const [tag, m] of [
      ['v1', m1],
      ['v10', m10],
      ['v2', m2],
      ['latest', m10],
    ] as const)
      await admin.runOk(['addhash', plain, tag, String(m.size), '--sha256', m.hex]);
    await admin.runOk(['publish', plain]);
    await same(plain, ['latest (Repo Admin)', 'v1 (Repo Admin)', 'v2 (Repo Admin)', 'v10 (Repo Admin)']);

    // 2. A repository with no tags.
    const empty = `${env.hostPort}/golden/empty`;
    await admin.runOk(['init', empty, '-p']);
    await same(empty, []);

    // 3. Signers alice and bob (docker's layout, with targets/releases); a tag signed by both;
    // a tag only bob's delegation lists is not released and not shown.
    const team = `${env.hostPort}/golden/team`;
    const keyDir = path.join(env.home, 'golden-keys');
    await fsp.mkdir(keyDir);
    for (const who of ['alice', 'bob']) {
      ok(await env.docker(['trust', 'key', 'generate', who, '--dir', keyDir]), `key generate ${who}`);
      ok(await env.docker(['trust', 'signer', 'add', '--key', path.join(keyDir, `${who}.pub`), who, team]), `signer add ${who}`);
    }
    const signer = await env.notary({ dockerTrustDir: true });
    const [mb, ma, mab, mu] = [fakeManifest('base'), fakeManifest('a'), fakeManifest('ab'), fakeManifest('u')];
    await signer.runOk(['addhash', team, 'base', String(mb.size), '--sha256', mb.hex]);
    await signer.runOk([
      'addhash',
      team,
      'v1',
      String(ma.size),
      '--sha256',
      ma.hex,
      '--roles',
      'targets/releases',
      '--roles',
      'targets/alice',
    ]);
    await signer.runOk([
      'addhash',
      team,
      'v2',
      String(mab.size),
      '--sha256',
      mab.hex,
      '--roles',
      'targets/releases',
      '--roles',
      'targets/bob',
      '--roles',
      'targets/alice',
    ]);
    await signer.runOk(['addhash', team, 'wip', String(mu.size), '--sha256', mu.hex, '--roles', 'targets/bob']);
    await signer.runOk(['publish', team]);
    await same(team, ['base (Repo Admin)', 'v1 alice', 'v2 alice, bob']);

    // 4. Made by trustgate itself: a signer whose key the server generated, released by it.
    const own = `${env.hostPort}/golden/own`;
    ok(await tgCli.run(['repo', 'init', own], { env: cliEnv }), 'trustgate repo init');
    ok(await tgCli.run(['signer', 'add', own, 'ci', '--generate'], { env: cliEnv }), 'trustgate signer add --generate');
    const mc = fakeManifest('ci');
    const batch = path.join(env.home, 'golden-batch.json');
    const item = { gun: own, tag: 'build-7', digest: `sha256:${mc.hex}`, size: mc.size };
    await fsp.writeFile(
      batch,
      JSON.stringify([
        { ...item, role: 'targets/releases' },
        { ...item, role: 'targets/ci' },
        { ...item, tag: 'build-12' },
      ]),
    );
    ok(await tgCli.run(['sign', '--batch', batch], { env: cliEnv }), 'trustgate sign --batch');
    // A signer given as an x509 certificate: docker shows the ID of the key inside it.
    const [certKey, cert] = [path.join(env.home, 'dave.key'), path.join(env.home, 'dave.crt')];
    const made = await runCommand('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      '/CN=dave',
      '-days',
      '30',
      '-keyout',
      certKey,
      '-out',
      cert,
    ]);
    ok(made, 'openssl req -x509');
    ok(await tgCli.run(['signer', 'add', own, 'dave', '--key', cert], { env: cliEnv }), 'trustgate signer add --key cert');
    await same(own, ['build-7 ci', 'build-12 (Repo Admin)']);
    const daveRole = ((await env.tuf<TargetsSigned>(own, 'targets.json')).signed.delegations.roles ?? []).find(
      (r) => r.name === 'targets/dave',
    )!;
    const daveCertId = daveRole.keyids[0]!;
    const [dj] = JSON.parse((await env.docker(['trust', 'inspect', own])).stdout) as InspectJson[];
    const daveShown = dj!.Signers.find((x) => x.Name === 'dave')!.Keys[0]!.ID;
    assert.notEqual(daveShown, daveCertId, 'docker shows the canonical ID, not the certificate key ID');
  });
});

test('docker trust signer add on a repository trustgate created needs the targets key: trustgate signer add, or the key exported', async () => {
  await withDockerEnv(async (env) => {
    const gun = `${env.hostPort}/ns/made-by-trustgate`;
    const tgCli = cli(env.tg.url, env.tg.adminToken);
    const cliEnv = { NODE_EXTRA_CA_CERTS: env.certs.caCert };
    ok(await tgCli.run(['repo', 'init', gun], { env: cliEnv }), 'trustgate repo init');
    const keyDir = path.join(env.home, 'keys');
    await fsp.mkdir(keyDir);
    for (const who of ['bob', 'carol']) ok(await env.docker(['trust', 'key', 'generate', who, '--dir', keyDir]), `key generate ${who}`);

    // The targets key is in trustgate's keystore, not here: docker cannot change targets.
    const before = (await env.tuf<TargetsSigned>(gun, 'targets.json')).signed.version;
    const refused = await env.docker(['trust', 'signer', 'add', '--key', path.join(keyDir, 'bob.pub'), 'bob', gun]);
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(refused.stderr, /could not find necessary signing keys/);
    assert.equal((await env.tuf<TargetsSigned>(gun, 'targets.json')).signed.version, before);

    // What docs/notary-compatibility.md says instead: the signer added on the server...
    ok(await tgCli.run(['signer', 'add', gun, 'bob', '--key', path.join(keyDir, 'bob.pub')], { env: cliEnv }), 'trustgate signer add');
    // ...or the targets key exported and imported into docker's trust directory.
    const listed = await tgCli.run(['key', 'list', gun, '--json'], { env: cliEnv });
    ok(listed, 'trustgate key list');
    const targetsId = (JSON.parse(listed.stdout) as { keys: Array<{ id: string; role: string }> }).keys.find(
      (k) => k.role === 'targets',
    )!.id;
    const file = path.join(env.home, 'targets.key');
    ok(
      await tgCli.run(['key', 'export', gun, targetsId, '-o', file], { env: { ...cliEnv, TRUSTGATE_PASSPHRASE: PASSPHRASE } }),
      'trustgate key export',
    );
    await (await env.notary({ dockerTrustDir: true })).runOk(['key', 'import', file]);
    ok(await env.docker(['trust', 'signer', 'add', '--key', path.join(keyDir, 'carol.pub'), 'carol', gun]), 'docker trust signer add');
    const [inspect] = JSON.parse((await env.docker(['trust', 'inspect', gun])).stdout) as InspectJson[];
    assert.deepEqual(inspect!.Signers.map((x) => x.Name).sort(), ['bob', 'carol']);
  });
});
