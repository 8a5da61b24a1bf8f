#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run (docs/FAULTS.md), part of the README's test
# command (scripts/test.sh; AWQ_SANITIZE_TESTS=0 leaves it out). Configures build-asan with clang
# when it is installed (it compiles the instrumented library about twice as fast as gcc) at -O1
# with line tables, builds only what the tests to run need, and runs CTest there. Any sanitizer
# report fails the test that triggered it: UBSan halts on its first finding, ASan on every one,
# and leaks are reported at exit. With no arguments: the unit-labelled tests, the fuzz seed
# replays among them (target unit_tests). Arguments go to ctest and build every test first.
#
#   bash scripts/sanitize.sh                 # unit tests and fuzz replays under ASan/UBSan
#   bash scripts/sanitize.sh -LE slow        # every test but the slow ones
#   bash scripts/sanitize.sh -R '^(Faults|Numerics|Determinism)\.'
#   AWQ_SANITIZE_BUILD_DIR=/tmp/asan bash scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${AWQ_SANITIZE_BUILD_DIR:-build-asan}"
jobs=$(nproc)

start=$(date +%s)
if [[ ! -f "$build_dir/build.ninja" ]]; then
  compilers=()
  if command -v clang++ >/dev/null; then
    compilers=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
    debug="-gline-tables-only"
  else
    debug="-g1"
  fi
  cmake -S . -B "$build_dir" -G Ninja "${compilers[@]}" -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_C_FLAGS="-O1 $debug" -DCMAKE_CXX_FLAGS="-O1 $debug" -DAWQ_SANITIZE=ON \
    -DAWQ_BUILD_BENCH=OFF
fi
if [[ $# -eq 0 ]]; then
  set -- -L unit -E '^NeonKernelUnderQemu$'
  targets=(--target unit_tests)
else
  targets=()
fi
echo "== building $build_dir (ASan + UBSan) =="
cmake --build "$build_dir" -j"$jobs" "${targets[@]}"
built=$(date +%s)

# halt_on_error: UBSan otherwise prints and carries on, and the test would pass.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
# oneDNN and libgomp are not instrumented; their allocations are still checked at the boundary.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"

echo "== ctest under ASan + UBSan: $* =="
status=0
ctest --test-dir "$build_dir" --output-on-failure -j"$jobs" "$@" || status=$?
done_at=$(date +%s)
echo "== sanitizer run: build $((built - start)) s, tests $((done_at - built)) s, status $status =="
exit "$status"
