// Validates management API responses against openapi.yaml and the JSON Schemas in api/ it
// refers to, and records which (operation, status) pairs the tests have seen.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SCHEMA_BASE = 'https://trustgate.example/api/';

interface Operation {
  method: string;
  template: string;
  regex: RegExp;
  literals: number;
  responses: Record<string, any>;
  op: any;
}

export function loadApiSchemas(): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  for (const f of readdirSync(`${ROOT}/api`).filter((n) => n.endsWith('.json'))) {
    const s = JSON.parse(readFileSync(`${ROOT}/api/${f}`, 'utf8')) as { $id?: string };
    if (s.$id?.startsWith(SCHEMA_BASE)) ajv.addSchema(s);
  }
  return ajv;
}

/** `api/keys.json#/$defs/X` (as openapi.yaml writes it) → the schema's absolute URI. */
export const refUri = (ref: string) => {
  assert.match(ref, /^api\/[a-z-]+\.json(#.*)?$/, `openapi refers to ${ref}, not to a file in api/`);
  return SCHEMA_BASE + ref.slice('api/'.length);
};

export class OpenApiChecker {
  readonly doc: any;
  readonly ajv = loadApiSchemas();
  readonly ops: Operation[] = [];
  readonly seen = new Set<string>();
  private cache = new Map<string, ValidateFunction>();

  constructor() {
    this.doc = YAML.parse(readFileSync(`${ROOT}/openapi.yaml`, 'utf8'));
    for (const [template, item] of Object.entries<Record<string, unknown>>(this.doc.paths)) {
      for (const method of ['get', 'post', 'put', 'delete', 'patch']) {
        const op = item[method] as any;
        if (!op) continue;
        if ((op.tags ?? []).includes('signing')) continue; // the signing routes (src/signing) are checked by test/signing
        const segs = template.split('/');
        this.ops.push({
          method,
          template,
          regex: new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`),
          literals: segs.filter((s) => s && !s.startsWith('{')).length,
          responses: op.responses,
          op,
        });
      }
    }
    this.ops.sort((a, b) => b.literals - a.literals);
  }

  /** Follows `#/components/...` references inside openapi.yaml. */
  deref(v: any): any {
    while (v && typeof v.$ref === 'string' && v.$ref.startsWith('#/')) {
      v = v.$ref
        .slice(2)
        .split('/')
        .reduce((o: Record<string, unknown>, k: string) => o?.[k], this.doc);
    }
    return v;
  }

  operation(method: string, path: string): Operation | undefined {
    return this.ops.find((o) => o.method === method && o.regex.test(path));
  }

  validator(ref: string): ValidateFunction {
    let v = this.cache.get(ref);
    if (!v) {
      v = this.ajv.getSchema(refUri(ref));
      assert.ok(v, `no schema ${ref}`);
      this.cache.set(ref, v);
    }
    return v;
  }

  /**
   * A documented response that is a file (GET /backup), not JSON: its media type, once asserted
   * to be `format: binary`; undefined when the response has a JSON body.
   */
  fileAnswer(resp: { content?: Record<string, { schema?: { format?: string } }> }, what: string): string | undefined {
    if (resp.content?.['application/json']) return undefined;
    const [type, media] = Object.entries(resp.content ?? {})[0] ?? [];
    assert.equal(media?.schema?.format, 'binary', `${what} has no JSON schema, and is not a binary answer either`);
    return type;
  }

  /** Asserts that a response is documented for its operation and status and matches the schema. */
  check(method: string, rawPath: string, res: { status: number; body: unknown; headers: Record<string, string> }): void {
    const path = rawPath.replace(/^\/api\/v1/, '').replace(/\?.*$/, '');
    const op = this.operation(method.toLowerCase(), path);
    assert.ok(op, `${method} ${path} is not in openapi.yaml`);
    const r = this.deref(op.responses[String(res.status)]);
    assert.ok(r, `${method} ${op.template} does not document status ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
    const what = `${method} ${op.template} ${res.status}`;
    const file = this.fileAnswer(r, what);
    if (file !== undefined) {
      // The documented media type, with its length.
      assert.equal(res.headers['content-type'], file, `${what}: content type`);
      assert.ok(Number(res.headers['content-length']) > 0, `${what}: a length`);
    } else {
      const schema = r.content['application/json'].schema;
      assert.ok(schema?.$ref, `${what} has no JSON schema`);
      const v = this.validator(schema.$ref);
      if (!v(res.body)) {
        assert.fail(`${what} does not match ${schema.$ref}: ${this.ajv.errorsText(v.errors)}\n${JSON.stringify(res.body).slice(0, 1500)}`);
      }
    }
    if (res.status === 401) assert.match(res.headers['www-authenticate'] ?? '', /^Bearer /);
    assert.equal(res.headers['cache-control'], 'no-store');
    this.seen.add(`${op.method} ${op.template} ${res.status}`);
  }
}
