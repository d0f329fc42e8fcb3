#!/usr/bin/env bash
# benches/seq.sh - sequential 1 MiB write and cold read of one large file through a stablefs
# mount, against the same fio jobs with O_DIRECT straight on an image file on the same disk
# (raw: the physical limit here). Targets alternate within one run, several rounds; the order
# flips every round (raw first in odd rounds, stablefs first in even ones).
#
# Every round, each target gets fresh files, so both always write into new, unwritten space:
#   raw       WORK/raw.img, SIZE, fallocated; fio with direct=1
#   stablefs  WORK/stablefs.img, 3*SIZE+1G (room for copy-on-write and metadata), fallocated and
#             made by `stablefs mkfs`, mounted with `stablefs mount -f`; fio buffered, on one
#             file of SIZE in it
# The fio jobs (the same for both but for direct=):
#   write  --rw=write --bs=1M --size=SIZE --end_fsync=1 --ioengine=psync --fallocate=none
#   read   --rw=read  (cold: stablefs is unmounted, caches dropped, mounted again first)
#
# Usage: benches/seq.sh [--rounds 3] [--size 2G] [--work DIR] [--only raw|stablefs]
#                       [--bin PATH] [--mount-opts OPTS] [--keep]
#   --work        work dir (default target/bench); results in WORK/out, images removed at exit
#   --only        run one target (the ratios are then left out)
#   --bin         a stablefs binary to use instead of building target/release/stablefs
#   --mount-opts  passed to `stablefs mount -o`
#   --keep        keep the images at exit
# Needs root, fio, python3, fallocate, numfmt. Prints a table per round, then the median MB/s
# of each target and the median of the per-round ratios stablefs/raw, and writes
# WORK/out/result.md: a block to paste into benches/RESULTS.md.

set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3 SIZE=2G WORK=$REPO/target/bench ONLY="" BIN="" MOUNT_OPTS="" KEEP=0

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "seq.sh: $*" >&2; exit 1; }
bad() { echo "seq.sh: $*" >&2; echo "try: benches/seq.sh --help" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then bad "$1 needs a value"; fi; }
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
    --size) need_arg "$@"; SIZE=$2; shift 2 ;;
    --work) need_arg "$@"; WORK=$2; shift 2 ;;
    --only) need_arg "$@"; ONLY=$2; shift 2 ;;
    --bin) need_arg "$@"; BIN=$2; shift 2 ;;
    --mount-opts) need_arg "$@"; MOUNT_OPTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) bad "unknown argument: $1" ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bad "--rounds must be a positive integer, not '$ROUNDS'"
case $ONLY in ""|raw|stablefs) ;; *) bad "--only takes raw or stablefs, not '$ONLY'" ;; esac
command -v numfmt >/dev/null || die "missing: numfmt"
SIZE_B=$(numfmt --from=iec "$SIZE" 2>/dev/null) || bad "--size: cannot read '$SIZE' (use e.g. 2G, 512M)"
[ "$SIZE_B" -ge $((16 << 20)) ] || bad "--size must be at least 16M"
SIZE_B=$(( SIZE_B / 1048576 * 1048576 ))
IMG_B=$(( 3 * SIZE_B + (1 << 30) ))

[ "$(id -u)" = 0 ] || die "needs root (mounts, drop_caches)"
for c in fio python3 fallocate findmnt; do command -v $c >/dev/null || die "missing: $c"; done

TARGETS=(raw stablefs)
[ -n "$ONLY" ] && TARGETS=("$ONLY")
run_sfs=0
[ "$ONLY" != raw ] && run_sfs=1

mkdir -p "$WORK"
WORK=$(realpath "$WORK")
OUT=$WORK/out MNT=$WORK/mnt RAW_IMG=$WORK/raw.img SFS_IMG=$WORK/stablefs.img
DPID=""

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
  [ $KEEP = 1 ] || rm -f "$RAW_IMG" "$SFS_IMG"
  rmdir "$MNT" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------- setup ----------
mounted && die "$MNT is already mounted (an earlier run?): umount it first"
if [ $run_sfs = 1 ] && [ -z "$BIN" ]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
  BIN=$REPO/target/release/stablefs
