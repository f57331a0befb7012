// Key files, tokens (and pending changes: the same SharedFile) and the audit log are on disk
// before a request is answered: whole files are written to a temporary file, fsynced, renamed
// and their directory fsynced; an audit entry is fsynced after its append. Observed with strace
// on the real components in a child process.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeTempDir, runCommand } from '../helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Event {
  call: string;
  /** fsync, pwrite64: the file's path (strace -y); rename/link: [from, to]. */
  args: string[];
}

let dir: string;
let events: Event[];
let keyFile: string;

before(async () => {
  dir = await makeTempDir('durable');
  const trace = path.join(dir, 'strace.txt');
  const work = path.join(dir, 'state');
  const r = await runCommand(
    'strace',
    [
      '-f',
      '-y',
      '-qq',
      '-e',
      'trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,pwrite64',
      '-o',
      trace,
      process.execPath,
      '--import',
      'tsx',
      'test/hardening/durable-worker.ts',
      work,
    ],
    { cwd: ROOT },
  );
  assert.equal(r.code, 0, r.stderr);
  keyFile = (JSON.parse(r.stdout) as { keyFile: string }).keyFile;
  events = readFileSync(trace, 'utf8')
    .split('\n')
    .map((line) => /^\d+\s+(\w+)\((.*)\)\s+=\s+\d+$/.exec(line))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => ({
      call: m[1]!.replace(/^(rename|link)at2?$/, '$1').replace(/^fdatasync$/, 'fsync'),
      args:
        m[1]!.includes('sync') || m[1] === 'pwrite64'
          ? [/<(.*)>/.exec(m[2]!)?.[1] ?? '']
          : [...m[2]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!),
    }));
});

after(async () => {
  if (dir) await removeTempDir(dir);
});

/** `file` was replaced by rename or link from a temporary file fsynced before, and its directory fsynced after. */
function assertDurableReplace(file: string): void {
  let i = events.length - 1;
  while (i >= 0 && !((events[i]!.call === 'rename' || events[i]!.call === 'link') && events[i]!.args[1] === file)) i--;
  assert.ok(
    i >= 0,
    `${file}: not written by rename or link (${JSON.stringify(events.filter((e) => e.args.some((a) => a.startsWith(path.dirname(file)))))})`,
  );
  const tmp = events[i]!.args[0]!;
  assert.ok(
    events.slice(0, i).some((e) => e.call === 'fsync' && e.args[0] === tmp),
    `${file}: ${tmp} not fsynced before it replaced the file`,
  );
  assert.ok(
    events.slice(i + 1).some((e) => e.call === 'fsync' && e.args[0] === path.dirname(file)),
    `${file}: its directory not fsynced after the rename`,
  );
}

test('fsync: a key file is written durably (temp file fsynced, renamed, directory fsynced)', () => {
  assertDurableReplace(keyFile);
  assertDurableReplace(path.join(path.dirname(keyFile), 'keystore.json'));
});

test('fsync: the generated key-encryption secret is written durably', () => {
  assertDurableReplace(path.join(dir, 'state', 'data', 'keystore.secret'));
});

test('fsync: the token file (SharedFile, as pending changes) is written durably', () => {
  assertDurableReplace(path.join(dir, 'state', 'data', 'tokens.json'));
});

test('fsync: an audit entry is fsynced after its append, and the head file written durably', () => {
  const log = path.join(dir, 'state', 'data', 'audit.jsonl');
  const head = path.join(dir, 'state', 'data', 'audit.head');
  assert.ok(
    events.some((e) => e.call === 'fsync' && e.args[0] === log),
    'audit.jsonl not fsynced',
  );
  // Created by a durable replace; the next head overwrites it in place, after the log's fsync, and is fsynced.
  assertDurableReplace(head);
  let last = events.length - 1;
  while (last >= 0 && !(events[last]!.call === 'pwrite64' && events[last]!.args[0] === head)) last--;
  assert.ok(last >= 0, 'the second head was not written in place');
  const synced = events.slice(0, last).filter((e) => e.call === 'fsync' && (e.args[0] === log || e.args[0] === head));
  assert.equal(synced.at(-1)?.args[0], log, 'the head was rewritten before the log was fsynced');
  assert.ok(
    events.slice(last + 1).some((e) => e.call === 'fsync' && e.args[0] === head),
    'the rewritten head was not fsynced',
  );
});
