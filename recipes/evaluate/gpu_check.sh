#!/usr/bin/env bash
# The paper's detector (profile `paper`: DRAEM discriminative UNet, 256 px) on MVTec grid and KolektorSDD,
# for the default CAI, its paste ablation, DRAEM and GLASS-LAS, one seed: a check of the `cpu` profile's
# ranking whenever a GPU is available. Writes OUT/grid and OUT/ksdd (results.md/json/csv, curves, maps).
#
# Usage (repository root, project venv active):
#   bash recipes/evaluate/gpu_check.sh [OUT] [extra cai-hub evaluate options...]
#   OUT defaults to runs/gpu_check; ANOMALY_SET (env) defaults to runs/daad, the shared-sources DAAD the
#   cpu tables use (built here with `cai-hub daad build --recipe recipes/daad/daad.yaml` when missing)
#   EPOCHS (env) defaults to 15. CPU smoke test (what the test suite runs):
#   bash recipes/evaluate/gpu_check.sh /tmp/gc --epochs 1 --max-normals 2 --per-image 2 --size 64
#
# Why 15 epochs (an estimate: no GPU was available when this was written, so the wall time is NOT
# measured): the UNet costs ~2 x 10^11 FLOP per 256 x 256 training sample (forward + backward); at an
# effective 20-60 TFLOP/s (TF32 convolutions on one data-centre GPU) that is 3-10 ms per sample, so one
# epoch is ~1-3 s on grid (275 samples) and ~3-8 s on KolektorSDD (308 samples at 256 x 640). Four
# synthesizers x 15 epochs x both targets is then 4-11 min of training at the two ends of that range, plus
# ~1-2 min of synthesis, metrics and FD; 15 keeps the likely case under 8 minutes. Run it once with
# `time` and adjust EPOCHS to the measured epoch time (train_log.jsonl has seconds per epoch). The
# paper trains 200 epochs: this is a ranking check, not a reproduction.
set -euo pipefail
OUT=${1:-runs/gpu_check}
shift || true
ASET=${ANOMALY_SET:-runs/daad}
if [ ! -d "$ASET" ]; then
  cai-hub daad build --recipe recipes/daad/daad.yaml --out "$ASET"
fi
EPOCHS=${EPOCHS:-15}
DATA=../shared/data
SYNTH=cai,cai-paste,draem,glass-las
# A later --epochs in "$@" overrides this one (click keeps the last value).
cai-hub evaluate --target mvtec --root $DATA/mvtec_ad --category grid --daad "$ASET" --synth $SYNTH \
    --profile paper --seeds 1 --epochs "$EPOCHS" --out "$OUT/grid" --quiet "$@"
cai-hub evaluate --target ksdd --root $DATA/ksdd --daad "$ASET" --synth $SYNTH \
    --profile paper --seeds 1 --epochs "$EPOCHS" --out "$OUT/ksdd" --quiet "$@"
echo "wrote $OUT/grid/results.md and $OUT/ksdd/results.md"
