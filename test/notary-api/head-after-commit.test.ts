// After a publish, trustgate answers GETs from a chain head built from the rows it just wrote
// (TrustService.headAfterCommit) instead of reading them back. Those answers must be exactly what
// a server reading the store gives: a second instance on the same data directory serves as that
// reference, for every top-level file, after every publish, whichever instance published.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { authedAgent, raw, targetMeta, TufRepo, tufPath, type Agent } from '../helpers/tuf-builder.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { newGun } from './support.js';

let a: RunningTrustgate;
let b: RunningTrustgate;
before(async () => {
  a = await startTrustgate();
  b = await startTrustgate({ dir: a.dir });
});
after(async () => {
  await b?.stop();
  await a?.stop();
});

const HEADERS = ['last-modified', 'content-length', 'content-type', 'cache-control'];

async function sameAnswers(gun: string, agents: [Agent, Agent]): Promise<void> {
  for (const file of ['timestamp.json', 'snapshot.json', 'targets.json', 'root.json']) {
    const [x, y] = await Promise.all(agents.map((ag) => raw(ag.get(tufPath(gun, file)))));
    assert.equal(x!.status, 200, `${file}: ${x!.body.toString()}`);
    assert.equal(y!.status, 200, `${file}: ${y!.body.toString()}`);
    assert.ok(x!.body.equals(y!.body), `${file}: the publishing instance and a reader of the store serve different bytes`);
    for (const h of HEADERS) assert.equal(x!.headers[h], y!.headers[h], `${file}: ${h}`);
  }
}

test('GETs right after each publish match what the store holds, on either instance', async () => {
  const agentA = authedAgent(request(a.url), a.adminToken);
  const agentB = authedAgent(request(b.url), a.adminToken);
  const gun = newGun('head-after-commit');
  const repoA = await TufRepo.init(agentA, gun, { serverSnapshot: true });
  await sameAnswers(gun, [agentA, agentB]);
  for (let i = 0; i < 4; i++) {
    const res = await repoA.publish(
      await repoA.files([['targets', repoA.next('targets', (t) => (t.targets[`v${i}`] = targetMeta(`image ${i}`)))]]),
    );
    assert.equal(res.status, 200, res.body.toString());
    await sameAnswers(gun, [agentA, agentB]);
    const listed = JSON.parse((await raw(agentB.get(tufPath(gun, 'targets.json')))).body.toString()) as {
      signed: { targets: Record<string, unknown> };
    };
    assert.equal(Object.keys(listed.signed.targets).length, i + 1);
  }
  // A publish through the other instance: the first one's cached head must give way to it.
  const repoB = await TufRepo.init(agentB, newGun('head-after-commit-b'), { serverSnapshot: true });
  await sameAnswers(repoB.gun, [agentB, agentA]);
});
