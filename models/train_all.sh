#!/bin/sh
# The commands that trained the shipped checkpoints (run from the repository root, one at a time).
set -e
PY=${PY:-.venv/bin/python}
T="--threads 1 --quiet --force"
VIVO="--session invivo_NYU-40_2021-04-14_001 --seconds 1000"
for s in invitro_210511001_bh invitro_210511001_lh; do
  for l in focal dice; do
    $PY -m spikeviz train --session $s --loss $l --preset fast --epochs 15 $T --out models/$s-$l.safetensors
  done
done
for l in focal dice; do
  $PY -m spikeviz train $VIVO --loss $l --preset fast --epochs 15 $T --out models/invivo_NYU-40_2021-04-14_001-$l.safetensors
done
$PY -m spikeviz train --session invitro_210511001_bh --loss focal --preset transfer --epochs 8 $T --out models/invitro_210511001_bh-focal-transfer.safetensors
$PY -m spikeviz train $VIVO --loss focal --preset transfer --epochs 8 $T --out models/invivo_NYU-40_2021-04-14_001-focal-transfer.safetensors
rm -f models/*.state.safetensors
