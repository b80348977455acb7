#!/usr/bin/env bash
# The device check: the one script a lent GPU machine runs first. Every step is bounded
# (the bounds sum to 8 minutes), prints as it goes and writes its output to $OUT/<step>.txt.
#   bash benchmarks/device_check.sh              # on the GPU machine (after make install)
#   DEVICE=cpu bash benchmarks/device_check.sh   # the same steps at tiny sizes: a dry run that
#                                                # CI runs (tests/system/test_device_check.py), so the
#                                                # arguments below cannot rot
# Exit status: 0 when every step passed, 1 otherwise (3 when DEVICE=cuda finds no GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ilkd-device}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
device=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
status=0

step() {  # step <seconds> <name> <command...>  (seconds on the GPU; times $scale here)
    local limit=$(($1 * scale)) name=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "!! $name exited $rc"
        status=1
    fi
}

if [ "$device" = cuda ]; then
    "$py" -c "import sys, torch; ok = torch.cuda.is_available(); \
print(torch.cuda.get_device_name(0) if ok else 'torch sees no CUDA device'); sys.exit(0 if ok else 3)" \
        | tee "$out/device.txt" || { echo "!! DEVICE=cuda but torch sees no GPU"; exit 3; }
    scale=1
    size=(--rounds 20)
    tests=(-m pytest -q tests/unit/test_fastpath.py)
    smoke=(--preset paper-cifar10 --images 4096)
    packing=(--preset paper-cifar10 --k 1,4,8 --seconds 8)
    estimate=(--preset paper-cifar10 --steps 3 --gpus 1 --per-gpu 4)
else
    echo "CPU dry run: tiny sizes, the same arguments" | tee "$out/device.txt"
    scale=4  # a 2-core CI machine spends most of a step importing torch and building models
    size=(--rounds 2 --arch small_cnn --batch 8)
    tests=(-m pytest -q --collect-only tests/unit/test_fastpath.py)
    smoke=(--preset quick --images 64 --batch 16 --arch small_cnn)
    packing=(--preset quick --k 1,2 --seconds 1 --arch small_cnn --batch 16)
    estimate=(--preset quick --steps 1 -j 2)
fi

step 60 tests "$py" "${tests[@]}"
# every method for two epochs at the preset's runtime: step time, peak memory, host syncs
# per step (CUDA's sync debug mode), stop-and-resume equality
step 60 smoke "$py" benchmarks/smoke.py "${smoke[@]}"
step 40 throughput-fp32 "$py" benchmarks/throughput.py "${size[@]}"
step 40 throughput-amp "$py" benchmarks/throughput.py "${size[@]}" --amp auto --channels-last
# compile: CE and IL with Grad-CAM (input-space explainers refuse runtime.compile)
step 90 throughput-compile "$py" benchmarks/throughput.py "${size[@]}" --compile \
    --methods ce,il-gradcam
# CUDA graphs (runtime.compile_mode: reduce-overhead, off until this step measures it)
step 60 throughput-graphs "$py" benchmarks/throughput.py "${size[@]}" --compile \
    --compile-mode reduce-overhead --methods ce,il-gradcam
step 30 il-overhead "$py" benchmarks/il_overhead.py "${size[@]}" --classes 10
# K runs packed on one device (parallel --per-gpu K): total images/s
step 60 packing "$py" benchmarks/packing.py "${packing[@]}"
step 40 estimate "$py" -m pipeline.tools.estimate "${estimate[@]}"
echo "== done: $([ $status -eq 0 ] && echo 'every step passed' || echo 'some step failed'); outputs in $out"
exit $status
