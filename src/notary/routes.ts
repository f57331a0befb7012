// The Notary API's routes, as notary's server declares them (server/server.go, RootHandler): each
// names its methods, path, operation and the access it needs. The handler dispatches by this table
// and hands the matched entry to the authorisation hook: a route's permission is declared here only.
import type { NotaryAccess } from '../auth/notary-auth.js';
import type { Operation } from '../observability/metrics.js';

const ROLE = '(?:root|snapshot|timestamp|targets(?:/[^/\\s]+)*)';

export interface NotaryRoute extends NotaryAccess {
  operation: Operation | 'Ping' | 'Health' | 'Metrics';
  methods: readonly string[];
  /** The path as notary's router declares it; `{gun}` is everything before `/_trust/`. */
  path: string;
  /** What the rest of the path after `/v2/{gun}/_trust/tuf/` must match (TUF routes only). */
  file?: RegExp;
}

/**
 * `actions`: notary's PermissionsRequired, the access a registry token must grant (`catalog` is
 * `registry:catalog:*`). `permission`: what a trustgate token needs on the GUN; notary's `*` is
 * `admin` for a delete and `sign` for a key rotation, which signers do.
 */
export const NOTARY_ROUTES: readonly NotaryRoute[] = [
  { operation: 'Health', methods: ['GET'], path: '/_notary_server/health', actions: [], permission: 'none' },
  { operation: 'Metrics', methods: ['GET'], path: '/metrics', actions: [], permission: 'none' },
  { operation: 'Ping', methods: ['GET'], path: '/v2/', actions: [], permission: 'ping' },
  { operation: 'Changefeed', methods: ['GET'], path: '/v2/_trust/changefeed', actions: ['catalog'], permission: 'read' },
  { operation: 'Changefeed', methods: ['GET'], path: '/v2/{gun}/_trust/changefeed', actions: ['pull'], permission: 'read' },
  { operation: 'UpdateTUF', methods: ['POST'], path: '/v2/{gun}/_trust/tuf/', file: /^$/, actions: ['push', 'pull'], permission: 'sign' },
  { operation: 'DeleteTUF', methods: ['DELETE'], path: '/v2/{gun}/_trust/tuf/', file: /^$/, actions: ['*'], permission: 'admin' },
  {
    operation: 'GetRoleByHash',
    methods: ['GET'],
    path: '/v2/{gun}/_trust/tuf/{role}.{checksum}.json',
    file: new RegExp(`^(${ROLE})\\.([0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})\\.json$`),
    actions: ['pull'],
    permission: 'read',
  },
  {
    operation: 'GetRoleByVersion',
    methods: ['GET'],
    path: '/v2/{gun}/_trust/tuf/{version}.{role}.json',
    file: new RegExp(`^([1-9]*[0-9]+)\\.(${ROLE})\\.json$`),
    actions: ['pull'],
    permission: 'read',
  },
  // Also the handler's synchronous fast path for the top-level roles.
  {
    operation: 'GetRole',
    methods: ['GET'],
    path: '/v2/{gun}/_trust/tuf/{role}.json',
    file: new RegExp(`^(${ROLE})\\.json$`),
    actions: ['pull'],
    permission: 'read',
  },
  {
    operation: 'GetKey',
    methods: ['GET'],
    path: '/v2/{gun}/_trust/tuf/{role}.key',
    file: /^(snapshot|timestamp)\.key$/,
    actions: ['push', 'pull'],
    permission: 'sign',
  },
  {
    operation: 'RotateKey',
    methods: ['POST'],
    path: '/v2/{gun}/_trust/tuf/{role}.key',
    file: /^(snapshot|timestamp)\.key$/,
    actions: ['*'],
    permission: 'sign',
  },
];
