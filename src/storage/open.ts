// Picks the store from configuration: PostgreSQL when a URL is given, else embedded SQLite.
import { join } from 'node:path';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { Logger } from '../observability/log.js';
import type { MetadataStore } from './types.js';

export async function openStore(opts: { databaseUrl?: string; dataDir: string; log?: Logger }): Promise<MetadataStore> {
  if (opts.databaseUrl) return PostgresStore.open(opts.databaseUrl, opts.log ? { log: opts.log } : {});
  return new SqliteStore(opts.dataDir === ':memory:' ? ':memory:' : join(opts.dataDir, 'trustgate.db'));
}
