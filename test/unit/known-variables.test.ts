// Every TRUSTGATE_* name the source reads is in KNOWN_VARIABLES, so a setting added later is not
// warned about as a misspelling at start.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KNOWN_VARIABLES } from '../../src/config/config.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

test('every TRUSTGATE_* name in src/ is a known variable', () => {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const used = new Set<string>();
  for (const f of files) {
    // Whole names only: a name followed by `_` is a prefix used in a message (TRUSTGATE_HTTP_*).
    for (const m of readFileSync(path.join(SRC, f), 'utf8').matchAll(/TRUSTGATE_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])/g)) used.add(m[0]);
  }
  const unknown = [...used].filter((n) => !KNOWN_VARIABLES.includes(n) && !n.startsWith('TRUSTGATE_TEST_'));
  assert.deepEqual(unknown, []);
  assert.ok(used.size > 40, `found ${used.size} names`);
});
