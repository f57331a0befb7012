// Where GET /backup puts its copy while it is sent: a 0700 directory `.backup-XXXXXX` in the
// data directory, removed once the answer is done. A process killed meanwhile leaves it behind,
// holding a whole copy of the metadata; the next start removes such leftovers.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/log.js';

export const BACKUP_DIR_PREFIX = '.backup-';

/** A new, empty backup directory in `dataDir` (mkdtemp makes it 0700). */
export const makeBackupDir = (dataDir: string): Promise<string> => mkdtemp(join(dataDir, BACKUP_DIR_PREFIX));

/**
 * Removes the backup directories left in `dataDir` by a process that stopped mid-backup. Only
 * for a start with no other process serving from this data directory yet (one process, or the
 * cluster primary before it forks), since a live worker's backup is in such a directory too. A
 * process still finishing its requests while the new one starts can lose a backup it is writing
 * (that request fails; one being sent goes on, from the removed file).
 */
export async function removeLeftoverBackups(dataDir: string, log: Logger): Promise<void> {
  let entries;
  try {
    entries = await readdir(dataDir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // a first start: nothing to clean
    throw e;
  }
  for (const e of entries) {
    if (!e.isDirectory() || !e.name.startsWith(BACKUP_DIR_PREFIX)) continue;
    const dir = join(dataDir, e.name);
    try {
      await rm(dir, { recursive: true, force: true });
      log('warn', 'removed a backup copy left by an earlier run', { dir });
    } catch (err) {
      // Not a reason to refuse to start: the copy stays, and the log says where.
      log('error', 'cannot remove a backup copy left by an earlier run', { dir, error: (err as Error).message });
    }
  }
}
