#!/usr/bin/env bash
# Set up everything and run the whole test suite, exactly as CI does.
#
#   1. install missing Debian packages (scripts/deps.sh)
#   2. build with clang + libFuzzer and run every fuzz target briefly
#   3. build normally (gcc, -Werror) and run all unit and integration tests,
#      including valgrind runs of the agent commands
#   4. build with AddressSanitizer + UndefinedBehaviorSanitizer and run the
#      whole suite again; CTest's summary of this run is the last line printed
#
# Any failure stops the run with a non-zero exit code.
# Environment: QES_FUZZ_SECONDS (default 20) per fuzz target; QES_SKIP_FUZZ=1
# and QES_SKIP_ASAN=1 shorten local runs (CI sets neither).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${QES_FUZZ_SECONDS:-20}

scripts/deps.sh

step() { printf '\n==== %s\n' "$*"; }

if [ "${QES_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz targets (clang, libFuzzer + ASan/UBSan, ${fuzz_seconds}s each)"
  CC=clang cmake -S . -B build-fuzz -DQES_FUZZ=ON -DQES_TESTS=ON \
    -DQES_FUZZ_SECONDS="$fuzz_seconds" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzzers
  ctest --test-dir build-fuzz -R '^fuzzrun_' -j"$jobs" --output-on-failure
fi

step "build (gcc, -Werror) and test"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure -E '^fuzzrun_'

if [ "${QES_SKIP_ASAN:-0}" != 1 ]; then
  step "build with ASan + UBSan and test"
  cmake -S . -B build-asan -DQES_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$jobs"
  ctest --test-dir build-asan -j"$jobs" --output-on-failure -E '^fuzzrun_'
fi
