#!/usr/bin/env bash
# The whole GPU check in one command, on a CUDA machine with Python 3.11+, numpy, and
# optionally PyTorch, JAX and CuPy (no TensorFlow, no internet needed):
#
#     bash scripts/gpu_check.sh            # logs and a summary under $OUT (default ./gpu-check-out)
#
# 1. installs zerofeed: builds the wheel with maturin/cargo when both are present,
#    otherwise installs the prebuilt abi3 wheel from dist/ (`maturin build --release -o dist`);
# 2. optionally checks the shipped PTX against `nvcc -ptx` of kernels/normalize.cu;
# 3. runs tests/test_cuda.py and the CPU tests that need no TensorFlow;
# 4. runs `zerofeed bench transfer` (zerofeed-bench, from bench/) and prints a short table.
# Aims at < 4 minutes. Exit status: non-zero if the CUDA tests fail.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
SCRATCH="$(mktemp -d)"  # caches and intermediate files stay out of $OUT

log "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"
log "python: $($PY --version 2>&1)"

# -- 1. install ------------------------------------------------------------------------------
# Installed into a private folder on PYTHONPATH: the system's torch / jax / cupy stay visible.
SITE="${TMPDIR:-/tmp}/zerofeed-gpu-site"
rm -rf "$SITE"
VPY="$PY"
export PYTHONPATH="$SITE"
if command -v cargo >/dev/null && "$PY" -m maturin --version >/dev/null 2>&1; then
    log "building the wheel with maturin"
    "$PY" -m maturin build --release -o "${TMPDIR:-/tmp}/zerofeed-dist" >"$OUT/build.log" 2>&1 || { log "build failed (see build.log)"; exit 2; }
    WHEEL=$(ls -t "${TMPDIR:-/tmp}"/zerofeed-dist/zerofeed-*.whl | head -1)
else
    WHEEL=$(ls -t dist/zerofeed-*.whl 2>/dev/null | head -1)
    [ -n "$WHEEL" ] || { log "no cargo/maturin and no dist/zerofeed-*.whl: build one with 'maturin build --release -o dist'"; exit 2; }
    log "installing the prebuilt wheel $WHEEL"
fi
"$PY" -m pip install --no-index --no-deps --target "$SITE" "$WHEEL" >"$OUT/install.log" 2>&1 \
    || { log "pip install failed (see install.log)"; exit 2; }
"$VPY" -c "import ml_dtypes" 2>/dev/null || log "warning: ml_dtypes missing (bfloat16 tests may fail)"
log "zerofeed $("$VPY" -c 'import zerofeed, zerofeed.cuda as c; print(zerofeed.__version__, "cuda:", c.available(), c.device_count(), c.device_name(0) if c.available() else c.unavailable_reason())')"

# -- 2. PTX vs nvcc (optional) ---------------------------------------------------------------
K=crates/zerofeed-core/src/cuda/kernels
if command -v nvcc >/dev/null; then
    if nvcc -ptx -arch=compute_75 -O3 "$K/normalize.cu" -o "$SCRATCH/nvcc_normalize.ptx" 2>"$OUT/nvcc.log"; then
        grep -c -E '^\s+(ld|st|fma|cvt|div|rem)\.' "$SCRATCH/nvcc_normalize.ptx" >/dev/null && log "nvcc -ptx of normalize.cu: ok (shipped PTX is checked by the tests on this GPU)"
        command -v ptxas >/dev/null && ptxas -arch=sm_90 "$K/normalize.ptx" -o "$SCRATCH/normalize.cubin" 2>>"$OUT/nvcc.log" && log "ptxas sm_90 of the shipped PTX: ok"
    else
        log "nvcc -ptx failed (see nvcc.log); not fatal"
    fi
fi

# -- 3. tests --------------------------------------------------------------------------------
cd "$SCRATCH"  # import the installed wheel, not python/ from the checkout
TESTS="$OLDPWD/tests"
timeout 150 "$VPY" -m pytest -q -rs -p no:cacheprovider "$TESTS/test_cuda.py" >"$OUT/test_cuda.log" 2>&1
CUDA_RC=$?
log "tests/test_cuda.py: $(tail -1 "$OUT/test_cuda.log") (rc=$CUDA_RC)"
CPU_TESTS=$(ls "$TESTS"/test_*.py | grep -v test_cuda.py)
timeout 120 "$VPY" -m pytest -q -p no:cacheprovider $CPU_TESTS -k "not tensorflow and not keras and not tf_" \
    >"$OUT/test_cpu.log" 2>&1
log "CPU tests (no TensorFlow): $(tail -1 "$OUT/test_cpu.log") (rc=$?)"

# -- 4. bench --------------------------------------------------------------------------------
# zerofeed-bench (bench/) is pure Python: its source joins the path, nothing to install.
PYTHONPATH="$SITE:$OLDPWD/bench" timeout 150 "$VPY" -m zerofeed_bench.transfer --sizes 1,16,256,1024 \
    --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1
log "bench transfer (rc=$?):"
cat "$OUT/bench.log" | tee -a "$OUT/summary.txt"
echo
echo "logs: $OUT"
exit $CUDA_RC
