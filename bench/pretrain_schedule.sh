#!/usr/bin/env bash
# Issue 16's question for a GPU: does a much longer SimCLR schedule lift Dynamic Pass at 1 % labels on the malaria
# cells? On 2 CPU cores the 30-minute pretraining budget allows ~14 epochs (150 s an epoch on one thread);
# 8 -> 14 epochs helped One Pass (+0.9 graph) and not Dynamic Pass (docs/results.md, "Longer pretraining").
# For each (SimCLR epochs E, seed S), all at once, the recipe of docs/results.md unchanged but for E:
#
#   1. graphzoo run --pretrain simclr --set pretrain_epochs=E        One Pass: pretrain, fine-tune on the labels
#   2. graphzoo run --mode dynamic --epochs 12 --set pretrained=<1's best.pt> warmup_epochs=0 rampup_epochs=3
#
# then prints the table (bench/pretrain_schedule_table.py). Usage, from the repository root:
#
#     bash bench/pretrain_schedule.sh OUTDIR "EPOCHS ..." "SEEDS ..."
#     DEVICE=cuda THREADS=2 bash bench/pretrain_schedule.sh runs/schedule "40 120" "0 1 2"
#
# DATA (default ../shared/data/malaria/malaria_50_gray.npz), FRACTION (0.01), DEVICE (auto), THREADS (1) and
# PYTHON (python3) come from the environment. One log per (E, S) in OUTDIR. On one H200 the six runs of the
# example share the GPU; on a CPU each is hours (use the CPU commands of docs/results.md instead).
set -u
OUTDIR=${1:?usage: bash bench/pretrain_schedule.sh OUTDIR "EPOCHS ..." "SEEDS ..."}
EPOCHS=${2:-14}
SEEDS=${3:-"0 1 2"}
DATA=${DATA:-../shared/data/malaria/malaria_50_gray.npz}
FRACTION=${FRACTION:-0.01}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -f "$DATA" ] || { echo "no malaria cells at $DATA: set DATA=PATH/malaria_50_gray.npz (../shared/data/malaria)"; exit 2; }
mkdir -p "$OUTDIR"
COMMON=(--config configs/malaria.yaml --data "$DATA" --out "$OUTDIR" --label-fraction "$FRACTION"
        --threads "${THREADS:-1}" --device "${DEVICE:-auto}" --no-progress)
for E in $EPOCHS; do
  for S in $SEEDS; do
    (
      $PY -m graphzoo run "${COMMON[@]}" --seed "$S" --name "simclr$E-s$S" --pretrain simclr \
          --set "pretrain_epochs=$E" &&
      $PY -m graphzoo run "${COMMON[@]}" --seed "$S" --name "dp12-$E-s$S" --mode dynamic --epochs 12 \
          --set "pretrained=$OUTDIR/simclr$E-s$S/checkpoints/best.pt" warmup_epochs=0 rampup_epochs=3
    ) >"$OUTDIR/E$E-s$S.log" 2>&1 &
  done
done
wait
$PY bench/pretrain_schedule_table.py "$OUTDIR"
