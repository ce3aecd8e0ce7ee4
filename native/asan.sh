#!/bin/sh
# `npm run test:asan`: builds the addon with AddressSanitizer into
# build/asan/ (build/Release, the normal build, is left alone) and runs the
# native test files and the native transport's server tests against that
# build, so any read or write outside a buffer aborts the run. Node itself
# is not instrumented: libasan is preloaded and checks every access the
# addon makes.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/build/asan/pkg"
cd "$root"
npx tsc -p tsconfig.json

# A copy of the package, so that src/native.ts (which loads the addon from
# its own package root) finds the ASan build and nothing else.
rm -rf "$stage"
mkdir -p "$stage/dist"
cp package.json binding.gyp "$stage/"
cp -R native "$stage/native"
cp -R dist/src dist/test "$stage/dist/"
# Node's own headers when it ships them (no download needed), else whatever
# npm configured.
nodedir=${npm_config_nodedir:-$(node -p 'path.dirname(path.dirname(process.execPath))')}
[ -f "$nodedir/include/node/node_api.h" ] && set -- --nodedir="$nodedir"
(
  cd "$stage"
  CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -DWAVECAST_CHECKS" LDFLAGS="-fsanitize=address" \
    node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild --loglevel=warn "$@"
)

libasan=$(g++ -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "asan: libasan.so not found (g++ -print-file-name=libasan.so)" >&2; exit 1; }
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
# Tests that bound memory widen the bound under ASan (its quarantine and shadow).
export WAVECAST_ASAN=1
unset WAVECAST_NO_NATIVE

# If the ASan build failed to load, src/native.ts would quietly pick JS and
# the native tests would be skipped: refuse that.
node --input-type=module -e "
  const m = await import('$stage/dist/src/native.js');
  if (m.backend !== 'native') { console.error('asan: the ASan build did not load'); process.exit(1); }
  console.log('asan: addon loaded from $stage/build/Release (mask ' + m.addon.simd.mask + ', utf8 ' + m.addon.simd.utf8 + ')');
"
# The addon's own tests, then server tests that run every path of the
# native transport (handshakes, HTTP hand-off, partial writes and queues,
# closes from both sides, slow and vanishing clients, batches taken back
# at once with borrowFrames, large relays written from the batch, workers
# sharing one listening socket).
node --test --test-timeout=300000 \
  "$stage/dist/test/native.test.js" "$stage/dist/test/mask.test.js" "$stage/dist/test/utf8.test.js" \
  "$stage/dist/test/transport.test.js" "$stage/dist/test/server.test.js" "$stage/dist/test/protocol.test.js" \
  "$stage/dist/test/broadcast.test.js" "$stage/dist/test/handshake.test.js" "$stage/dist/test/handshake-fast.test.js" \
  "$stage/dist/test/transport-soundness.test.js" "$stage/dist/test/backpressure.test.js" \
  "$stage/dist/test/borrow-frames.test.js" "$stage/dist/test/relay.test.js" "$stage/dist/test/stress.test.js" \
  "$stage/dist/test/workers-native.test.js"
