#!/usr/bin/env bash
# benches/crash-long.sh - the long crash-consistency campaign: the same test as the suite's
# tests/crash_consistency.rs (power cut at every write and flush index of seeded workloads,
# crash images with any subset of the unflushed writes in any order and one torn write),
# with many more cases, built with optimisations.
#
# Usage: benches/crash-long.sh [CASES] [FIRST_SEED]    (default 100000 cases, seed 1000)
# Prints the case count and the workload seeds covered; a failure prints the workload seed,
# cut index and crash seed that reproduce it (rerun with STABLEFS_CRASH_SEED=that seed).
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-100000}
SEED=${2:-1000}
[[ $CASES =~ ^[0-9]+$ && $SEED =~ ^[0-9]+$ ]] || { echo "usage: $0 [CASES] [FIRST_SEED]" >&2; exit 2; }
export STABLEFS_CRASH_CASES=$CASES STABLEFS_CRASH_SEED=$SEED
start=$(date +%s)
cargo test --release --test crash_consistency -- --nocapture 2>&1 | grep -E "crash cases|panicked|workload seed|test result"
echo "elapsed: $(( $(date +%s) - start )) s"
