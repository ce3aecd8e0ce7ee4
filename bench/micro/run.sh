#!/bin/sh
# Runs every micro-benchmark (dist/bench/micro/*.bench.js, built by
# `npm run build`), each in its own process, pinned to CPU 1 when taskset is
# there and the machine has more than one CPU, so the numbers do not wander
# between cores. Prints markdown tables of median GB/s.
set -e
cd "$(dirname "$0")/../.."
pin=""
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt 1 ]; then pin="taskset -c 1"; fi
echo "node $(node -p process.version), $(node -p 'require("os").cpus()[0].model'), ${pin:-not pinned}"
echo
for file in dist/bench/micro/*.bench.js; do
  $pin node "$file"
done
