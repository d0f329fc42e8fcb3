#!/usr/bin/env bash
# install.sh - installs the stablefs binary and its mount(8)/mkfs(8)/fsck(8) helpers, so that
# `mount -t stablefs`, /etc/fstab, `mkfs -t stablefs` and `fsck -t stablefs` work.
#
# Usage: mount-helpers/install.sh [--bin PATH] [--prefix /usr/local] [--sbindir /sbin]
#                                 [--destdir DIR] [--uninstall]
#   --bin      the binary to install (default: target/release/stablefs, built with
#              `cargo build --release` if it is missing)
#   --prefix   the binary goes to PREFIX/sbin/stablefs (default /usr/local)
#   --sbindir  where the helpers go (default /sbin: mount(8) looks for helpers only in /sbin,
#              /sbin/fs.d and /sbin/fs)
#   --destdir  stage everything under DIR instead of / (packaging, tests)
#   --uninstall  remove what an install put there
# The installed helpers have the binary's absolute path written into them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
bin="" prefix=/usr/local sbindir=/sbin destdir="" uninstall=0
# mount.fuse.stablefs: what mount(8) calls for a remount (mountinfo says fuse.stablefs).
helpers=(mount.stablefs mount.fuse.stablefs mkfs.stablefs fsck.stablefs)

usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --sbindir) sbindir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

target_bin=$prefix/sbin/stablefs
if [ $uninstall = 1 ]; then
  rm -f "$destdir$target_bin"
  for h in "${helpers[@]}"; do rm -f "$destdir$sbindir/$h"; done
  echo "removed $destdir$target_bin and the helpers in $destdir$sbindir"
  exit 0
fi

if [ -z "$bin" ]; then
  bin=$repo/target/release/stablefs
  if [ ! -x "$bin" ]; then (cd "$repo" && cargo build --release); fi
fi
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable" >&2; exit 1; }
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: needs root to install into $prefix and $sbindir (or use --destdir)" >&2
  exit 1
fi

install -D -m 0755 "$bin" "$destdir$target_bin"
install -d "$destdir$sbindir"
for h in "${helpers[@]}"; do
  src=$h; [ "$h" = mount.fuse.stablefs ] && src=mount.stablefs
  sed "s|^STABLEFS_INSTALLED_BIN=\"\"|STABLEFS_INSTALLED_BIN=\"$target_bin\"|" "$here/$src" > "$destdir$sbindir/$h.tmp"
  chmod 0755 "$destdir$sbindir/$h.tmp"
  mv -f "$destdir$sbindir/$h.tmp" "$destdir$sbindir/$h"
done
echo "installed $destdir$target_bin and ${helpers[*]} in $destdir$sbindir"
