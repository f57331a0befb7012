// scripts/install-test-deps.sh waits for the dpkg lock another apt holds instead of failing at
// once. apt itself does the waiting (DPkg::Lock::Timeout); holding the system's lock in a test
// would need root and stop other installs, so this checks that every apt-get call asks for it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { runCommand } from '../helpers/services.js';

const script = new URL('../../scripts/install-test-deps.sh', import.meta.url);

test('every apt-get call in install-test-deps.sh waits for the dpkg lock', async () => {
  const text = readFileSync(script, 'utf8');
  const calls = text.split('\n').filter((l) => /\bapt-get \S/.test(l) && !/^\s*(#|echo)/.test(l));
  assert.ok(calls.length >= 2, 'update and install');
  for (const c of calls) assert.match(c, /"\$\{LOCK_WAIT\[@\]\}"/, c);
  assert.match(text, /LOCK_WAIT=\(-o DPkg::Lock::Timeout=\d{3,}\)/);
  assert.equal((await runCommand('bash', ['-n', script.pathname])).code, 0, 'the script parses');
});
