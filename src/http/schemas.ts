// The JSON Schemas in `api/` (the same files openapi.yaml refers to) validate request bodies, so
// what the documentation says is what the server enforces.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { badRequest } from './api-error.js';

export const SCHEMA_BASE = 'https://trustgate.example/api/';
/** `api/` at the package root, from src/management or dist/management alike. */
export const API_DIR = fileURLToPath(new URL('../../api/', import.meta.url));

export function loadSchemas(dir = API_DIR): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: false, strict: true, allowUnionTypes: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .sort()) {
    const schema = JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as { $id?: string };
    // Only the management API's own schemas; other files in api/ belong to other features.
    if (schema.$id?.startsWith(SCHEMA_BASE)) ajv.addSchema(schema);
  }
  return ajv;
}

function describe(e: ErrorObject): string {
  const where = e.instancePath ? `body${e.instancePath.replace(/\//g, '.')}` : 'body';
  if (e.keyword === 'additionalProperties')
    return `${where} has an unknown field ${JSON.stringify(String(e.params.additionalProperty).slice(0, 40))}`;
  if (e.keyword === 'enum') return `${where} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
  return `${where} ${e.message ?? 'is invalid'}`;
}

export class RequestValidator {
  private cache = new Map<string, ValidateFunction>();
  constructor(private ajv: Ajv2020 = loadSchemas()) {}

  /** Validates `body` against `ref` (e.g. `keys.json#/$defs/ImportKeyRequest`), or throws a 400. */
  check(ref: string, body: unknown): void {
    let v = this.cache.get(ref);
    if (!v) {
      v = this.ajv.getSchema(SCHEMA_BASE + ref);
      if (!v) throw new Error(`no schema ${ref}`);
      this.cache.set(ref, v);
    }
    if (v(body)) return;
    const e = v.errors?.[0];
    if (!e) throw badRequest('INVALID_REQUEST', 'invalid request body');
    if (e.keyword === 'enum' && /\/algorithm$/.test(e.instancePath)) throw badRequest('UNKNOWN_ALGORITHM', `${describe(e)}`);
    throw badRequest('INVALID_REQUEST', describe(e));
  }
}
