#!/usr/bin/env bash
# benches/fsx-long.sh - the long fsx run: fsx (crates.io `fsx` 0.3.x) with the operation mix of
# tests/fsx.toml (every operation kind on) for 1,000,000 operations per seed on a stablefs
# mount made with the release binary. Not a benchmark: a torture run too long for the test
# suite (tests/fsx.rs runs the same mix for 100,000 operations at three seeds).
#
# For each seed, in turn: a fresh image (mkfs), mount, fsx on one file, the file is
# checksummed, unmount (the daemon must exit 0), mount again, the file must read back the same,
# unmount; the daemon log must hold no checksum error. One result line per seed:
#   fsx-long: seed S: N ops A-OK in T s (remount: same contents)
#   fsx-long: seed S: FAILED ...        (fsx's last lines and the daemon log's follow)
# and a last line `fsx-long: all N seeds passed` or `fsx-long: K of N seeds FAILED`.
#
# Usage: benches/fsx-long.sh [--ops N] [--config PATH] [--msync] [--bin PATH] [--fsx PATH]
#                            [--work DIR] [--keep] SEED...
#   SEED          one or more fixed seeds (decimal u64), e.g. 191110531 20261120 3141592653
#   --ops         operations per seed (default 1000000; at least 1000000 for the documented run)
#   --config      fsx configuration (default tests/fsx.toml)
#   --msync       msync(MS_SYNC) after every mapwrite (the configuration with
#                 `nomsyncafterwrite = false`): a commit per mapwrite, about 3x slower
#   --bin         a stablefs binary to use instead of building target/release/stablefs
#   --fsx         the fsx binary (default: fsx on PATH or in ~/.cargo/bin)
#   --work        work dir (default target/bench/fsx-long); fsx artifacts and logs in WORK/SEED
#   --keep        keep the images
# Needs root and /dev/fuse. Exit status 0 only if every seed passed.

set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPS=1000000 CONFIG=$REPO/tests/fsx.toml MSYNC=0 BIN="" FSX="" WORK=$REPO/target/bench/fsx-long KEEP=0
SEEDS=()

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "fsx-long: $*" >&2; exit 1; }
bad() { echo "fsx-long: $*" >&2; echo "try: benches/fsx-long.sh --help" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then bad "$1 needs a value"; fi; }
while [ $# -gt 0 ]; do
  case $1 in
    --ops) need_arg "$@"; OPS=$2; shift 2 ;;
    --config) need_arg "$@"; CONFIG=$2; shift 2 ;;
    --msync) MSYNC=1; shift ;;
    --bin) need_arg "$@"; BIN=$2; shift 2 ;;
    --fsx) need_arg "$@"; FSX=$2; shift 2 ;;
    --work) need_arg "$@"; WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) bad "unknown option: $1" ;;
    *) SEEDS+=("$1"); shift ;;
  esac
