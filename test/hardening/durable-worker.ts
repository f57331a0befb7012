// Run by durable.test.ts under strace: one write of each kind of durable state, through the real
// components, in the directory given as the first argument.
import { join } from 'node:path';
import { resolvePassphrase } from '../../src/app.js';
import { AuditLog } from '../../src/audit/log.js';
import type { Config } from '../../src/config/config.js';
import { TokenStore } from '../../src/auth/tokens.js';
import { FileKeyStore } from '../../src/keystore/file.js';

const dir = process.argv[2]!;
resolvePassphrase({ dataDir: join(dir, 'data') } as Config, () => undefined);
const keys = FileKeyStore.open(join(dir, 'keys'), 'durable-test-passphrase');
const rec = await keys.generate('example.com/durable/app', 'targets', 'ecdsa');
new TokenStore(join(dir, 'data')).create({ name: 'durable', scopes: ['admin'], createdBy: 'test' });
const audit = new AuditLog(join(dir, 'data'));
// The first append creates the head file, the second rewrites it in place.
for (let i = 0; i < 2; i++)
  audit.append({ actor: { id: 'test', name: 'test' }, action: 'tag.sign', outcome: 'success', gun: 'example.com/durable/app' });
process.stdout.write(JSON.stringify({ keyFile: join(dir, 'keys', `${rec.id}.key.json`) }) + '\n');
