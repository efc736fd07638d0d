#!/usr/bin/env bash
# One prepared check of the CuPy backend on a machine with an NVIDIA GPU (about 8 minutes at most).
#
#   bash benchmarks/gpu_check.sh            # from the repository root; writes runs/gpu_check/
#   GPU_CHECK_STAND_IN=1 bash benchmarks/gpu_check.sh   # dry run of the script on the CPU stand-in
#
# 1. installs cupy-cuda12x (and the test extras) and checks that a CUDA device is visible;
# 2. runs the test suite with MINICNNRNN_BACKEND=cupy (every test that selects the backend
#    from the environment, plus the NumPy-vs-CuPy agreement tests that skip without a GPU);
# 3. runs the main job `python -m minicnnrnn.train --backend cupy` (2 epochs) and the same
#    job on NumPy (same seed);
# 4. checks NumPy-vs-CuPy agreement (benchmarks/gpu_agree.py, float32 tolerances, and the
#    two runs of step 3);
# 5. times bench_vgg16.py (--backend cupy) and bench_rnn_step.py (--device cuda) against
#    torch on CUDA (torch on the CPU, or none, where this torch has no CUDA), and
#    bench_beam.py --backend cupy against its matmul bound;
# and writes the summary as markdown to runs/gpu_check/summary.md (printed too; README.md's GPU
# section takes it as it is). Each step has its own time limit; a failed step is reported in the
# table and the script goes on. Exit status 1 if any step failed. The limits add up to 490 s;
# a typical run takes less (most of it the suite and the two training runs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=runs/gpu_check
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${GPU_CHECK_STAND_IN:-0}" = 1 ]; then
  # Dry run of this script without a GPU: `cupy` is the strict test stand-in (tests/strict_device/).
  export MINICNNRNN_STRICT_DEVICE=1 PYTHONPATH="$PWD/tests/strict_site:$PYTHONPATH"
  echo "== GPU_CHECK_STAND_IN=1: every 'cupy' below is the CPU stand-in; timings mean nothing"
fi
declare -a ROWS_MD
STATUS=0

step() {  # step NAME LIMIT_S LOGFILE COMMAND...: run with a time limit, record the result
  local name=$1 limit=$2 log=$3
  shift 3
  local start=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  local result=PASS
  if [ $rc -eq 124 ]; then result="TIMEOUT (${limit}s)"; elif [ $rc -ne 0 ]; then result="FAIL (rc $rc)"; fi
  [ "$result" = PASS ] || STATUS=1
  ROWS_MD+=("| $name | $result | ${took} s | \`$log\` |")
  echo "== $name: $result in ${took}s (log: $log)"
  tr '\r' '\n' <"$log" | grep -v '^ *$' | tail -n 5
}

echo "== GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
step "install cupy-cuda12x + test extras" 60 "$OUT/install.log" bash -c '
  python -c "import cupy" 2>/dev/null || python -m pip install --quiet cupy-cuda12x || exit 1
  python -c "import pytest, sklearn, minicnnrnn" 2>/dev/null || python -m pip install --quiet -e ".[test]"'
step "CUDA device visible to CuPy" 20 "$OUT/device.log" \
  python -c "from minicnnrnn.core import backend; xp = backend.use('cupy'); print(xp.__name__, \
getattr(xp, '__version__', ''), type(xp.zeros(1)).__name__, xp.cuda.runtime.getDeviceProperties(0)['name'] \
if hasattr(xp.cuda, 'runtime') else '')"

step "suite, MINICNNRNN_BACKEND=cupy" 110 "$OUT/suite_cupy.log" \
  env MINICNNRNN_BACKEND=cupy python -m pytest -q -x -p no:cacheprovider

JOB=(--epochs 2 --seed 0)
step "main job --backend cupy (2 epochs)" 90 "$OUT/train_cupy.log" \
  python -m minicnnrnn.train --backend cupy "${JOB[@]}" --out "$OUT/run_cupy"
step "main job --backend numpy (2 epochs)" 60 "$OUT/train_numpy.log" \
  python -m minicnnrnn.train --backend numpy "${JOB[@]}" --out "$OUT/run_numpy"
step "NumPy vs CuPy agreement" 40 "$OUT/agree.log" \
  python benchmarks/gpu_agree.py --markdown --runs "$OUT/run_numpy" "$OUT/run_cupy"

if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  TORCH_DEVICE=cuda
else
  TORCH_DEVICE=cpu
  echo "== this torch has no CUDA: the torch references run on the CPU"
fi
step "bench_vgg16 cupy vs torch-$TORCH_DEVICE" 40 "$OUT/bench_vgg16.log" \
  python benchmarks/bench_vgg16.py --quick --backend cupy --torch-device "$TORCH_DEVICE" --markdown
RNN=(--repeat 1 --steps 20 --warmup 3 --vocab 81 1000)
[ "$TORCH_DEVICE" = cuda ] || RNN=(--repeat 1 --steps 3 --warmup 1 --vocab 81)  # torch-CPU is slow
step "bench_rnn_step cuda vs torch-$TORCH_DEVICE" 40 "$OUT/bench_rnn_step.log" \
  python benchmarks/bench_rnn_step.py --device cuda --torch-device "$TORCH_DEVICE" "${RNN[@]}" --markdown
step "bench_beam cupy vs its matmul bound" 30 "$OUT/bench_beam.log" \
  python benchmarks/bench_beam.py --backend cupy --images 4000 --beams 3 --vocab 81 1000 --repeat 2 --markdown

# The summary, as markdown: README.md's GPU section takes it as it is (runs/gpu_check/summary.md).
table() {  # table LOG: the markdown table lines of a log, or a pointer to the log
  grep -E '^\|' "$1" 2>/dev/null || echo "(no table: see $1)"
}
{
  echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || echo 'none found'); $(date -u +%Y-%m-%d); \`bash benchmarks/gpu_check.sh\`"
  [ "${GPU_CHECK_STAND_IN:-0}" = 1 ] && echo "**Dry run on the CPU stand-in: no number below is a GPU measurement.**"
  echo
  echo "| step | result | time | log |"
  echo "|---|---|---:|---|"
  for row in "${ROWS_MD[@]}"; do echo "$row"; done
  echo
  echo "Suite on CuPy: $(grep -E '(passed|failed)' "$OUT/suite_cupy.log" | tail -n 1)"
  for run in cupy numpy; do
    echo "Main job on $run, epoch times: $(grep -Eo 'epoch [0-9]+/[0-9]+: .* img/s' "$OUT/train_$run.log" | sed -E 's/.*  ([0-9.]+s) +([0-9]+ img\/s)/\1 \2/' | tr '\n' ';')"
  done
  echo; echo "NumPy vs CuPy, same seed:"; echo; table "$OUT/agree.log"
  echo; echo "VGG16 forward, CuPy vs torch-$TORCH_DEVICE:"; echo; table "$OUT/bench_vgg16.log"
  echo; echo "One training step, CuPy vs torch-$TORCH_DEVICE:"; echo; table "$OUT/bench_rnn_step.log"
  echo; echo "Beam search on CuPy against its matmul bound (cuBLAS sgemm peak measured in the same run):"; echo
  table "$OUT/bench_beam.log"
} >"$OUT/summary.md"

echo
echo "================ GPU check summary ($OUT/summary.md) ================"
cat "$OUT/summary.md"
exit $STATUS