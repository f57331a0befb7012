#!/usr/bin/env bash
# Whole test suite: typecheck, then every test/**/*.test.ts, one file at a time
# (interop tests start real daemons; serial keeps ports/CPU predictable).
# Does NOT install anything: the documented command is `npm ci && npm test`.
# Extra arguments are passed to `node --test` (e.g. --test-name-pattern=notary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -f tsconfig.check.json ]; then
  echo "== typecheck (tsc -p tsconfig.check.json)"
  npx --no-install tsc -p tsconfig.check.json
fi

echo "== lint (npm run lint)"
npm run --silent lint

echo "== format (npm run format:check)"
npm run --silent format:check

# find instead of a ** glob so this works without globstar; sorted for a stable order.
mapfile -t files < <(find test -name '*.test.ts' -type f -not -path '*/node_modules/*' | LC_ALL=C sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no test files found under test/" >&2
  exit 1
fi

echo "== node --test (${#files[@]} files)"
# spec reporter explicitly: when stdout is not a TTY node defaults to TAP, and we
# want the human summary lines (ℹ tests / ℹ pass / ℹ fail) in CI logs.
exec node --import tsx --import ./test/helpers/watchdog.ts --test --test-concurrency=1 --test-timeout=300000 \
  --test-reporter=spec "$@" "${files[@]}"
