// The health endpoint names a failed check but not its error text (hosts, ports, paths), which
// anyone may ask for; the detail goes to the log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startPostgres } from '../helpers/services.js';
import { startTrustgate } from '../helpers/trustgate.js';

test('health: storage down answers 503 with a generic message, the error text only in the log', async (t) => {
  if (process.env.TRUSTGATE_TEST_DATABASE_URL) return t.skip('needs its own PostgreSQL server to stop');
  const pg = await startPostgres();
  const tg = await startTrustgate({ env: { TRUSTGATE_DATABASE_URL: pg.url }, logs: 'debug' });
  try {
    assert.equal((await fetch(`${tg.url}/_notary_server/health`)).status, 200);
    await pg.stop();
    const res = await fetch(`${tg.url}/_notary_server/health`);
    const text = await res.text();
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(text), { storage: 'unavailable' });
    assert.ok(!text.includes(String(pg.port)) && !/ECONN|refused|terminat|connect/i.test(text), text);
    const logged = tg.logs
      .map((l) => JSON.parse(l) as { level: string; msg: string; error?: string })
      .find((l) => l.msg.startsWith('health check failed'));
    assert.equal(logged?.level, 'error');
    assert.ok(logged?.error, 'the storage error is logged');
  } finally {
    await Promise.race([tg.stop(), new Promise((r) => setTimeout(r, 5000))]);
    await pg.stop();
  }
});
