#!/bin/sh
# `npm run test:arm64`: runs the committed linux-arm64 prebuild on an x64
# machine under qemu-user, with the official arm64 Node from the npm registry:
# the addon's parity tests (native == JS for masking and UTF-8 at every size,
# offset and split: these are what run the NEON code) and the native
# transport's tests. Needs Debian's qemu-user and the arm64 C and C++
# runtime of the cross toolchain (apt-get install qemu-user
# g++-aarch64-linux-gnu: its sysroot /usr/aarch64-linux-gnu is what qemu
# loads the libraries from). On an arm64 machine it runs the same tests
# natively.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/build/arm64-test"
cd "$root"

prebuild="$root/prebuilds/linux-arm64/wavecast.node"
[ -f "$prebuild" ] || { echo "test-arm64: no $prebuild (npm run build:prebuilds)" >&2; exit 1; }

launcher=
if [ "$(node -p process.arch)" != arm64 ]; then
  if ! command -v qemu-aarch64 >/dev/null 2>&1; then
    echo "test-arm64: qemu-aarch64 not found: apt-get install qemu-user" >&2
    exit 1
  fi
  export QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
  if [ ! -f "$QEMU_LD_PREFIX/lib/libstdc++.so.6" ]; then
    echo "test-arm64: no arm64 libstdc++ in $QEMU_LD_PREFIX: apt-get install g++-aarch64-linux-gnu" >&2
    exit 1
  fi
  launcher=qemu-aarch64
fi
node_arm64="$(sh "$root/.ci/node-from-npm.sh" "${WAVECAST_ARM64_NODE:-22}" arm64)/node"

npx tsc -p tsconfig.json

# A copy of the package with the arm64 prebuild and no build/ folder, so that
# node-gyp-build loads exactly the file that ships (build/Release would win).
rm -rf "$stage"
mkdir -p "$stage/dist" "$stage/prebuilds"
cp package.json "$stage/"
cp -R dist/src dist/test "$stage/dist/"
cp -R prebuilds/linux-arm64 "$stage/prebuilds/"
ln -s "$root/node_modules" "$stage/node_modules"
cd "$stage"
unset WAVECAST_NO_NATIVE WAVECAST_NO_NATIVE_TRANSPORT
export WAVECAST_TEST_LAUNCHER="$launcher"

# shellcheck disable=SC2086 # $launcher is empty or one word
$launcher "$node_arm64" --input-type=module -e "
  const m = await import('$stage/dist/src/native.js');
  console.log('test-arm64: Node ' + process.version + ' on ' + process.arch + ', backend ' + m.backend + ': ' + m.nativeStatus.reason);
  if (m.backend !== 'native') process.exit(1);
  console.log('test-arm64: SIMD paths: mask ' + m.addon.simd.mask + ', utf8 ' + m.addon.simd.utf8);
  if (m.addon.simd.mask !== 'neon' || m.addon.simd.utf8 !== 'neon') process.exit(1);
"

# Each file runs in this process (no --test): the test runner would start
# one child per file with process.execPath, which only qemu can run.
status=0
for file in native mask utf8 transport transport-soundness handshake-fast; do
  echo "== arm64: test/$file.test.ts"
  # shellcheck disable=SC2086
  $launcher "$node_arm64" --test-reporter=spec "dist/test/$file.test.js" || status=1
done
exit $status
