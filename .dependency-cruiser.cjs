// The layer rule of docs/architecture.md, checked by `npm run lint:deps` (part of `npm run lint`).
// Each layer imports only itself and the layers below it:
//   root (app.ts, main.ts, cluster/) > edges > trust > adapters > shared > core.
// Type-only imports count: a type import ties two folders as much as a value import.
const CORE = 'core';
const SHARED = 'http|config|observability';
const ADAPTERS = 'storage|keystore|registry|audit|auth|state|tsa';
const TRUST = 'trust';
const EDGES = 'notary|management|signing|proxy|cli|dashboard';

/** A dependency from `layer` to anything in src/ outside `allowed` folders is an error. */
const layer = (name, from, allowed, comment) => ({
  name,
  comment,
  severity: 'error',
  from: { path: `^src/(${from})/` },
  to: { path: '^src/', pathNot: `^src/(${allowed})/` },
});

module.exports = {
  forbidden: [
    layer('core-is-pure', CORE, CORE, 'core/ (TUF, canonical JSON, crypto) imports nothing else in src/.'),
    layer('shared-imports-core', SHARED, `${SHARED}|${CORE}`, 'http/, config/, observability/ import only each other and core/.'),
    layer(
      'adapters-import-shared',
      ADAPTERS,
      `${ADAPTERS}|${SHARED}|${CORE}`,
      'Adapters import shared, core and the adapters that adapters-sideways allows.',
    ),
    {
      name: 'adapters-sideways',
      comment: 'Between adapters only state/ (the data directory) and audit/ (the log every writer records to) are imported.',
      severity: 'error',
      from: { path: `^src/(${ADAPTERS})/` },
      to: { path: `^src/(${ADAPTERS})/`, pathNot: ['^src/$1/', '^src/(state|audit)/'] },
    },
    layer('trust-imports-adapters', TRUST, `${TRUST}|${ADAPTERS}|${SHARED}|${CORE}`, 'trust/ imports adapters, shared and core.'),
    layer('edges-import-trust', EDGES, `${EDGES}|${TRUST}|${ADAPTERS}|${SHARED}|${CORE}`, 'An edge imports no composition root.'),
    {
      name: 'edges-are-separate',
      comment: 'An edge (an API, the proxy, the CLI) imports no other edge: what two share lives in a lower layer.',
      severity: 'error',
      from: { path: `^src/(${EDGES})/` },
      to: { path: `^src/(${EDGES})/`, pathNot: '^src/$1/' },
    },
    {
      name: 'cli-over-http',
      comment: 'The CLI talks to the server over HTTP: it imports core/ and shared/ only, never server code.',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/', pathNot: `^src/(cli|${SHARED}|${CORE})/` },
    },
    {
      name: 'only-root-reads-config',
      comment: 'config/config.ts parses the whole environment; below the root, code takes its own plain options.',
      severity: 'error',
      from: { pathNot: '^src/(app\\.ts|main\\.ts|cluster/|config/)' },
      to: { path: '^src/config/config\\.ts$' },
    },
    {
      name: 'no-folder-cycle',
      comment: 'No import cycle between folders of src/.',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
