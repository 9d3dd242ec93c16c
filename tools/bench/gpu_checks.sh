#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the ModelScope-size tables, the memory target's estimates
# against PyTorch's CUDA allocator, and the engine's test suite on CUDA.
#
#   bash tools/bench/gpu_checks.sh OUT_DIR [CHECKS]
#
# CHECKS is a comma-separated choice of modelscope_cost, memory_target and suite (default: all three;
# each has its own time limit below, 9.5 minutes together: under the 10 one device command may take).
#
# Where the GPU machine has torch, transformers and peft but not diffusers, take the wheels along in
# .whl/ (ignored by git; the script installs them when the folder is there), downloaded beforehand:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
set -u -o pipefail
out=${1:?usage: bash tools/bench/gpu_checks.sh OUT_DIR [modelscope_cost,memory_target,suite]}
checks=,${2:-modelscope_cost,memory_target,suite},
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cav-site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/cav-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, diffusers, peft, transformers as t; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'peft', peft.__version__, 'transformers', t.__version__)" | tee -a "$out/gpu.txt" || exit 1

status=0
run() {  # name, seconds allowed, command...: its output in OUT_DIR/name.log, a failure remembered
    local name=$1 limit=$2
    shift 2
    [[ $checks == *,$name,* ]] || return 0
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | tail -40 || { echo "== $name FAILED"; status=1; }
}
run modelscope_cost 270 python3 -m tools.bench.modelscope_cost --out "$out/modelscope_cost.md"
run memory_target 90 python3 -m tools.bench.memory_target --device cuda --out "$out/memory_target_cuda.md"
run suite 210 python3 -m pytest -q -rs -n 8 -p no:cacheprovider tests
exit $status
