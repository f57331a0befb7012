// Tokens in PostgreSQL (TRUSTGATE_DATABASE_URL), shared by every instance: a row per token with
// the sha256 of the secret, never the secret. Every lookup reads the table (no cache), so a token
// made on one instance works on the next request anywhere, and a revoked one fails everywhere
// once the revocation is answered. Changes that look at all tokens (revoking, the first admin)
// run under one advisory lock.
import { LOCKS, type PgState } from '../state/pg.js';
import {
  INITIAL_ADMIN,
  type AdminReset,
  LastAdminTokenError,
  TokenStore,
  expired,
  hashToken,
  isTokenShaped,
  newTokenRecord,
  type NewToken,
  type TokenInfo,
  type TokenRecord,
  type Tokens,
} from './tokens.js';

const parse = (rows: { record: string }[]) => rows.map((r) => JSON.parse(r.record) as TokenRecord);

export class PgTokens implements Tokens {
  constructor(
    private db: PgState,
    private now: () => number = Date.now,
  ) {}

  private async insert(
    run: (sql: string, args: unknown[]) => Promise<unknown>,
    opts: NewToken,
  ): Promise<{ token: string; info: TokenInfo }> {
    const { token, rec } = newTokenRecord(opts, this.now());
    await run('INSERT INTO state_tokens (id, hash, record) VALUES ($1, $2, $3)', [rec.id, rec.hash, JSON.stringify(rec)]);
    return { token, info: TokenStore.info(rec) };
  }

  create(opts: NewToken) {
    return this.insert((sql, args) => this.db.write(sql, args), opts);
  }

  async authenticate(token: string): Promise<TokenRecord | undefined> {
    if (!isTokenShaped(token)) return undefined;
    const r = await this.db.read<{ record: string }>('SELECT record FROM state_tokens WHERE hash = $1', [hashToken(token)]);
    const rec = parse(r.rows)[0];
    return rec && !expired(rec, this.now()) ? rec : undefined;
  }

  async list(): Promise<TokenInfo[]> {
    const r = await this.db.read<{ record: string }>('SELECT record FROM state_tokens');
    return parse(r.rows)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
      .map(TokenStore.info);
  }

  async get(id: string): Promise<TokenInfo | undefined> {
    const r = await this.db.read<{ record: string }>('SELECT record FROM state_tokens WHERE id = $1', [id]);
    const rec = parse(r.rows)[0];
    return rec && TokenStore.info(rec);
  }

  revoke(id: string, opts: { keepAnAdmin?: boolean } = {}): Promise<boolean> {
    return this.db.tx(LOCKS.tokens, async (c) => {
      if (opts.keepAnAdmin) {
        const all = parse((await c.query<{ record: string }>('SELECT record FROM state_tokens')).rows);
        const admins = all.filter((t) => t.scopes.includes('admin') && !expired(t, this.now()));
        if (admins.length === 1 && admins[0]!.id === id) throw new LastAdminTokenError('this is the last admin token');
      }
      const r = await c.query('DELETE FROM state_tokens WHERE id = $1', [id]);
      return (r.rowCount ?? 0) > 0;
    });
  }

  resetAdmins(opts: NewToken, persist: (token: string) => void): Promise<AdminReset> {
    return this.db.tx(LOCKS.tokens, async (c) => {
      const all = parse((await c.query<{ record: string }>('SELECT record FROM state_tokens')).rows);
      const revoked = all.filter((t) => t.scopes.includes('admin')).map((t) => t.id);
      if (revoked.length) await c.query('DELETE FROM state_tokens WHERE id = ANY($1)', [revoked]);
      const made = await this.insert((sql, args) => c.query(sql, args), opts);
      persist(made.token); // before COMMIT, as in bootstrap
      return { ...made, revoked };
    });
  }

  bootstrap(persist: (token: string) => void): Promise<{ token: string; info: TokenInfo } | undefined> {
    // Under the lock, so of instances starting together on an empty database exactly one makes it.
    return this.db.tx(LOCKS.tokens, async (c) => {
      const n = await c.query<{ n: string }>('SELECT count(*) AS n FROM state_tokens');
      if (Number(n.rows[0]!.n) > 0) return undefined;
      const made = await this.insert((sql, args) => c.query(sql, args), INITIAL_ADMIN);
      persist(made.token); // before COMMIT: a token nobody can read is never the only admin
      return made;
    });
  }
}
