#!/usr/bin/env bash
# The results of record, on a GPU machine without internet (the course's device tool, or any CUDA box).
#
#   bash tools/gpu_session.sh STAGE
#
# STAGE is one of (each fits in one 10-minute device command on an H100):
#   train-a    ch1 + ch4 runs on CIFAR-10 (ViT, ResNet-18, ViT on 50/class)
#   train-b    ch5 runs (ViT+DRLoc, the 10 % subset, the lambda / m ablation)
#   train-c    the small-data curve (50, 100, 500 per class x ResNet-18, ViT, ViT+DRLoc)
#   bench      ViT vs timm (bf16), GPU-resident loader vs DataLoader(2 workers)
#   tta        time to 93 % (ResNet-18) and 85 % (ViT) on CIFAR-10
#   notebooks  re-execute the notebooks with papermill (profile gpu, CIFAR-10) so their outputs come from these runs
#
# Inputs it expects in the working tree (git-ignored, named in the device tool's `carry`):
#   .carry/cifar10_yoongikim_jpg.tar.xz   the CIFAR-10 JPEG copy (from ../shared/data/cifar10-jpeg/)
#   .carry/checkpoints/ (optional)        checkpoints to resume from (normally not needed: checkpoints/ is
#                                         git-ignored, so it stays on a warm device machine between stages; they
#                                         are too big to bring back, ~130 MB for a ResNet-18 with AdamW state)
#   .whl/*.whl (for notebooks/bench)      papermill, nbclient, ipykernel, ... and timm, built for Python 3.12
# Outputs, under $OUT (at most 8 files come back): results-<stage>.tar.gz (results/*.json), notebooks.tar.gz,
# bench-*.json, and the log. Run the stages in order on one warm machine: `notebooks` needs the checkpoints.
#
# PROFILE=smoke bash tools/gpu_session.sh train-a runs the same logic on a CPU in seconds (how it is tested).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:?usage: bash tools/gpu_session.sh train-a|train-b|train-c|bench|tta|notebooks}
PROFILE=${PROFILE:-gpu}
OUT=${OUT:-artifacts/gpu_out}
mkdir -p "$OUT" data/cifar10-jpeg
export PYTHONUNBUFFERED=1 COURSE_PLAIN_PROGRESS=1 COURSE_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ -f .carry/cifar10_yoongikim_jpg.tar.xz ]; then cp -n .carry/cifar10_yoongikim_jpg.tar.xz data/cifar10-jpeg/; fi
W=${COURSE_WORKDIR:-$PWD}                     # where results/ and checkpoints/ live
if [ -d .carry/checkpoints ]; then mkdir -p "$W/checkpoints" && cp -rn .carry/checkpoints/. "$W/checkpoints/"; fi
PY=${PYTHON:-python3}
run() { $PY -m course_lib.experiments run --profile "$PROFILE" --data-root data --datasets cifar10 "$@"; }
pack() { tar -czf "$OUT/results-$STAGE.tar.gz" -C "$W" results; }   # the records, to commit
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  case "$STAGE" in
    train-a) run --only ch1,ch4; pack ;;
    train-b) run --only ch5; pack ;;
    train-c) run --only results; pack ;;
    bench)
      $PY benchmarks/bench_vit_vs_timm.py --out "$OUT/bench-vit-vs-timm.json"
      $PY benchmarks/bench_loader.py --data-root data --epochs 2 --out "$OUT/bench-loader.json"
      $PY benchmarks/bench_loader.py --data-root data --epochs 1 --train --out "$OUT/bench-loader-train.json" ;;
    tta) $PY benchmarks/bench_time_to_accuracy.py --data-root data --out "$OUT/bench-time-to-accuracy.json" ;;
    notebooks)
      # The budget goes in through the environment (no stored profile cell that would pin CI to it).
      $PY -m course_lib.experiments notebooks --profile "$PROFILE" --data-root data --datasets cifar10
      tar -czf "$OUT/notebooks.tar.gz" notebooks/*.ipynb ;;
    *) echo "unknown stage $STAGE"; exit 2 ;;
  esac
} 2>&1 | tee "$OUT/log-$STAGE.txt"