fi
[ $run_sfs = 0 ] || [ -x "$BIN" ] || die "$BIN is not an executable"
rm -rf "$OUT"; mkdir -p "$OUT" "$MNT"
rm -f "$RAW_IMG" "$SFS_IMG"
need=$(( (run_sfs ? IMG_B : 0) + SIZE_B + (1 << 30) ))
avail=$(df --output=avail -B1 "$WORK" | tail -1)
[ "$avail" -ge "$need" ] || die "$WORK has $(numfmt --to=iec "$avail") free; needs $(numfmt --to=iec "$need")"

DROP_OK=1
drop_caches() {
  sync
  if ! echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    [ $DROP_OK = 0 ] || log "NOTE: drop_caches not permitted; cold reads rely on umount only"
    DROP_OK=0
  fi
}
settle() { sync; sleep 2; }   # let discards from removed files finish before the next measurement

sfs_mount() {
  local i opts=()
  [ -n "$MOUNT_OPTS" ] && opts=(-o "$MOUNT_OPTS")
  # The daemon's own log and its stdout/stderr go to one file, both appending.
  # shellcheck disable=SC2094
  "$BIN" mount -f "${opts[@]}" --log "$OUT/stablefs.log" "$SFS_IMG" "$MNT" >> "$OUT/stablefs.log" 2>&1 &
  DPID=$!
  for ((i = 0; i < 200; i++)); do
    mounted && return 0
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$OUT/stablefs.log" >&2
  die "stablefs did not mount $SFS_IMG on $MNT"
}
sfs_umount() {
  local rc=0
  umount_retry || die "umount $MNT failed"
  wait_daemon 60 || rc=$?
  [ $rc = 0 ] || { tail -20 "$OUT/stablefs.log" >&2; die "the stablefs daemon exited with $rc after umount"; }
}

# fio TARGET ROUND RW DIRECT FILE
run_fio() {
  local t=$1 r=$2 rw=$3 direct=$4 file=$5
  local args=(--name="$t-$rw" --filename="$file" --rw="$rw" --bs=1M --size="$SIZE_B"
              --ioengine=psync --iodepth=1 --direct="$direct" --fallocate=none)
  [ "$rw" = write ] && args+=(--end_fsync=1)
  echo "round $r $t: fio ${args[*]}" >> "$OUT/commands.txt"
  log "round $r: $t $rw"
  fio --output-format=json --output="$OUT/r$r.$t.$rw.json" "${args[@]}" \
    || die "fio failed ($t $rw, round $r)"
}

round_raw() { # round
  rm -f "$RAW_IMG"; settle
  fallocate -l "$SIZE_B" "$RAW_IMG"
  run_fio raw "$1" write 1 "$RAW_IMG"
  drop_caches
  run_fio raw "$1" read 1 "$RAW_IMG"
  rm -f "$RAW_IMG"
}

round_sfs() { # round
  rm -f "$SFS_IMG"; settle
  fallocate -l "$IMG_B" "$SFS_IMG"
  "$BIN" mkfs "$SFS_IMG" >> "$OUT/stablefs.log" 2>&1 || { tail -5 "$OUT/stablefs.log" >&2; die "stablefs mkfs failed"; }
  sfs_mount
  run_fio stablefs "$1" write 0 "$MNT/seqfile"
  sfs_umount
  drop_caches
  sfs_mount
  run_fio stablefs "$1" read 0 "$MNT/seqfile"
  sfs_umount
  rm -f "$SFS_IMG"
}

# ---------- the run ----------
log "work=$WORK size=$SIZE_B rounds=$ROUNDS targets=${TARGETS[*]}${BIN:+ bin=$BIN}"
drop_caches
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${TARGETS[@]}")
  if [ ${#order[@]} = 2 ] && [ $((r % 2)) = 0 ]; then order=(stablefs raw); fi
  echo "$r ${order[*]}" >> "$OUT/order.txt"
  for t in "${order[@]}"; do
    case $t in raw) round_raw "$r" ;; stablefs) round_sfs "$r" ;; esac
  done
done

