// Picks the store from configuration: PostgreSQL when a URL is given, else embedded SQLite.
import { join } from 'node:path';
import { SqliteStore } from './sqlite.js';
import type { Logger } from '../observability/log.js';
import type { MetadataStore } from './types.js';

export async function openStore(opts: { databaseUrl?: string; dataDir: string; log?: Logger }): Promise<MetadataStore> {
  // pg is loaded only when it is used.
  if (opts.databaseUrl) return (await import('./postgres.js')).PostgresStore.open(opts.databaseUrl, opts.log ? { log: opts.log } : {});
  return new SqliteStore(opts.dataDir === ':memory:' ? ':memory:' : join(opts.dataDir, 'trustgate.db'));
}
