#!/usr/bin/env bash
# The GPU measurements of issue #8, in stages that each fit one device call (<= 10 minutes).
#
#   bash bench/gpu_runbook.sh STAGE [OUT_DIR]        # OUT_DIR defaults to $OUT, else ./bench_out
#
# Stages, in the order to run them (the first two are the minimum a GPU session should take):
#   checks   GPU-only tests (CUDA graphs, no host sync, compile, fp8, decode overlap) + the rollout check
#   main     the benchmark: 1.3B 480x832, reference vs ours, both decoders (~4 min)
#   levers   A/B runs of ours, one lever off (or on) at a time, DiT only
#   e2e      the product path end to end: decode overlapped on a side stream vs inline, both decoders;
#            an endless stream (relative RoPE, sinks) against absolute RoPE of the same geometry
#   fp8      FP8 linear micro-benchmark + the rollout with FP8 linears and its end-to-end error
#   models   14B and TI2V-5B time per chunk and memory
#   jobs     back-to-back jobs: a new pipeline per job vs one kept between jobs (the ComfyUI sampler)
#
# Time limits: each stage's limits add up to <= 540 s (9 minutes), the preamble (nvidia-smi, import) aside.
# Expected on a fresh H100 (a cold torch.compile of the DiT blocks ~100 s per process; later processes
# of a stage reuse the on-disk inductor / Triton caches when they compile the same graphs): checks ~4
# min, main ~4, levers ~6, e2e ~7, fp8 ~6, models ~7, jobs ~3.
#
# Every command's output goes to OUT_DIR/<stage>.log and its JSON next to it; a failing command is
# reported and the stage goes on. The device tool returns at most 8 files per call: one log and
# a few JSON per stage.
set -u
stage="${1:?usage: bash bench/gpu_runbook.sh checks|main|levers|e2e|fp8|models|jobs [OUT_DIR]}"
out="${2:-${OUT:-./bench_out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
log="$out/$stage.log"
failures=0

step() {  # step <seconds> <command...>: run with a time limit, log it, never abort the stage
    local limit="$1"
    shift
    echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$log"
    timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "=== FAILED (exit $rc): $*" | tee -a "$log"
        failures=$((failures + 1))
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
$py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$log"

case "$stage" in
checks)
    # the GPU tests only: the CPU tests of these files (and test_gpu_runbook.py, a CPU check of this
    # script) run in CI and would only spend device time here
    gpu_tests="$(ls tests/test_*gpu*.py | grep -v test_gpu_runbook) tests/test_fp8_linear.py::test_gpu_fp8_linear_sync_free_compiled_and_in_a_rollout"
    step 330 $py -m pytest -q -p no:cacheprovider -o addopts="" $gpu_tests
    step 200 $py bench/rollout_gpu_check.py
    ;;
main)
    step 540 $py bench/bench_ar.py --model 1.3b --json "$out/bench.json"
    ;;
levers)
    common=(--model 1.3b --decoder none --paths ours --warmup 1 --repeats 2)
    step 150 $py bench/bench_ar.py "${common[@]}" --json "$out/ours.json"
    step 100 $py bench/bench_ar.py "${common[@]}" --no-cuda-graphs --json "$out/nographs.json"
    step 150 $py bench/bench_ar.py "${common[@]}" --no-fuse-qkv --json "$out/nofuse.json"
    step 90 $py bench/bench_ar.py "${common[@]}" --no-compile --no-cuda-graphs --json "$out/eager.json"
    ;;
e2e)
    step 260 $py bench/bench_ar.py --model 1.3b --paths ours --decoder both --overlap-decode --no-context-pass-last --json "$out/overlap.json"
    # endless stream: relative RoPE with 3 sink + 18 window frames, full from chunk 7; absolute as the A/B
    endless=(--model 1.3b --decoder none --paths ours --chunks 14 --window 18 --sink 3 --repeats 2)
    step 160 $py bench/bench_ar.py "${endless[@]}" --rope relative --json "$out/endless_rel.json"
    step 110 $py bench/bench_ar.py "${endless[@]}" --rope absolute --json "$out/endless_abs.json"
    ;;
fp8)
    # speed of FP8 linears (compiled, graphs), then the end-to-end error against an fp32 reference:
    # plain bf16 (the yardstick) and bf16 + FP8 linears, eager, so only the dtype differs
    err=(--model 1.3b --decoder none --reference-dtype fp32 --no-compile --no-cuda-graphs --warmup 0 --repeats 1)
    step 130 $py bench/fp8_linear.py --model 1.3b --json "$out/fp8_linear.json"
    step 170 $py bench/bench_ar.py --model 1.3b --decoder none --paths ours --fp8-linear --json "$out/fp8_speed.json"
    step 120 $py bench/bench_ar.py "${err[@]}" --json "$out/err_bf16.json"
    step 120 $py bench/bench_ar.py "${err[@]}" --fp8-linear --json "$out/err_fp8.json"
    ;;
models)
    step 300 $py bench/bench_ar.py --model 14b --decoder none --repeats 1 --json "$out/bench14b.json"
    step 230 $py bench/bench_ar.py --model ti2v-5b --decoder taehv --repeats 1 --json "$out/bench5b.json"
    ;;
jobs)
    step 300 $py bench/kept_rollout.py --model 1.3b --jobs 3 --json "$out/kept.json"
    step 200 $py bench/kept_rollout.py --model 1.3b --jobs 3 --window 12 --sink 3 --json "$out/kept_window.json"
    ;;
*)
    echo "unknown stage '$stage': checks | main | levers | e2e | fp8 | models | jobs" >&2
    exit 2
    ;;
esac
echo "=== stage $stage done, $failures failed command(s)" | tee -a "$log"
exit $((failures > 0))
