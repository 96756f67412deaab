#!/usr/bin/env bash
# Runs the core's Rust tests under valgrind memcheck and fails on any memory error.
#
# Property tests run fewer cases (PROPTEST_CASES) and the timing-only tests are skipped:
# valgrind runs code ~50x slower, and what it checks (invalid reads and writes, use of
# uninitialised memory, bad frees) does not need thousands of random inputs per property.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 1; }
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
binaries=$(cargo test -p zerofeed-core --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
# ops_simd sweeps every SIMD kernel against the scalar one over thousands of shapes: hours
# under valgrind. The same kernels run under valgrind through ops_reference and the unit
# tests (valgrind's CPU reports AVX2, so plans pick the SIMD paths there too).
skip_binaries="${ZEROFEED_VALGRIND_SKIP:-ops_simd}"
errors=0
start=$(date +%s)
for bin in $binaries; do
  name=$(basename "$bin")
  if [[ " $skip_binaries " == *" ${name%-*} "* ]]; then
    echo "valgrind: $name: skipped (ZEROFEED_VALGRIND_SKIP)"; continue
  fi
  log=$(mktemp)
  # --skip: the SIGBUS test maps zero pages from a signal handler, which valgrind's own
  # signal machinery does not model (it reports the fault as fatal); the FIFO-swap race test
  # and the 10^12-sample timing test depend on native speed. All of them run natively.
  if valgrind --tool=memcheck --error-exitcode=99 --quiet --trace-children=no \
      "$bin" --quiet --test-threads=2 --skip truncated --skip trillion --skip swapped >"$log" 2>&1; then
    echo "valgrind: $name: 0 errors"
  else
    status=$?
    # 99 is memcheck's own exit status: a memory error. Anything else is a failing test.
    what=$([ "$status" -eq 99 ] && echo "memory errors" || echo "a test failed (exit $status)")
    echo "valgrind: $name: $what"; tail -40 "$log"; errors=$((errors + 1))
  fi
  rm -f "$log"
done
echo "valgrind: $errors failing binaries in $(( $(date +%s) - start )) s"
[ "$errors" -eq 0 ]
