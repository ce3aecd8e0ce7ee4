#!/bin/sh
# `npm run build:prebuilds [-- x64 arm64]`: builds the addon for each Linux
# CPU the package ships a prebuild for, stripped, into
# prebuilds/linux-<arch>/wavecast.node (where node-gyp-build looks).
# arm64 is cross-compiled with Debian's g++-aarch64-linux-gnu
# (`apt-get install g++-aarch64-linux-gnu`) unless this machine is arm64.
#
# Nothing is downloaded: the addon uses N-API only (NAPI_VERSION 8), so the
# local Node's own headers serve every CPU and every Node version from 20
# on (npm_config_nodedir names others). Each build runs in its own copy under
# build/prebuilds/<arch>/, because node-gyp-build loads build/Release before
# any prebuild, and an arm64 binary left there would make this machine fall
# back to JS.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

nodedir=${npm_config_nodedir:-$(node -p 'path.dirname(path.dirname(process.execPath))')}
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  echo "build-prebuilds: no Node headers in $nodedir/include/node (set npm_config_nodedir)" >&2
  exit 1
fi
host=$(node -p process.arch)

for arch in ${*:-x64 arm64}; do
  case "$arch" in
    x64) triplet=x86_64-linux-gnu; machine='X86-64' ;;
    arm64) triplet=aarch64-linux-gnu; machine='AArch64' ;;
    *) echo "build-prebuilds: unknown arch '$arch' (x64 or arm64)" >&2; exit 1 ;;
  esac
  cross=
  [ "$arch" = "$host" ] || cross="$triplet-"
  if ! command -v "${cross}g++" >/dev/null 2>&1; then
    echo "build-prebuilds: ${cross}g++ not found: apt-get install g++-$triplet" >&2
    exit 1
  fi

  stage="$root/build/prebuilds/$arch"
  rm -rf "$stage"
  mkdir -p "$stage"
  cp package.json binding.gyp "$stage/"
  cp -R native "$stage/native"
  # binding.gyp finds node-addon-api with require() from the stage folder;
  # it resolves through the parent folders up to $root/node_modules.
  (
    cd "$stage"
    CC="${cross}gcc" CXX="${cross}g++" LINK="${cross}g++" AR="${cross}ar" \
      node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild \
      --arch="$arch" --nodedir="$nodedir" --loglevel=warn
  )

  out="$root/prebuilds/linux-$arch/wavecast.node"
  mkdir -p "$(dirname "$out")"
  "${cross}strip" --strip-all -o "$out" "$stage/build/Release/wavecast.node"
  # A binary for the wrong CPU would only show as a silent JS fallback on
  # the users' machines: check the ELF header now.
  if ! LC_ALL=C "${cross}readelf" -h "$out" | grep -q "Machine: *.*$machine"; then
    echo "build-prebuilds: $out is not an $machine binary" >&2
    exit 1
  fi
  echo "build-prebuilds: $out ($machine, $(wc -c <"$out") bytes)"
done
