#!/bin/sh
# Usage: .ci/node-from-npm.sh MAJOR [x64|arm64]
# Fetches the official Node.js binary of that major version and CPU from the
# npm registry (the node-linux-<arch> packages carry the release build of
# nodejs.org) into a tools folder outside the repository, and prints its bin
# folder. One that is already there is reused. The folder is
# $WAVECAST_TOOLS_DIR, by default $TMPDIR/wavecast-tools.
set -eu
major=$1
arch=${2:-x64}
tools=${WAVECAST_TOOLS_DIR:-${TMPDIR:-/tmp}/wavecast-tools}
dir="$tools/node-$major-linux-$arch"
if [ ! -x "$dir/package/bin/node" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  # npm pack, not npm install: the arm64 package declares cpu: arm64, and
  # this machine only unpacks it for qemu; pack skips the platform check
  # without --force.
  tarball=$(cd "$dir" && npm pack --silent --loglevel=error "node-linux-$arch@$major" | tail -n 1)
  tar xzf "$dir/$tarball" -C "$dir"
  rm -f "$dir/$tarball"
fi
[ -x "$dir/package/bin/node" ] || { echo "node-from-npm: no $dir/package/bin/node" >&2; exit 1; }
echo "$dir/package/bin"
