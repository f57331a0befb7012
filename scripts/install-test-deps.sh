#!/usr/bin/env bash
# Installs the real external components the test suite runs against (Debian 12 packages):
# the notary CLI and reference notary-server, docker-registry, skopeo, PostgreSQL, Redis,
# SoftHSM2, and for test/deploy HAProxy, buildah (vfs storage, chroot isolation: no daemon)
# and mmdebstrap (the image's base), curl (the README's first-run block), and Chromium (the
# dashboard's browser tests, driven by playwright-core: no browser download). Skips apt
# entirely when everything is already present. Needs root or sudo -n.
set -euo pipefail

PACKAGES=(notary docker-registry skopeo postgresql redis-server softhsm2 openssl haproxy buildah mmdebstrap curl chromium)
BINARIES=(notary notary-server docker-registry skopeo redis-server softhsm2-util openssl haproxy buildah mmdebstrap curl chromium)

missing=()
for b in "${BINARIES[@]}"; do
  command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
# PostgreSQL server binaries are not on PATH on Debian.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(initdb)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages (missing: ${missing[*]})"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep postinst scripts from starting system-wide postgres/redis/registry
  # daemons; the tests start their own on free ports.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  cleanup_policy() { if [ "$created_policy" = 1 ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup_policy EXIT
  # Another apt or unattended-upgrades may hold the dpkg lock: wait for it (up to 10 minutes).
  LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
  timeout 900 "${SUDO[@]}" apt-get "${LOCK_WAIT[@]}" update
  timeout 1500 "${SUDO[@]}" apt-get "${LOCK_WAIT[@]}" install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"
  cleanup_policy
  created_policy=0
else
  echo "== Debian packages already present, skipping apt-get"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "Node >= 20 required, found $(node --version)" >&2
  exit 1
fi

