#!/bin/sh
# Build the libFuzzer harnesses with clang (AddressSanitizer +
# UndefinedBehaviorSanitizer), make the seed corpus from real segments, and
# run each harness for SECONDS (default 60). Exits non-zero if a harness
# finds a crash, a leak or a hang; the input is left in build/fuzz/artifacts.
#
#   sh tests/fuzz/run.sh [SECONDS]
#
# Needs clang and its runtime libraries (Debian: clang libclang-rt-dev).
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-60}
build=${BUILD_DIR:-build/fuzz}
if ! command -v clang >/dev/null 2>&1; then
  echo "tests/fuzz/run.sh: clang is needed (apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi
CC=clang cmake -S . -B "$build" -DSHMVAL_FUZZ=ON -DSHMVAL_SANITIZER=address,undefined \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMVAL_BUILD_TESTS=OFF -DSHMVAL_BUILD_EXAMPLES=OFF \
  -DSHMVAL_BUILD_BENCH=OFF -DSHMVAL_BUILD_TOOLS=OFF -DSHMVAL_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
"$build/tests/fuzz/fuzz_make_seeds" "$build/seeds"
mkdir -p "$build/artifacts"
# First the inputs earlier runs found crashes with (each fixed since), made
# afresh in the current layout (see make_seeds.c).
"$build/tests/fuzz/fuzz_make_seeds" --regressions "$build/regressions"
for f in "$build"/regressions/*; do
  h=${f##*/}
  h=${h%%-*}
  "$build/tests/fuzz/fuzz_$h" "$f" 2>"$build/regression.log" || {
    rm -f /dev/shm/shmval-fuzz-*
    cat "$build/regression.log"
    echo "regression input $f FAILED" >&2
    exit 1
  }
done
echo "regression inputs: $(ls "$build/regressions" | wc -l) passed"
for h in attach inspect; do
  mkdir -p "$build/corpus-$h"
  echo "== fuzz_$h for ${secs}s"
  "$build/tests/fuzz/fuzz_$h" -max_total_time="$secs" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/$h-" \
    "$build/corpus-$h" "$build/seeds" 2>"$build/fuzz_$h.log" || {
    rm -f /dev/shm/shmval-fuzz-*
    tail -n 60 "$build/fuzz_$h.log"
    echo "fuzz_$h FAILED: see $build/artifacts" >&2
    exit 1
  }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$build/fuzz_$h.log" | tail -n 3
done
