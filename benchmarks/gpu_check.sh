#!/usr/bin/env bash
# Everything that needs a GPU, in one run of at most ~8 minutes on one H100/H200 (run it first whenever a GPU
# machine is lent; the device tool: `bash benchmarks/gpu_check.sh` with timeout_s=600):
#   1. install (torch from the local wheels, this package with FORCE_CUDA=1: builds cuda_ext/_C for sm_90,
#      and the CPU rasterizer), gsplat's JIT build warmed up;
#   2. every GPU-only test (gsplat vs the torch backend, cuda_ext lifting kernels vs their twins);
#   3. benchmarks/bench_render.py on the GPU (gsplat beside torch);
#   4. benchmarks/bench_lift.py --gpu (the lifting kernels at ~500k Gaussians);
#   5. the backbone benchmark on the GPU on the embedded room generated at 320x240 (python -m dff_gs.bench
#      --device cuda --data ...; 2.5x the CPU resolution on each side).
# Each step has its own time limit; a step that fails or runs out is recorded as such and the rest still run.
# Writes the table and the logs to $OUT (the device tool brings them back) or to runs/gpu_check, and replaces
# the "GPU check" section of benchmarks/RESULTS.md with the table.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}" PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export DFF_GS_CACHE="${DFF_GS_CACHE:-$PWD/.gpu-cache}"
TABLE="$OUT_DIR/gpu_check.md"
ROWS=()

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT_DIR/NAME.log, record status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" bash -c "$*" > "$OUT_DIR/$name.log" 2>&1
  local rc=$? secs=$((SECONDS - t0)) status
  case $rc in 0) status=ok ;; 124) status="timed out (${limit} s)" ;; *) status="failed (exit $rc)" ;; esac
  ROWS+=("| $name | $status | $secs | \`$*\` |")
  echo "gpu_check: $name: $status in $secs s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT_DIR/device.txt" 2>&1
step install 240 'python -c "import torch" 2>/dev/null || pip install -q torch==2.14.1 torchvision==0.29.1;
  FORCE_CUDA=1 pip install -q --no-build-isolation -e ".[test]" &&
  python -c "import cuda_ext, torch; cuda_ext.load(); print(cuda_ext.available()); print(cuda_ext.cpu_available())" &&
  python -c "import torch, gsplat; from gsplat import rasterization; print(gsplat.__version__)"'
step gpu_tests 150 'python -m pytest -q -rs tests/test_render.py tests/test_lift.py -k "cuda or gsplat or cuda_ext"'
step bench_render 90 'python benchmarks/bench_render.py --device cuda --sizes 256x192,1280x720 --gaussians 50000,500000'
step bench_lift_gpu 90 'python benchmarks/bench_lift.py --gpu'
step bench_backbones 200 'python -m dff_gs.data.synthetic runs/room320 --width 320 --height 240 --overwrite &&
  python -m dff_gs.bench --device cuda --data runs/room320 --out runs/gpu_bench --quiet &&
  cp runs/gpu_bench/bench.md '"$OUT_DIR"'/'

{
  echo "## GPU check (\`bash benchmarks/gpu_check.sh\`)"
  echo
  echo "Device: $(cat "$OUT_DIR/device.txt" | head -1). Run $(date -u +%Y-%m-%dT%H:%MZ). Logs: \`$OUT_DIR/*.log\`."
  echo
  echo "| step | result | seconds | command |"
  echo "| --- | --- | ---: | --- |"
  printf '%s\n' "${ROWS[@]}"
  echo
  for f in bench_render bench_lift_gpu; do
    echo "\`$f\`:"
    echo
    grep -E '^\|' "$OUT_DIR/$f.log" || echo "(no table: see $f.log)"
    echo
  done
  [ -f "$OUT_DIR/bench.md" ] && { echo "Backbones on the GPU:"; echo; cat "$OUT_DIR/bench.md"; echo; }
} > "$TABLE"
python - "$TABLE" <<'EOF'
import re, sys
from pathlib import Path
table = Path(sys.argv[1]).read_text()
res = Path("benchmarks/RESULTS.md")
text = res.read_text()
section = re.compile(r"^## GPU check.*?(?=^## |\Z)", re.S | re.M)
text = section.sub(lambda _: table + "\n", text) if section.search(text) else text.rstrip() + "\n\n" + table
res.write_text(text)
EOF
cp benchmarks/RESULTS.md "$OUT_DIR/RESULTS.md"
echo "gpu_check: table in $TABLE and benchmarks/RESULTS.md"