# ---------- report ----------
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit+dirty"
src=$(findmnt -n -o SOURCE -T "$WORK" | head -1)
disk=$(lsblk -dnP -o NAME,MODEL,SIZE,ROTA "$src" 2>/dev/null | head -1 || true)
python3 - "$OUT" "$ROUNDS" "$SIZE_B" "$commit" "$DROP_OK" "$MOUNT_OPTS" "$WORK" \
  "$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$WORK" | head -1 | tr -s ' ')" "${disk:-unknown}" \
  "$(fio --version)" "${TARGETS[*]}" <<'EOF' | tee "$OUT/result.md"
import json, os, platform, statistics, sys, time
out, rounds, size, commit, dropok, mopts, work, fsinfo, disk, fiov, targets = sys.argv[1:]
rounds, size, targets = int(rounds), int(size), targets.split()

def bw(t, r, rw):
    p = f'{out}/r{r}.{t}.{rw}.json'
    if not os.path.exists(p):
        return None
    text = open(p).read()
    d = json.loads(text[text.index('{'):])   # fio may print warnings before the JSON
    return sum(j[rw]['bw_bytes'] for j in d['jobs']) / 1e6

cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')),
           platform.machine())
order = dict(l.split(' ', 1) for l in open(f'{out}/order.txt').read().splitlines())
both = len(targets) == 2
res = {(t, r, rw): bw(t, r, rw) for t in targets for r in range(1, rounds + 1) for rw in ('write', 'read')}
def ratio(r, rw):
    a, b = res.get(('stablefs', r, rw)), res.get(('raw', r, rw))
    return a / b if a and b else None
def f(v, ratio=False):
    return '–' if v is None else (f'{v:.2f}x' if ratio else f'{v:,.0f}')

cols = []
for rw in ('write', 'read'):
    cols += [(t, rw) for t in targets]
    if both:
        cols.append(('ratio', rw))
name = {'raw': 'raw', 'stablefs': 'stablefs', 'ratio': 'stablefs/raw'}
hdr = '| round | order | ' + ' | '.join(f'{rw} {name[t]}' + ('' if t == 'ratio' else ' MB/s') for t, rw in cols) + ' |'
L = [f'### seq.sh, {time.strftime("%Y-%m-%d")}, stablefs {commit}', '',
     f'- kernel {platform.release()}; CPU {cpu} x {os.cpu_count()}; {fiov}',
     # No absolute path of this machine goes into the record: the work dir relative to the repo.
     f'- work dir {os.path.relpath(work)} on a host {(fsinfo.split() + ["?", "?"])[1]} filesystem; disk `{disk}`',
     f'- file {size >> 20} MiB, fio psync bs=1M, write end_fsync=1, cold read; {rounds} alternating rounds; '
     f'raw = direct=1 on an image file of the same size; stablefs mount options `{mopts or "(default)"}`; '
     f'drop_caches {"ok" if dropok == "1" else "NOT permitted"}', '',
     hdr, '|' + '---|' * (len(cols) + 2)]
for r in range(1, rounds + 1):
    cells = [f(ratio(r, rw), True) if t == 'ratio' else f(res[(t, r, rw)]) for t, rw in cols]
    L.append(f'| {r} | {order[str(r)]} | ' + ' | '.join(cells) + ' |')
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
meds = {}
for t, rw in cols:
    if t == 'ratio':
        meds[(t, rw)] = med(ratio(r, rw) for r in range(1, rounds + 1))
    else:
        meds[(t, rw)] = med(res[(t, r, rw)] for r in range(1, rounds + 1))
L.append('| **median** | | ' + ' | '.join(f'**{f(meds[c], c[0] == "ratio")}**' for c in cols) + ' |')
if both:
    L.append('')
    L.append('Ratio medians are medians of the per-round ratios, not ratios of the medians.')
    L.append('')
    L.append('Row for the summary table in benches/RESULTS.md:')
    L.append('')
    L.append(f'| {time.strftime("%Y-%m-%d")} | {platform.release()}, {cpu} x {os.cpu_count()}, `{disk}` | {commit} '
             f'| {size >> 20} MiB x {rounds} '
             f'| {f(meds[("raw", "write")])} / {f(meds[("stablefs", "write")])} ({f(meds[("ratio", "write")], True)}) '
             f'| {f(meds[("raw", "read")])} / {f(meds[("stablefs", "read")])} ({f(meds[("ratio", "read")], True)}) | |')
print('\n'.join(L))
EOF
