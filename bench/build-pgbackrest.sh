#!/usr/bin/env bash
# Builds pgBackRest 2.59.1, the newest release, from the source kept in
# ../shared/anchors/ (Debian ships only 2.45, which has no block incremental), into
# /opt/pgbr/build/src/pgbackrest: what bench/pg-physical.sh compares against. About a
# minute on two cores. Needs Debian's meson, ninja and the libraries below (installed when
# missing, as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=${PGBACKREST_SRC:-../shared/anchors/pgbackrest-2.59.1.tar.gz}
OUT=${PGBACKREST_BUILD:-/opt/pgbr}
[[ -f $SRC ]] || { echo "no pgBackRest source at $SRC; set PGBACKREST_SRC" >&2; exit 1; }
PKGS=(meson ninja-build gcc pkg-config libpq-dev libssl-dev libxml2-dev libyaml-dev libbz2-dev
      libzstd-dev liblz4-dev zlib1g-dev libssh2-1-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$OUT"
tar xzf "$SRC" -C "$OUT"
# --reconfigure only where an earlier build left a tree: meson refuses it on a fresh one.
RECONF=()
[[ -f $OUT/build/build.ninja ]] && RECONF=(--reconfigure)
meson setup "${RECONF[@]}" "$OUT/build" "$OUT/pgbackrest-2.59.1" >/dev/null
ninja -C "$OUT/build" >/dev/null
"$OUT/build/src/pgbackrest" version
