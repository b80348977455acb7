#!/usr/bin/env bash
# One short script for a lent GPU machine: CUDA tests, then the numbers the README wants.
#   bash benchmarks/device_check.sh            (writes into ${OUT:-/tmp/ilkd-device})
# Assumes the project is installed (make install). Each step is bounded so one slow
# step cannot eat the whole device budget.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ilkd-device}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/device.txt"
timeout 300 "$py" -m pytest -q tests/test_fastpath.py tests/test_engine.py tests/test_introspective.py \
    2>&1 | tail -15 | tee "$out/tests.txt"
for flags in "" "--amp auto --channels-last" "--amp auto --channels-last --compile"; do
    # shellcheck disable=SC2086
    timeout 240 "$py" benchmarks/throughput.py --images 8192 $flags 2>&1 | grep -v '^\[ilkd\]' \
        | tee -a "$out/throughput.md"
done
timeout 120 "$py" benchmarks/il_overhead.py 2>&1 | tee "$out/il_overhead.md"
timeout 120 "$py" -m pipeline.tools.estimate --preset paper-cifar10 2>&1 \
    | tee "$out/estimate-cifar10.md"
