// The proxy's policy: parsing and matching (most specific pattern wins), invalid files refused
// with the old policy kept, and the modes enforce / audit / off against a real registry, with
// audit-mode violations counted in Prometheus metrics.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/observability/log.js';
import { BUILTIN_POLICY, parsePolicy, PolicyError, PolicySource, requirementFor, ruleFor } from '../../src/proxy/policy.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { denied, get, startStack, type Stack } from './support.js';

const POLICY = `
version: 1
default:
  mode: enforce
  signOnPush: null
repositories:
  - pattern: "team/**"
    mode: enforce
    signOnPush: targets
  - pattern: "team/legacy-*"
    mode: audit
    signOnPush: null
  - pattern: "team/legacy-app"
    mode: "off"
  - pattern: "ci/**"
    signOnPush: targets/ci
  - pattern: "strict/*"
    signOnPush: targets
    require: { roles: [targets/releases, targets], threshold: 2 }
`;

test('the most specific pattern wins; patterns are anchored', () => {
  const p = parsePolicy(POLICY, 'inline');
  assert.equal(ruleFor(p, 'team/legacy-app').mode, 'off');
  assert.equal(ruleFor(p, 'team/legacy-web').mode, 'audit');
  assert.equal(ruleFor(p, 'team/legacy-web').pattern, 'team/legacy-*');
  assert.equal(ruleFor(p, 'team/a/b').pattern, 'team/**');
  assert.equal(ruleFor(p, 'team/a/b').signOnPush, 'targets');
  // `*` stays within a segment, and patterns match the whole name
  assert.equal(ruleFor(p, 'team/legacy-x/y').pattern, 'team/**');
  assert.equal(ruleFor(p, 'strict/a/b').pattern, '(default)');
  assert.equal(ruleFor(p, 'other/team/x').pattern, '(default)');
  assert.equal(ruleFor(p, 'xteam/a').pattern, '(default)');
  assert.equal(ruleFor(p, 'other').signOnPush, null);
  // the sign-on-push role is looked up first by default; explicit roles are used as given
  assert.deepEqual(requirementFor(ruleFor(p, 'ci/x')).roles, ['targets/ci', 'targets/releases', 'targets']);
  assert.deepEqual(requirementFor(ruleFor(p, 'strict/x')), { roles: ['targets/releases', 'targets'], threshold: 2 });
  // a file without a default denies anything unsigned and signs nothing
  const bare = parsePolicy('{"version": 1}', 'inline');
  assert.deepEqual([bare.default.mode, bare.default.signOnPush], ['enforce', null]);
  assert.deepEqual([BUILTIN_POLICY.default.mode, BUILTIN_POLICY.default.signOnPush], ['enforce', 'targets']);
});

test('invalid policies are refused with a message naming the problem', () => {
  assert.throws(
    () => parsePolicy('version: 2', 'x'),
    (e: Error) => e instanceof PolicyError && /version/.test(e.message),
  );
  assert.throws(() => parsePolicy('version: 1\nrepositories:\n  - pattern: "a/*"\n    mode: block\n', 'x'), /mode/);
  assert.throws(() => parsePolicy('version: 1\nrepositories:\n  - pattern: "a/*"\n    colour: red\n', 'x'), PolicyError);
  assert.throws(() => parsePolicy('version: 1\nrepositories:\n  - mode: audit\n', 'x'), /pattern/);
  assert.throws(() => parsePolicy('version: 1\ndefault: {signOnPush: "releases"}\n', 'x'), PolicyError);
  assert.throws(() => parsePolicy('version: [1', 'x'), /not valid YAML or JSON/);
  // Patterns follow the one GUN-pattern grammar (src/core/tuf/gun-pattern.ts) that token scopes and
  // registry grants use: `**` is a whole segment, and no empty segments or `..`. `a**b` was read as
  // `a.*b` and so crossed segments: `team/a**b` matched team/a/x/b.
  for (const bad of ['team/a**b', 'team//app', 'team/../x', 'team/']) {
    assert.throws(
      () => parsePolicy(`version: 1\nrepositories:\n  - pattern: "${bad}"\n`, 'x'),
      (e: Error) => e instanceof PolicyError && e.message.includes(JSON.stringify(bad)),
      bad,
    );
  }
});

