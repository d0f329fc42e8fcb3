#!/usr/bin/env bash
# benches/scrub.sh - offline scrub throughput against fio sequential O_DIRECT reads of the same
# image, alternating in one run (the disk here swings between minutes: only interleaved ratios
# mean anything).
#
# Setup, once: an image of IMAGE size (default 4G), `stablefs mkfs`, mounted (release build),
# filled with FILES files of SIZE/FILES each (default 2G in 4 files), unmounted.
# Then ROUNDS times, the order flipping every round, with caches dropped before each:
#   raw    fio --rw=read --bs=4M --direct=1 --ioengine=psync over the first SIZE bytes of the
#          image (the filled part of a copy-on-write image is near its start)
#   scrub  stablefs scrub IMAGE: every block the commit references, both metadata copies
#          (its own bytes_read / elapsed, from --json)
#   online the image mounted, caches dropped, then stablefs scrub MOUNTPOINT: the same work done
#          by the daemon (its report's bytes_read / elapsed), then unmounted
# Prints MB/s per round, the medians and the medians of the per-round ratios scrub/raw and
# online/raw.
#
# Usage: benches/scrub.sh [--rounds 3] [--size 2G] [--image 4G] [--files 4] [--work DIR] [--keep]
#                         [--bin PATH]
#   --bin  a stablefs binary to use instead of building target/release/stablefs (to compare
#          builds: run the script once per build, alternating)
# Needs root, fio, python3.
set -euo pipefail
export LC_ALL=C
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3 SIZE=2G IMAGE=4G FILES=4 WORK=$REPO/target/bench-scrub KEEP=0 BIN=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --image) IMAGE=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --bin) BIN=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scrub.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "scrub.sh: needs root" >&2; exit 2; }
command -v fio >/dev/null || { echo "scrub.sh: needs fio" >&2; exit 2; }
if [ -z "$BIN" ]; then
  (cd "$REPO" && cargo build --release -q)
  BIN=$REPO/target/release/stablefs
fi
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
IMG=$WORK/scrub.img MNT=$WORK/mnt
cleanup() {
  local i
  for i in $(seq 1 30); do mountpoint -q "$MNT" || break; umount "$MNT" 2>/dev/null || sleep 1; done
  [ $KEEP = 1 ] || rm -f "$IMG"
  rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$MNT"
bytes() { numfmt --from=iec "$1"; }
SIZE_B=$(bytes "$SIZE")
rm -f "$IMG"
"$BIN" mkfs --size "$IMAGE" "$IMG" >/dev/null
"$BIN" mount "$IMG" "$MNT"
per=$((SIZE_B / FILES))
for i in $(seq 1 "$FILES"); do
  fio --name=fill --filename="$MNT/file-$i" --rw=write --bs=1M --size="$per" \
      --ioengine=psync --end_fsync=1 --output-format=terse >/dev/null
done
umount "$MNT"
for i in $(seq 1 100); do pgrep -f "stablefs mount $IMG" >/dev/null || break; sleep 0.1; done

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
raw() {
  drop
  fio --name=raw --filename="$IMG" --rw=read --bs=4M --size="$SIZE_B" --direct=1 \
      --ioengine=psync --output-format=terse | awk -F';' '{printf "%.0f", $7/1024*1.048576}'
}
scrub_rate() {
  drop
  "$BIN" scrub --json "$IMG" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["result"] == "clean", r["result"]
print(round(r["bytes_read"] / r["elapsed"] / 1e6))'
}
online_rate() {
  "$BIN" mount "$IMG" "$MNT"
  drop
  "$BIN" scrub --json "$MNT" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["result"] == "clean", r["result"]
print(round(r["bytes_read"] / r["elapsed"] / 1e6))'
  umount "$MNT"
  for i in $(seq 1 100); do pgrep -f "stablefs mount $IMG" >/dev/null || break; sleep 0.1; done
}
echo "scrub.sh $(date -u +%F) $(nproc) cores $(uname -r): $SIZE of data on a $IMAGE image"
printf "%-6s %-20s %10s %10s %10s %7s %7s\n" round order raw_MB/s scrub_MB/s online_MB/s ratio online
RAWS=() SCRUBS=() ONLINES=() RATIOS=() ORATIOS=()
for r in $(seq 1 "$ROUNDS"); do
  # The three targets rotate, so each comes first, second and third in turn.
  case $((r % 3)) in
    1) a=$(raw); b=$(scrub_rate); c=$(online_rate); order="raw scrub online" ;;
    2) b=$(scrub_rate); c=$(online_rate); a=$(raw); order="scrub online raw" ;;
    0) c=$(online_rate); a=$(raw); b=$(scrub_rate); order="online raw scrub" ;;
  esac
  ratio=$(python3 -c "print(f'{$b/$a:.2f}')")
  oratio=$(python3 -c "print(f'{$c/$a:.2f}')")
  printf "%-6s %-20s %10s %10s %10s %7s %7s\n" "$r" "$order" "$a" "$b" "$c" "${ratio}x" "${oratio}x"
  RAWS+=("$a"); SCRUBS+=("$b"); ONLINES+=("$c"); RATIOS+=("$ratio"); ORATIOS+=("$oratio")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "median: raw $(median "${RAWS[@]}") MB/s, offline scrub $(median "${SCRUBS[@]}") MB/s (ratio $(median "${RATIOS[@]}")x), online scrub $(median "${ONLINES[@]}") MB/s (ratio $(median "${ORATIOS[@]}")x)"