done
[ ${#SEEDS[@]} -gt 0 ] || bad "give at least one seed"
for s in "${SEEDS[@]}"; do [[ $s =~ ^[0-9]+$ ]] || bad "seed '$s' is not a decimal number"; done
[[ $OPS =~ ^[1-9][0-9]*$ ]] || bad "--ops: '$OPS' is not a positive number"
[ -f "$CONFIG" ] || bad "--config: no such file: $CONFIG"
CONFIG=$(realpath "$CONFIG")

[ "$(id -u)" = 0 ] || die "needs root (mounts)"
[ -c /dev/fuse ] || die "/dev/fuse is missing"
if [ -z "$FSX" ]; then
  FSX=$(PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" command -v fsx) ||
    die "fsx not found: cargo install --locked fsx --version '^0.3'"
fi
"$FSX" -V | grep -q '^fsx 0\.3\.' || die "$FSX is not fsx 0.3.x ($("$FSX" -V))"

mkdir -p "$WORK"
WORK=$(realpath "$WORK")
MNT=$WORK/mnt IMG=$WORK/stablefs.img
DPID="" LOGF="" MAP_COUNT_WAS=""

# ---------- cleanup: only what this script made; the daemon only by the pid it started ----------
mounted() { awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
umount_retry() {
  local i
  for ((i = 0; i < 20; i++)); do
    mounted || return 0
    umount "$MNT" 2>/dev/null && return 0
    sleep 0.5
  done
  umount "$MNT"
}
wait_daemon() { # seconds; returns the daemon's exit status, 124 if it is still running
  local i rc=0
  [ -n "$DPID" ] || return 0
  for ((i = 0; i < $1 * 10; i++)); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DPID" 2>/dev/null && return 124
  wait "$DPID" || rc=$?
  DPID=""
  return $rc
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if mounted; then umount_retry 2>/dev/null || true; fi
  if [ -n "$DPID" ]; then
    wait_daemon 30 || true
    if [ -n "$DPID" ]; then kill -KILL "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
  fi
  if mounted; then umount -l "$MNT" 2>/dev/null || true; fi
  [ $KEEP = 1 ] || rm -f "$IMG"
  [ -z "$MAP_COUNT_WAS" ] || sysctl -q -w vm.max_map_count="$MAP_COUNT_WAS" || true
  rmdir "$MNT" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sfs_mount() {
  local i
  # The daemon's own log and its stdout/stderr go to one file, both appending.
  # shellcheck disable=SC2094
  "$BIN" mount -f --log "$LOGF" "$IMG" "$MNT" >> "$LOGF" 2>&1 &
  DPID=$!
  for ((i = 0; i < 200; i++)); do
    mounted && return 0
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$LOGF" >&2
  die "stablefs did not mount $IMG on $MNT"
}
sfs_umount() {
  local rc=0
  umount_retry || die "umount $MNT failed"
  wait_daemon 60 || rc=$?
  [ $rc = 0 ] || { tail -20 "$LOGF" >&2; die "the stablefs daemon exited with $rc after umount"; }
}

# ---------- setup ----------
mounted && die "$MNT is already mounted (an earlier run?): umount it first"
if [ -z "$BIN" ]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
  BIN=$REPO/target/release/stablefs
fi
[ -x "$BIN" ] || die "$BIN is not an executable"
mkdir -p "$MNT"
if [ $MSYNC = 1 ]; then
  grep -q '^nomsyncafterwrite = ' "$CONFIG" || die "$CONFIG has no nomsyncafterwrite line"
  sed 's/^nomsyncafterwrite = .*/nomsyncafterwrite = false/' "$CONFIG" > "$WORK/fsx-msync.toml"
  CONFIG=$WORK/fsx-msync.toml
fi

# fsx 0.3.x never unmaps the mapping of a map read (domapread has no munmap): each one stays
# until fsx exits, and a run makes up to OPS * 5/45 of them (about 100,000 per million operations),
# past Linux's default vm.max_map_count of 65,530. At that limit the next mmap, or the stack
# guard page of sendfile's helper thread, fails with ENOMEM and fsx aborts (as a first long run
# here did after 1,582 s). Raise the limit for the run and put it back afterwards.
MAP_COUNT_WAS=$(sysctl -n vm.max_map_count)
MAP_COUNT_NEED=$((OPS + 65530))
if [ "$MAP_COUNT_WAS" -lt "$MAP_COUNT_NEED" ]; then
  sysctl -q -w vm.max_map_count="$MAP_COUNT_NEED" || die "cannot raise vm.max_map_count"
else
  MAP_COUNT_WAS=""
fi

# ---------- one seed ----------
failed=0
run_seed() {
  local seed=$1 out=$WORK/$1 start took rc=0 sum1 sum2
  rm -rf "$out"; mkdir -p "$out"
  LOGF=$out/stablefs.log
  rm -f "$IMG"
  "$BIN" mkfs --size 1G "$IMG" > "$out/mkfs.log" 2>&1 || { cat "$out/mkfs.log" >&2; die "mkfs failed"; }
  sfs_mount
  log "seed $seed: fsx -N $OPS -f $CONFIG"
  start=$SECONDS
  "$FSX" -f "$CONFIG" -N "$OPS" -S "$seed" -P "$out" "$MNT/fsx.data" \
    > "$out/fsx.out" 2> "$out/fsx.err" || rc=$?
  took=$((SECONDS - start))
  if [ $rc != 0 ] || ! grep -q 'All operations completed A-OK!' "$out/fsx.out"; then
    echo "fsx-long: seed $seed: FAILED (fsx exit $rc after $took s; log in $out)"
    sed "/LOG DUMP/q" "$out/fsx.err" | tail -60
    tail -20 "$out/fsx.err"
    tail -20 "$LOGF"
    sfs_umount
    return 1
  fi
  sum1=$(sha256sum < "$MNT/fsx.data")
  sfs_umount
  sfs_mount
  sum2=$(sha256sum < "$MNT/fsx.data")
  sfs_umount
  if [ "$sum1" != "$sum2" ]; then
    echo "fsx-long: seed $seed: FAILED: $OPS ops A-OK but the file changed across a remount"
    return 1
  fi
  if grep -q 'checksum error' "$LOGF"; then
    echo "fsx-long: seed $seed: FAILED: $OPS ops A-OK but the daemon logged checksum errors"
    grep 'checksum error' "$LOGF" | head -5
    return 1
  fi
  echo "fsx-long: seed $seed: $OPS ops A-OK in $took s (remount: same contents)"
}

for seed in "${SEEDS[@]}"; do
  run_seed "$seed" || failed=$((failed + 1))
done
if [ $failed = 0 ]; then
  echo "fsx-long: all ${#SEEDS[@]} seeds passed ($OPS ops each)"
else
  echo "fsx-long: $failed of ${#SEEDS[@]} seeds FAILED"
  exit 1
fi