test('policy patterns match as token scopes do: a lone `*` or `**` needs a segment, `**` spans several', () => {
  const p = parsePolicy('version: 1\nrepositories:\n  - {pattern: "**/app", mode: audit}\n  - {pattern: "x/**/y", mode: "off"}\n', 'x');
  assert.equal(ruleFor(p, 'a/app').pattern, '**/app');
  assert.equal(ruleFor(p, 'a/b/app').pattern, '**/app');
  assert.equal(ruleFor(p, 'app').pattern, '(default)');
  assert.equal(ruleFor(p, 'x/1/y').pattern, 'x/**/y');
  assert.equal(ruleFor(p, 'x/1/2/y').pattern, 'x/**/y');
  assert.equal(ruleFor(p, 'x/y').pattern, '(default)');
});

let dir: string;
before(async () => {
  dir = await makeTempDir('proxy-policy');
});
after(() => removeTempDir(dir));

test('a changed policy file is picked up; an invalid one is refused and the old one stays', () => {
  const file = path.join(dir, 'reload.yaml');
  writeFileSync(file, 'version: 1\ndefault: {mode: audit}\n');
  const lines: string[] = [];
  const refusals = () => lines.filter((l) => l.includes('refused'));
  // An hour between polls: every step below is driven by check(), so nothing depends on timing.
  const src = new PolicySource(
    file,
    createLogger('info', (l) => lines.push(l)),
    3_600_000,
  );
  let changes = 0;
  src.onChange(() => changes++);
  try {
    assert.equal(src.current().default.mode, 'audit');
    assert.equal(src.check(), false, 'an unchanged file is not a change');
    writeFileSync(file, 'version: 1\ndefault: {mode: "off"}\nrepositories: [{pattern: "a/**", mode: enforce}]\n');
    assert.equal(src.check(), true);
    assert.equal(src.current().default.mode, 'off');
    assert.equal(ruleFor(src.current(), 'a/b').mode, 'enforce');
    // Rewritten at once with the same size: seen even when the stat cannot tell the two apart.
    writeFileSync(file, 'version: 1\ndefault: {mode: "off"}\nrepositories: [{pattern: "b/**", mode: enforce}]\n');
    assert.equal(src.check(), true);
    assert.equal(ruleFor(src.current(), 'b/c').mode, 'enforce');
    assert.equal(ruleFor(src.current(), 'a/b').mode, 'off');
    assert.equal(changes, 2);

    writeFileSync(file, 'version: 1\ndefault: {mode: "sometimes"}\n');
    assert.equal(src.check(), false);
    assert.equal(src.current().default.mode, 'off', 'the old policy stays in force');
    assert.equal(refusals().length, 1);
    const refused = JSON.parse(refusals()[0]!);
    assert.equal(refused.level, 'error');
    assert.match(refused.error, /mode/);
    assert.equal(src.check(), false);
    assert.equal(refusals().length, 1, 'a refused file is refused once, not on every check');
    // reload() reads the file whatever its stat says; the refused text is still refused.
    assert.equal(src.reload(), false);
    assert.equal(src.current().default.mode, 'off');
    writeFileSync(file, 'version: 1\ndefault: {mode: enforce}\n');
    assert.equal(src.check(), true);
    assert.equal(src.current().default.mode, 'enforce');
    assert.equal(changes, 3);
  } finally {
    src.close();
  }
});

test('the poll picks up a change written right after the policy was first read', async () => {
  const file = path.join(dir, 'poll.yaml');
  writeFileSync(file, 'version: 1\ndefault: {mode: audit}\n');
  const src = new PolicySource(file, createLogger('error'), 20);
  try {
    // No await in between: the file changes before the first poll can take its own stat.
    writeFileSync(file, 'version: 1\ndefault: {mode: "off"}\n');
    let changed = false;
    src.onChange(() => (changed = true));
    for (let i = 0; i < 500 && !changed; i++) await sleep(20);
    assert.ok(changed, 'the poll saw the change within 10 s');
    assert.equal(src.current().default.mode, 'off');
  } finally {
    src.close();
  }
});

