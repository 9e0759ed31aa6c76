#!/usr/bin/env bash
# The results of record on a lent GPU (no internet, ~15 minutes of device time in all): one prepared command of at
# most ~5 minutes that works down the priority queue and writes every finished result into $OUT at once.
#
#   bash tools/gpu_session.sh [study2|queue|bench]        (default: study2)
#
#   study2  the second CPU study's queue first (issue 28): python -m course_lib.experiments.study run --queue study2,
#           again while it lands runs and time is left (a pass plans the runs the records so far allow: the tuning
#           grid, its doubling checks, then the curve and its seeds once the budget is chosen). The new records and
#           the progress table come back as $OUT/study2-records.tar.gz: tar -xzf it here, in the repository root.
#   queue   python -m course_lib.experiments run --profile gpu --deadline-s $DEADLINE_S --out $OUT
#           (1) CIFAR-10 full: ResNet-18, ViT, ViT+DRLoc (fp16 checkpoints of record come back too);
#           (2) the small-data curve, seed by seed, smallest size first; (3) the DRLoc ablation.
#           Runs already recorded (course_lib/records/, records/) are skipped: run the same command again to go on.
#   bench   ViT vs timm (bf16), GPU loader vs DataLoader(2 workers), time to 93 % / 85 %, each under $DEADLINE_S.
#
# Device tool: carry [".carry"] with .carry/cifar10_yoongikim_jpg.tar.xz (cp ../shared/data/cifar10-jpeg/*.tar.xz
# .carry/), timeout_s ~330. What comes back ($OUT, at most 8 files of <= 16 MiB): records.tar.gz (the records),
# manifest.json + *.fp16.pt[.partN] (checkpoints of record), log.txt. Then here:
#   tar -xzf records.tar.gz && cp records/*.json course_lib/records/ && cp manifest.json *.fp16.pt* checkpoints_of_record/
#   python -m course_lib.experiments notebooks --profile gpu --datasets cifar10    # on the CPU, from those checkpoints
#
# PROFILE=smoke DEADLINE_S=20 bash tools/gpu_session.sh runs the same logic on a CPU in seconds (how it is tested).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-study2}
PROFILE=${PROFILE:-gpu}
DEADLINE_S=${DEADLINE_S:-290}
OUT=${OUT:-artifacts/gpu_out}
mkdir -p "$OUT" data/cifar10-jpeg
export PYTHONUNBUFFERED=1 COURSE_PLAIN_PROGRESS=1 COURSE_OFFLINE=1 PYTHONPATH=$PWD
if [ -f .carry/cifar10_yoongikim_jpg.tar.xz ]; then cp -n .carry/cifar10_yoongikim_jpg.tar.xz data/cifar10-jpeg/; fi
PY=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  case "$STAGE" in
    study2)
      START=$(date +%s)
      touch "$OUT/.start"
      for pass in 1 2 3 4 5; do
        LEFT=$(( DEADLINE_S - ($(date +%s) - START) ))
        [ "$LEFT" -gt 30 ] || break
        BEFORE=$(ls course_lib/records | wc -l)
        $PY -m course_lib.experiments.study run --queue study2 --data-root data --deadline-s "$LEFT" \
          --max-run-minutes 60 || echo "study2 pass $pass: the driver stopped with an error"
        [ "$(ls course_lib/records | wc -l)" -gt "$BEFORE" ] || break     # nothing new landed: stop
      done
      find course_lib/records -newer "$OUT/.start" -type f | tar -czf "$OUT/study2-records.tar.gz" -T -
      echo "study2: $(tar -tzf "$OUT/study2-records.tar.gz" | wc -l) file(s) in study2-records.tar.gz" ;;
    queue)
      $PY -m course_lib.experiments run --profile "$PROFILE" --datasets cifar10 --data-root data \
        --deadline-s "$DEADLINE_S" --out "$OUT" ;;
    bench)
      $PY benchmarks/bench_vit_vs_timm.py --out "$OUT/bench-vit-vs-timm.json"
      $PY benchmarks/bench_loader.py --data-root data --epochs 2 --train --out "$OUT/bench-loader.json"
      timeout "$DEADLINE_S" $PY benchmarks/bench_time_to_accuracy.py --data-root data \
        --out "$OUT/bench-time-to-accuracy.json" || echo "time to accuracy: stopped at the deadline" ;;
    *) echo "unknown stage $STAGE (study2, queue or bench)"; exit 2 ;;
  esac
} 2>&1 | tee "$OUT/log.txt"
