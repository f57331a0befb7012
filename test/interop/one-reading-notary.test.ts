// V5 (security issue 13) with the real notary CLI: Go's encoding/json reads a targets.json holding
// both "targets" and "Targets" by the last one, so `notary list` would show another digest than the
// one trustgate verified. Such a publish is refused and what notary lists stays what was signed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { authedAgent, initRepo, publish, targetMeta } from '../helpers/tuf-builder.js';

let tg: RunningTrustgate;
before(async () => {
  tg = await startTrustgate();
});
after(() => tg.stop());

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

async function notaryList(gun: string) {
  const cli = await notaryCli({ server: tg.url });
  try {
    return parseNotaryList((await cli.runOk(['list', gun])).stdout).map((t) => `${t.name} ${t.digest}`);
  } finally {
    await cli.cleanup();
  }
}

test('V5: a targets.json with both targets and Targets is refused, and notary list still shows the signed digest', async () => {
  const gun = `registry.example.com:5000/interop/v5-${process.pid}`;
  const agent = authedAgent(request(tg.url), tg.adminToken);
  const repo = await initRepo(agent, gun, { serverSnapshot: true });
  assert.equal((await repo.addTarget('v1', 'honest')).status, 200);
  assert.deepEqual(await notaryList(gun), [`v1 ${hex('honest')}`]);

  // Signed as notary signs (over the canonical JSON of the parsed object), with "Targets" written last.
  const body = repo.next('targets', (b) => void (b.targets.v1 = targetMeta('honest')));
  const canonical = canonicalBytes(body).toString('utf8');
  const at = canonical.indexOf(',"version"');
  const text = `${canonical.slice(0, at)},"Targets":${JSON.stringify({ v1: targetMeta('evil') })}${canonical.slice(at)}`;
  const sig = (await repo.targetsKey.sign(canonicalBytes(JSON.parse(text)))).toString('base64');
  const file = Buffer.from(`{"signed":${text},"signatures":[{"keyid":"${repo.targetsKey.id}","method":"ecdsa","sig":"${sig}"}]}`);
  const res = await publish(agent, gun, [['targets', file]]);
  assert.equal(res.status, 400, res.body.toString());
  assert.match(res.body.toString(), /key \\"Targets\\" is not the field \\"targets\\"/);
  assert.deepEqual(await notaryList(gun), [`v1 ${hex('honest')}`]);
});