describe('modes against a real registry', () => {
  let s: Stack;
  let file: string;
  before(async () => {
    file = path.join(dir, 'modes.yaml');
    writeFileSync(file, POLICY);
    s = await startStack({ env: { TRUSTGATE_POLICY: file } });
  });
  after(() => s?.stop());

  const direct = async (repo: string, tag: string) => {
    const img = await makeImageLayout(path.join(dir, `${repo.replace(/\//g, '-')}-${randomBytes(3).toString('hex')}`), { tag });
    await skopeoCopy(img.ref, `docker://${s.reg.host}/${repo}:${tag}`);
    return img;
  };
  const metric = async (name: string, labels: string) => {
    const text = await s.tg.app.metrics.registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  test('enforce denies unsigned; audit serves it and counts the violation; off passes through', async () => {
    await direct('team/app', 'v1');
    assert.equal(denied(await get(`${s.px.url}/v2/team/app/manifests/v1`)).detail.reason, 'no-trust-data');
    const audited = await direct('team/legacy-web', 'v1');
    const before = await metric('trustgate_proxy_audit_violations_total', 'repository="team/legacy-web",reason="no-trust-data"');
    for (let i = 0; i < 3; i++) {
      const r = await get(`${s.px.url}/v2/team/legacy-web/manifests/v1`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('docker-content-digest'), audited.manifest.digest);
    }
    assert.equal(await metric('trustgate_proxy_audit_violations_total', 'repository="team/legacy-web",reason="no-trust-data"'), before + 3);
    // the counters are on the trust server's /metrics too
    const exposed = await (await fetch(`${s.tg.url}/metrics`)).text();
    assert.match(exposed, /trustgate_proxy_audit_violations_total\{repository="team\/legacy-web",reason="no-trust-data"\} 3/);
    assert.match(exposed, /trustgate_proxy_pull_decisions_total\{mode="enforce",result="denied",reason="no-trust-data"\} \d+/);
    const open = await direct('team/legacy-app', 'v1');
    const r = await get(`${s.px.url}/v2/team/legacy-app/manifests/v1`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('docker-content-digest'), open.manifest.digest);
    assert.equal(await metric('trustgate_proxy_audit_violations_total', 'repository="team/legacy-app"'), 0);
  });

  test('pushes are signed into the role the policy names (a delegation created with a held key), or not at all', async () => {
    const img = await makeImageLayout(path.join(dir, 'ci'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${s.host}/ci/build:v1`, ['--dest-creds', s.creds]);
    const ci = await s.tg.app.trust.current(s.gun('ci/build'), 'targets/ci');
    assert.ok(ci, 'targets/ci was created and signed');
    assert.ok(JSON.parse(ci.bytes.toString()).signed.targets.v1);
    const r = await get(`${s.px.url}/v2/ci/build/manifests/v1`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('docker-content-digest'), img.manifest.digest);
    // default: signOnPush null, so the push lands upstream but nothing is signed and the pull is denied
    await skopeoCopy(img.ref, `docker://${s.host}/elsewhere/app:v1`, ['--dest-creds', s.creds]);
    assert.equal(await s.tg.app.trust.current(s.gun('elsewhere/app'), 'root'), undefined);
    denied(await get(`${s.px.url}/v2/elsewhere/app/manifests/v1`));
  });

  test('a threshold of two roles is not met by one signature', async () => {
    const img = await makeImageLayout(path.join(dir, 'strict'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${s.host}/strict/app:v1`, ['--dest-creds', s.creds]);
    const e = denied(await get(`${s.px.url}/v2/strict/app/manifests/v1`));
    assert.equal(e.detail.reason, 'policy-unmet');
    assert.match(e.message, /threshold is 2/);
  });

  test('the running proxy follows a policy change', async () => {
    await direct('team/flip', 'v1');
    denied(await get(`${s.px.url}/v2/team/flip/manifests/v1`));
    writeFileSync(file, POLICY.replace('"team/legacy-app"', '"team/flip"'));
    let status = 0;
    for (let i = 0; i < 300 && status !== 200; i++) {
      await sleep(50);
      status = (await get(`${s.px.url}/v2/team/flip/manifests/v1`)).status;
    }
    assert.equal(status, 200);
  });
});
