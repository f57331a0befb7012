// V10 (durability): a trustgate process (npm start) killed with SIGKILL while repositories are
// created and tags signed keeps, for every request it answered, the key files it reported and
// the audit entry of the change.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { startTrustgateProcess } from '../helpers/trustgate.js';

const GUNS = 8;
const TAGS = 4;

interface AuditLine {
  action: string;
  outcome: string;
  gun?: string;
  role?: string;
  detail?: { version?: number };
}

test('V10: after kill -9, every answered key creation has its key files and every answered signing its audit entry', async () => {
  const dir = await makeTempDir('kill-durable');
  const data = path.join(dir, 'data');
  const keys = path.join(dir, 'keys');
  const { url, proc, adminToken } = await startTrustgateProcess(
    { TRUSTGATE_DATA_DIR: data, TRUSTGATE_KEYS_DIR: keys, TRUSTGATE_KEY_PASSPHRASE: 'kill-test-passphrase', TRUSTGATE_LOG_LEVEL: 'warn' },
    path.join(dir, 'trustgate.log'),
  );
  try {
    const admin = adminToken!;
    const headers = { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' };
    const created: Array<{ gun: string; keyIds: string[] }> = [];
    const signed: Array<{ gun: string; role: string; version: number }> = [];
    let killed = false;
    const kill = () => {
      if (killed) return;
      killed = true;
      proc.child.kill('SIGKILL');
    };
    // Killed straight after the answer that brings the count of answers to this.
    const killAt = GUNS + Math.floor((GUNS * TAGS) / 2);
    const answered = () => {
      if (created.length + signed.length >= killAt) kill();
    };
    const post = async (p: string, body: unknown) => {
      try {
        const res = await fetch(`${url}/api/v1${p}`, { method: 'POST', headers, body: JSON.stringify(body) });
        return { status: res.status, body: (await res.json()) as any };
      } catch {
        return undefined; // the process is gone
      }
    };
    await Promise.all(
      Array.from({ length: GUNS }, async (_, g) => {
        const gun = `example.com/kill/app${g}`;
        const repo = await post('/repositories', { gun, rootKey: 'keystore' });
        if (killed || repo?.status !== 201) return;
        created.push({ gun, keyIds: (repo.body.repository.roles as Array<{ keyIds: string[] }>).flatMap((r) => r.keyIds) });
        answered();
        for (let t = 0; t < TAGS && !killed; t++) {
          const r = await post('/signing/sign', { gun, tag: `v${t}`, digest: `sha256:${String(t).repeat(64)}`, size: 10 + t });
          if (killed || r?.status !== 201) return;
          for (const p of r.body.published as Array<{ gun: string; role: string; version: number }>) signed.push(p);
          answered();
        }
      }),
    );
    kill();
    await proc.stop();
    assert.ok(created.length > 0 && signed.length > 0, `answered before the kill: ${created.length} creations, ${signed.length} signings`);
    const audit = readFileSync(path.join(data, 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as AuditLine);
    for (const c of created) {
      assert.ok(c.keyIds.length >= 4, `${c.gun}: ${c.keyIds.length} keys`);
      for (const id of c.keyIds) assert.ok(existsSync(path.join(keys, `${id}.key.json`)), `${c.gun}: key ${id} answered but not on disk`);
      assert.ok(
        audit.some((a) => a.action === 'repository.create' && a.outcome === 'success' && a.gun === c.gun),
        `${c.gun}: creation not audited`,
      );
    }
    for (const s of signed) {
      assert.ok(
        audit.some(
          (a) =>
            a.action === 'tag.sign' && a.outcome === 'success' && a.gun === s.gun && a.role === s.role && a.detail?.version === s.version,
        ),
        `${s.gun} ${s.role} v${s.version}: signed and answered, but not audited`,
      );
    }
  } finally {
    await proc.stop();
    await removeTempDir(dir);
  }
});
