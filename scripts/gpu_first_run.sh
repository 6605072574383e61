#!/usr/bin/env bash
# The first run on a GPU machine, before any real training: one command; steps 1-3 need no Hub weights (~10 minutes), step 4 downloads Zephyr-7B-beta and two datasets.
#   1. environment: CUDA, compute capability, bf16, bitsandbytes' CUDA kernels   -> results/gpu/environment.json
#   2. the fit check of every preset on every GPU hardware (random 7B weights)   -> results/gpu/fitcheck.json
#   3. the rehearsal profile on CUDA: 4-bit, bf16, paged AdamW, the real settings -> results/gpu/rehearsal/
#   4. Zephyr-7B-beta on the full ENEM and ASSIN 2 RTE (Hub), next to its published 57.87 and 88.36
#      (lib.ptbench, the leaderboard's protocol; goal: within 2 points)     -> results/gpu/ptbench_zephyr/
# Usage: scripts/gpu_first_run.sh [--dry-run]   (--dry-run: print the commands and run their CPU-side dry runs)
# Then commit results/gpu/ (docs/gpu_first_run.md says what to look at).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${PTLLM_GPU_RESULTS:-results/gpu}"
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY=1

step() { echo "+ $*"; [ -n "$DRY" ] || "$@"; }

if [ -n "$DRY" ]; then
  "$PY" -m lib.fitcheck --environment
  "$PY" -m lib.fitcheck --all --steps 2 --dry-run > /dev/null && echo "fit check plan: ok"
  "$PY" -m lib.pipeline --profile rehearsal --dry-run
  "$PY" -m lib.ptbench --model zephyr-7b-beta --tasks enem_challenge,assin2_rte --output-dir "$OUT/ptbench_zephyr" --dry-run
fi
step "$PY" -m lib.fitcheck --environment --out "$OUT/environment.json"
step "$PY" -m lib.fitcheck --all --steps 2 --out "$OUT/fitcheck.json"
step env PTLLM_RESULTS_DIR="$OUT" "$PY" -m lib.pipeline --profile rehearsal
step "$PY" -m lib.ptbench --model zephyr-7b-beta --tasks enem_challenge,assin2_rte --output-dir "$OUT/ptbench_zephyr" \
  --compare-published HuggingFaceH4/zephyr-7b-beta
[ -n "$DRY" ] || echo "done: commit $OUT/"
