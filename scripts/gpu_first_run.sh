#!/usr/bin/env bash
# The first run on a GPU machine, before any real training: one command, no Hub weights, ~10 minutes.
#   1. environment: CUDA, compute capability, bf16, bitsandbytes' CUDA kernels   -> results/gpu/environment.json
#   2. the fit check of every preset on every GPU hardware (random 7B weights)   -> results/gpu/fitcheck.json
#   3. the rehearsal profile on CUDA: 4-bit, bf16, paged AdamW, the real settings -> results/gpu/rehearsal/
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
fi
step "$PY" -m lib.fitcheck --environment --out "$OUT/environment.json"
step "$PY" -m lib.fitcheck --all --steps 2 --out "$OUT/fitcheck.json"
step env PTLLM_RESULTS_DIR="$OUT" "$PY" -m lib.pipeline --profile rehearsal
[ -n "$DRY" ] || echo "done: commit $OUT/"
