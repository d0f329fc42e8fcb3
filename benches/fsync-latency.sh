#!/usr/bin/env bash
# benches/fsync-latency.sh - how long fsync of one small file takes while another process
# streams writes into the same filesystem (issue 4: fsync must not have to write everything).
#
# A stablefs image is mounted (release build); fio streams 1 MiB buffered writes into one file
# for DURATION seconds; meanwhile a probe appends 4 KiB to another file and fsyncs it every
# 100 ms, timing each fsync. The same probe also runs on an idle mount for comparison.
# Prints p50 / p90 / p99 / max fsync latency for both, and the streamer's throughput.
#
# Usage: benches/fsync-latency.sh [--duration 20] [--work DIR]     (needs root, fio, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=20 WORK=target/bench-fsync
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
cargo build --release -q
BIN=$PWD/target/release/stablefs
mkdir -p "$WORK"; WORK=$(realpath "$WORK"); MNT=$WORK/mnt; IMG=$WORK/fsync.img
cleanup() {
  local i
  for i in $(seq 1 30); do mountpoint -q "$MNT" || break; umount "$MNT" 2>/dev/null || sleep 1; done
  rm -f "$IMG"
}
trap cleanup EXIT
cleanup; mkdir -p "$MNT"
"$BIN" mkfs --size 8G "$IMG" >/dev/null
"$BIN" mount --log "$WORK/daemon.log" "$IMG" "$MNT"

probe() { # seconds label
  python3 - "$MNT/probe-$2" "$1" "$2" <<'PY'
import os, sys, time, statistics
path, secs, label = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
block, lat, end = b"p" * 4096, [], time.monotonic() + secs
while time.monotonic() < end:
    os.write(fd, block)
    t = time.perf_counter(); os.fsync(fd); lat.append(time.perf_counter() - t)
    time.sleep(0.1)
os.close(fd)
lat.sort(); q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{label:>10}: {len(lat)} fsyncs  p50 {q(.5):.1f} ms  p90 {q(.9):.1f} ms  p99 {q(.99):.1f} ms  max {lat[-1]*1000:.1f} ms")
PY
}

echo "fsync latency of a 4 KiB append ($(date -u +%F), $(nproc) cores, $(uname -r))"
probe "$((DURATION / 2))" idle
fio --name=stream --filename="$MNT/stream" --rw=write --bs=1M --size=3G --time_based \
    --runtime="$DURATION" --ioengine=psync --output-format=terse > "$WORK/fio.out" 2>&1 &
FIO=$!
sleep 1
probe "$((DURATION - 2))" streaming
wait $FIO
awk -F';' '{printf "  streamer: %d MB/s buffered 1 MiB writes\n", $48/1024}' "$WORK/fio.out"
