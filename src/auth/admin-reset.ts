// `node dist/main.js reset-admin-token` (npm run reset-admin-token): the offline recovery of a
// lost admin token, run on the server with access to its store. It revokes every admin token and
// makes a new one in one step (under the state lock, or a PostgreSQL transaction), so it is safe
// while the server runs, and a running server refuses the old tokens on their next request.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { AuditLog, type AuditInput } from '../audit/log.js';
import { PgAuditTrail } from '../audit/pg.js';
import { createLogger } from '../observability/log.js';
import { StateLock } from '../state/lock.js';
import { PgState } from '../state/pg.js';
import { PgTokens } from './tokens-pg.js';
import { TokenStore, adminTokenFile, writeAdminTokenFile, type AdminReset, type NewToken } from './tokens.js';

export const RESET_HELP = `trustgate reset-admin-token: revoke every admin token and write a new one (offline recovery)

usage: node dist/main.js reset-admin-token [--data-dir DIR]     (npm run reset-admin-token -- ...)

Run it on the server, as the service user, with the server's settings: it works on the store
directly (the data directory, or PostgreSQL when TRUSTGATE_DATABASE_URL is set), also while the
server runs. Every admin token stops working at once; the new one is printed once on stdout and
written to DIR/admin-token (mode 0600). The audit log records token.reset by local-admin.

options:
  --data-dir DIR   the server's data directory (default: TRUSTGATE_DATA_DIR, else ./data)
  -h, --help       this help

examples:
  npm run reset-admin-token -- --data-dir /var/lib/trustgate/data
  TRUSTGATE_DATABASE_URL=postgres://trustgate@db/trustgate node dist/main.js reset-admin-token
  export TRUSTGATE_TOKEN=$(node dist/main.js reset-admin-token --data-dir data)

exit status: 0 reset; 2 a wrong argument or data directory; 1 the store could not be changed.
`;

/** The settings the command needs, from the server's configuration with `env` over the environment. */
export type ResetSettings = (env: NodeJS.ProcessEnv) => { dataDir: string; databaseUrl?: string | undefined };

export interface ResetIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const RESET_TOKEN: Omit<NewToken, 'createdBy'> = { name: 'reset-admin', scopes: ['admin'] };

function operator(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** Runs the command; resolves to its exit status. */
export async function runResetAdminToken(
  argv: readonly string[],
  settings: ResetSettings,
  io: ResetIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  let dir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      io.out(RESET_HELP);
      return 0;
    }
    if (a === '--data-dir' && i + 1 < argv.length) dir = argv[++i];
    else if (a.startsWith('--data-dir=')) dir = a.slice('--data-dir='.length);
    else {
      io.err(`trustgate: reset-admin-token: unexpected argument ${JSON.stringify(a)} (see reset-admin-token --help)\n`);
      return 2;
    }
  }
  const s = settings(dir !== undefined ? { ...process.env, TRUSTGATE_DATA_DIR: dir } : process.env);
  if (!s.databaseUrl && !existsSync(s.dataDir)) {
    io.err(`trustgate: reset-admin-token: no data directory ${s.dataDir}: give the server's one with --data-dir (or TRUSTGATE_DATA_DIR)\n`);
    return 2;
  }
  const actor = { id: 'local-admin', name: operator() };
  const opts: NewToken = { ...RESET_TOKEN, createdBy: actor.id };
  const persist = (t: string) => writeAdminTokenFile(s.dataDir, t);
  const entry = (r: AdminReset): AuditInput => ({
    actor,
    action: 'token.reset',
    outcome: 'success',
    detail: { tokenId: r.info.id, name: r.info.name, scopes: r.info.scopes, revoked: r.revoked },
  });
  let r: AdminReset;
  try {
    r = s.databaseUrl ? await resetInPostgres(s.databaseUrl, opts, persist, entry) : resetInDataDir(s.dataDir, opts, persist, entry);
  } catch (e) {
    io.err(`trustgate: reset-admin-token: cannot reset the admin token: ${(e as Error).message}\n`);
    return 1;
  }
  io.err(
    `trustgate: revoked ${r.revoked.length} admin token(s)${r.revoked.length ? ` (${r.revoked.join(', ')})` : ''}; ` +
      `new admin token ${r.info.id} printed below and written to ${adminTokenFile(s.dataDir)} (mode 0600); ` +
      `the old ones no longer work, also on a running server\n`,
  );
  io.out(`${r.token}\n`);
  return 0;
}

function resetInDataDir(dataDir: string, opts: NewToken, persist: (t: string) => void, entry: (r: AdminReset) => AuditInput): AdminReset {
  const lock = new StateLock(dataDir);
  try {
    const tokens = new TokenStore(dataDir, Date.now, lock);
    const audit = new AuditLog(dataDir, Date.now, lock);
    return lock.run(() => {
      const r = tokens.resetAdmins(opts, persist);
      audit.append(entry(r));
      return r;
    });
  } finally {
    lock.close();
  }
}

async function resetInPostgres(
  url: string,
  opts: NewToken,
  persist: (t: string) => void,
  entry: (r: AdminReset) => AuditInput,
): Promise<AdminReset> {
  const db = await PgState.open(url);
  try {
    const r = await new PgTokens(db).resetAdmins(opts, persist);
    await new PgAuditTrail(db, createLogger('warn')).append(entry(r));
    return r;
  } finally {
    await db.close();
  }
}
