#!/usr/bin/env bash
# scripts/test.sh - the project's whole check, exactly as CI runs it:
#   1. installs what the suite needs, each step skipped when already done: Debian packages,
#      cargo-nextest, the torture tools fsx 0.3.x and pjdfstest 0.2.x (`cargo install --locked`,
#      into ~/.cargo/bin, where tests/fsx.rs and tests/pjdfstest.rs look for them), and the
#      unprivileged user `tests` that pjdfstest switches to (besides `nobody`);
#   2. cargo fmt --check; cargo clippy --all-targets -- -D warnings;
#   3. cargo nextest run --workspace --no-fail-fast [ARGS...] (ARGS: e.g. a test filter);
#   4. fails if the suite left a FUSE mount or a loop device in target/tmp, or a stablefs daemon
#      (target/debug/stablefs) behind, and removes them.
# Run it as root (the tests mount filesystems; no fusermount is used) on a machine with
# /dev/fuse. The last line it prints on success is nextest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export DEBIAN_FRONTEND=noninteractive
if [ -d "$HOME/.cargo/bin" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

# libacl1-dev: pjdfstest links libacl. acl, attr, python3, xfs_io (xfsprogs): the differential
# tests' scripts (tests/common/differential.rs).
PKGS=(fuse3 fio stress-ng util-linux bsdutils e2fsprogs btrfs-progs xfsprogs libacl1-dev acl attr python3)

step() { echo "==> $*" >&2; }

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  [ "$(id -u)" = 0 ] || { echo "need root to install ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_nextest() {
  cargo nextest --version >/dev/null 2>&1 && return 0
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
}

# cargo install --locked CRATE, unless BIN reports a version starting with PREFIX.
install_crate() {
  local crate=$1 req=$2 bin=$3 prefix=$4 have
  have=$("$bin" -V 2>/dev/null || true)
  case $have in "$prefix"*) return 0 ;; esac
  step "installing $crate $req${have:+ (found: $have)}"
  cargo install --locked "$crate" --version "$req"
}

install_torture_tools() {
  local bin=${CARGO_HOME:-$HOME/.cargo}/bin
  install_crate fsx '^0.3' "$bin/fsx" 'fsx 0.3.'
  install_crate pjdfstest '^0.2' "$bin/pjdfstest" 'pjdfstest 0.2.'
  # pjdfstest's permission tests run as `nobody` and as `tests`, each in its own group.
  getent passwd nobody >/dev/null || { echo "error: there is no user nobody" >&2; exit 1; }
  if ! getent passwd tests >/dev/null; then
    step "creating the user tests (for pjdfstest)"
    if getent group tests >/dev/null; then
      useradd -M -g tests -s /usr/sbin/nologin tests
    else
      useradd -M -U -s /usr/sbin/nologin tests
    fi
  fi
}

TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$REPO/target}")
# Tests keep their images and mountpoints in CARGO_TARGET_TMPDIR (target/tmp) and run the debug
# binary; a benchmark in target/bench with the release binary is not the suite's business.
TEST_TMP=$TARGET_DIR/tmp

# Prints what the suite may have left behind, one item per line:
#   mount MOUNTPOINT | loop DEVICE BACKING-FILE | daemon PID EXE
leftovers() {
  awk -v t="$TEST_TMP/" '{
      split($0, halves, " - "); split(halves[2], tail, " ")
      if (tail[1] ~ /^fuse/ && index($5 "/", t) == 1) print "mount", $5
    }' /proc/self/mountinfo
  if command -v losetup >/dev/null; then
    losetup -n -l -O NAME,BACK-FILE 2>/dev/null | awk -v t="$TEST_TMP/" 'index($2, t) == 1 { print "loop", $1, $2 }'
  fi
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in
      "$TARGET_DIR/debug/stablefs"|"$TARGET_DIR/debug/stablefs (deleted)") echo "daemon ${p#/proc/} $exe" ;;
    esac
  done
}

clean_leftovers() {
  local kind a
  while read -r kind a _; do
    case $kind in
      daemon) kill -KILL "$a" 2>/dev/null || true ;;
    esac
  done < <(leftovers)
  sleep 1
  while read -r kind a _; do
    case $kind in
      mount) umount "$a" 2>/dev/null || umount -l "$a" || true ;;
      loop) losetup -d "$a" || true ;;
    esac
  done < <(leftovers)
}

step "checking the machine"
[ "$(id -u)" = 0 ] || echo "warning: not root; the mount tests will fail" >&2
install_packages
[ -c /dev/fuse ] || { echo "/dev/fuse is missing: load the fuse module (modprobe fuse)" >&2; exit 1; }
install_nextest
install_torture_tools

before=$(leftovers)
if [ -n "$before" ]; then
  echo "left over from an earlier run (removing):" >&2; echo "$before" >&2
  clean_leftovers
fi

# A fmt or clippy failure fails the run, but the tests still run, so one CI run tells all.
failed=()
step "cargo fmt --check"
cargo fmt --all --check || failed+=("cargo fmt --check")
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings || failed+=("cargo clippy")
step "cargo nextest run"
rc=0
cargo nextest run --workspace --no-fail-fast \
  --tool-config-file "test-sh:$REPO/scripts/nextest.toml" "$@" || rc=$?

after=$(leftovers)
if [ -n "$after" ]; then
  echo "error: the test suite left these behind (now removed):" >&2
  echo "$after" >&2
  clean_leftovers
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: failed before the tests: ${failed[*]} (see above)" >&2
  exit 1
fi
exit $rc
