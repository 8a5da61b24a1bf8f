#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run (docs/FAULTS.md): configures and builds
# build-asan (RelWithDebInfo, -DAWQ_SANITIZE=ON, no benchmarks), then runs CTest there. Any
# sanitizer report fails the test that triggered it: UBSan halts on its first finding, ASan on
# every one, and leaks are reported at exit. Arguments go to ctest; the default is the unit-labelled
# tests (which include the fuzz seed replays) and the fault, numerics and determinism tests on
# random models.
#
#   bash scripts/sanitize.sh                 # unit + fault tests under ASan/UBSan
#   bash scripts/sanitize.sh -LE slow        # every test but the slow ones
#   AWQ_SANITIZE_BUILD_DIR=/tmp/asan bash scripts/sanitize.sh
#
# scripts/test.sh runs this after the normal suite when AWQ_SANITIZE_TESTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${AWQ_SANITIZE_BUILD_DIR:-build-asan}"
jobs=$(nproc)

start=$(date +%s)
if [[ ! -f "$build_dir/build.ninja" ]]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAWQ_SANITIZE=ON \
    -DAWQ_BUILD_BENCH=OFF
fi
echo "== building $build_dir (ASan + UBSan) =="
cmake --build "$build_dir" -j"$jobs"
built=$(date +%s)

# halt_on_error: UBSan otherwise prints and carries on, and the test would pass.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
# oneDNN and libgomp are not instrumented; their allocations are still checked at the boundary.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"

if [[ $# -eq 0 ]]; then
  set -- -L unit
  extra=(-R '^(Faults|Numerics|Determinism)\.')
else
  extra=()
fi
echo "== ctest under ASan + UBSan: $* =="
status=0
ctest --test-dir "$build_dir" --output-on-failure -j"$jobs" "$@" || status=$?
if [[ ${#extra[@]} -gt 0 ]]; then
  ctest --test-dir "$build_dir" --output-on-failure -j"$jobs" "${extra[@]}" || status=$?
fi
done_at=$(date +%s)
echo "== sanitizer run: build $((built - start)) s, tests $((done_at - built)) s, status $status =="
exit "$status"
