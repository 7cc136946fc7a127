#!/usr/bin/env bash
# The proof of issue 22 for `wal receive`: 10 trials each on PostgreSQL 15 and 18, in
# synchronous and batched mode. Each trial: a writer commits numbered rows and records when
# each commit was acknowledged; the primary and the receiver are SIGKILLed together at a
# random moment; the base backup is restored with --latest and with --time one second
# before the kill; acknowledged commits missing from the restore are counted. Synchronous
# mode (synchronous_standby_names = 'strongroom') must lose none; batched mode only
# commits acknowledged within the last second. The test suite runs one trial of each
# (crates/strongroom-cli/tests/wal_receive.rs); this runs the issue's ten. Not run by
# ./scripts/test: about ten minutes on two cores.
#
# Environment: TRIALS (10), STRONGROOM_TEST_SEED (replays a run), STRONGROOM_TEST_PG18_BINDIR.
# Prints one line per trial: commits acknowledged, lost, and how long before the kill the
# oldest lost one was acknowledged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export STRONGROOM_RECEIVE_TRIALS=${TRIALS:-10}
for mode in synchronous batched; do
  cargo test -q -p strongroom-cli --test wal_receive "${mode}_receive" -- --nocapture --test-threads 1 2>&1 |
    grep -E '^(seed|PostgreSQL|test result)|panicked' || true
done
