#!/usr/bin/env bash
# The whole CDM chain on CPU in about a minute, on a tiny random SD model: checks the plumbing
# (CAI split -> training -> saved tokens -> generation -> CAI-schema split), not image quality.
#
#   bash recipes/cdm/tiny_cpu.sh [WORK_DIR]
set -euo pipefail
WORK=${1:-/tmp/cdm_tiny}
rm -rf "$WORK" && mkdir -p "$WORK"

python -m cai.cdm.tiny "$WORK/tiny-sd"                            # tiny SD 1.x folder, 4-channel UNet
cai-hub build-synthetic --out "$WORK/cai" --quota 1,1,1 --quiet    # 18 CAI pseudo anomalies, embedded sample

# the same run as accelerate would launch it on a GPU, here on CPU in float32
accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no --cpu \
    -m cai.cdm.train --train-data "$WORK/cai" --base-model "$WORK/tiny-sd" --output-dir "$WORK/cdm" \
    --resolution 32 --train-batch-size 2 --max-train-steps 20 --checkpointing-steps 10 \
    --num-vectors 2 --spatial-tokens 2 --learning-rate 5e-2 --no-progress
# continue it to 30 steps from its last checkpoint (step count continues at 21)
cai-hub cdm train --train-data "$WORK/cai" --base-model "$WORK/tiny-sd" --output-dir "$WORK/cdm" \
    --resolution 32 --train-batch-size 2 --max-train-steps 30 --checkpointing-steps 10 \
    --num-vectors 2 --spatial-tokens 2 --learning-rate 5e-2 --resume-from-checkpoint latest --no-progress

cai-hub cdm generate --embeds "$WORK/cdm" --out "$WORK/generated" --size 64 --steps 4 --quiet
cai-hub cdm generate --embeds "$WORK/cdm" --out "$WORK/generated_new" --masks new --quota 1,1,1 \
    --size 64 --steps 4 --quiet
python -c "import datasets, sys; print(datasets.load_dataset(sys.argv[1], split='train'))" "$WORK/generated"
