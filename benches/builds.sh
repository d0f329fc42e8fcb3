#!/usr/bin/env bash
# benches/builds.sh - compares two stablefs builds in one run, alternating: the sequential
# write and cold read of benches/seq.sh, the offline and online scrub of benches/scrub.sh, and
# the metadata workload (W5: create, cold stat, unlink of small files) of shared/bench/peers.sh.
# Every round runs each workload on the old build and on the new one, the order flipping every
# round (the disk here swings between minutes: only interleaved figures compare). Prints the
# per-round figures and their medians, and the medians of the per-round ratios new/old.
#
# Usage: benches/builds.sh OLD_BINARY NEW_BINARY [--rounds 3] [--size 2G] [--files 20000]
#                          [--work DIR]
# Needs root, fio, python3, gcc (peers.sh builds its metadata program), and the shared/ folder
# beside the repo (peers.sh).
set -euo pipefail
export LC_ALL=C
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/../shared/bench/peers.sh
ROUNDS=3 SIZE=2G FILES=20000 WORK=$REPO/target/bench-builds
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2"); shift 2
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    *) echo "builds.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "builds.sh: needs root" >&2; exit 2; }
[ -x "$PEERS" ] || [ -f "$PEERS" ] || { echo "builds.sh: no $PEERS" >&2; exit 2; }
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
OUT=$WORK/figures.txt; : > "$OUT"

# One line per measurement: ROUND BUILD WORKLOAD VALUE
measure() {
  local r=$1 name=$2 bin=$3
  local w=$WORK/$name
  bash "$REPO/benches/seq.sh" --only stablefs --rounds 1 --size "$SIZE" --bin "$bin" \
    --work "$w/seq" > "$w.seq.log" 2>&1
  python3 - "$w/seq/out" "$r" "$name" >> "$OUT" <<'PY'
import json, sys
out, r, name = sys.argv[1:]
for rw in ('write', 'read'):
    text = open(f'{out}/r1.stablefs.{rw}.json').read()
    d = json.loads(text[text.index('{'):])
    print(r, name, f'seq_{rw}_MB/s', round(sum(j[rw]['bw_bytes'] for j in d['jobs']) / 1e6))
PY
  bash "$REPO/benches/scrub.sh" --rounds 1 --size "$SIZE" --bin "$bin" --work "$w/scrub" \
    > "$w.scrub.log" 2>&1
  awk -v r="$r" -v n="$name" '$1 == "1" { print r, n, "scrub_offline_MB/s", $6; print r, n, "scrub_online_MB/s", $7 }' \
    "$w.scrub.log" >> "$OUT"
  bash "$PEERS" --work "$w/peers" --size 1G --runtime 10 --files "$FILES" --targets extra \
    --extra "$bin mount -f {img} {mnt}" --extra-mkfs "$bin mkfs --size 4G {img}" \
    --extra-name "$name" > "$w.peers.log" 2>&1
  python3 - "$w/peers/result.md" "$r" "$name" >> "$OUT" <<'PY'
import sys
path, r, name = sys.argv[1:]
for line in open(path):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    for key, label in (('W5 create 4KiB files (ops/s)', 'W5_create_ops/s'),
                       ('W5 stat cold (ops/s)', 'W5_stat_cold_ops/s'),
                       ('W5 unlink (ops/s)', 'W5_unlink_ops/s')):
        if cells and cells[0] == key:
            print(r, name, label, cells[1].replace(',', ''))
PY
}

for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for b in $order; do
    if [ "$b" = old ]; then bin=$OLD; else bin=$NEW; fi
    echo "round $r: $b ($bin)" >&2
    measure "$r" "$b" "$bin"
  done
done

python3 - "$OUT" "$ROUNDS" "$OLD" "$NEW" <<'PY'
import collections, statistics, sys
out, rounds, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
v = collections.defaultdict(dict)
for line in open(out):
    r, b, w, x = line.split()
    v[w][(int(r), b)] = float(x)
print(f'builds.sh: old {old}, new {new}; {rounds} alternating rounds (medians; per round in brackets)')
print()
print('| workload | old | new | new/old |')
print('|---|---|---|---|')
for w, d in v.items():
    olds = [d.get((r, 'old')) for r in range(1, rounds + 1)]
    news = [d.get((r, 'new')) for r in range(1, rounds + 1)]
    ratios = [n / o for o, n in zip(olds, news) if o and n]
    fmt = lambda xs: ' '.join(f'{x:,.0f}' for x in xs if x is not None)
    med = lambda xs: statistics.median([x for x in xs if x is not None])
    print(f'| {w} | {med(olds):,.0f} ({fmt(olds)}) | {med(news):,.0f} ({fmt(news)}) | '
          f'{statistics.median(ratios):.2f}x ({" ".join(f"{x:.2f}" for x in ratios)}) |')
PY
