#!/usr/bin/env bash
# Short real CDM run on one GPU: CAI pseudo anomalies on MVTec AD grid -> anomaly tokens learned
# against Stable Diffusion 1.5 inpainting -> new pseudo anomalies generated with them.
#
#   BASE_MODEL=/models/stable-diffusion-inpainting MVTEC_ROOT=../shared/data/mvtec_ad DAAD=daad \
#       bash recipes/cdm/train_gpu.sh
#
# BASE_MODEL: a local copy of stable-diffusion-v1-5/stable-diffusion-inpainting in the diffusers
# layout (vae/ unet/ text_encoder/ tokenizer/ scheduler/), e.g. made beforehand where there is
# internet with `hf download stable-diffusion-v1-5/stable-diffusion-inpainting --local-dir ...`;
# a hub id works too when the machine can reach the hub. Any SD 1.x folder works; with a 4-channel
# (text-to-image) model the generation falls back to latent mask blending.
set -euo pipefail

BASE_MODEL=${BASE_MODEL:?set BASE_MODEL to the SD 1.5 inpainting folder (or hub id)}
MVTEC_ROOT=${MVTEC_ROOT:-../shared/data/mvtec_ad}
CATEGORY=${CATEGORY:-grid}
DAAD=${DAAD:?set DAAD to the anomaly set folder or hub id (see recipes/daad)}
WORK=${WORK:-runs/cdm_${CATEGORY}}
STEPS=${STEPS:-1000}

# 1. CAI pseudo anomalies of the target (CPU; resumes if interrupted)
cai-hub build-synthetic --target mvtec --root "$MVTEC_ROOT" --category "$CATEGORY" --daad "$DAAD" \
    --out "$WORK/cai" --quiet

# 2. The tokens: fp16 UNet/VAE, float32 embeddings, one GPU. Resumable: rerun with
#    --resume-from-checkpoint latest (the global step count continues).
accelerate launch --num_processes 1 --num_machines 1 --mixed_precision fp16 --dynamo_backend no \
    -m cai.cdm.train \
    --train-data "$WORK/cai" \
    --base-model "$BASE_MODEL" --base-model-name stable-diffusion-v1-5/stable-diffusion-inpainting \
    --output-dir "$WORK/cdm" \
    --resolution 512 --train-batch-size 4 --gradient-accumulation-steps 1 \
    --max-train-steps "$STEPS" --learning-rate 5e-4 --lr-scheduler constant \
    --num-vectors 2 --spatial-tokens 4 \
    --mixed-precision fp16 --checkpointing-steps 250 --checkpoints-total-limit 2 \
    --seed 0 ${RESUME:+--resume-from-checkpoint latest}

# 3. New pseudo anomalies: new placements with real mask shapes, inpainted with the learned tokens
cai-hub cdm generate --embeds "$WORK/cdm" --base-model "$BASE_MODEL" \
    --target mvtec --root "$MVTEC_ROOT" --category "$CATEGORY" --daad "$DAAD" \
    --masks new --quota 1,1,1 --size 256 --resolution 512 --steps 30 --guidance-scale 7.5 \
    --dtype fp16 --out "$WORK/generated" --quiet

echo "tokens: $WORK/cdm (card: $WORK/cdm/README.md, loss: $WORK/cdm/loss_log.jsonl)"
echo "pseudo anomalies: $WORK/generated (contact sheet: $WORK/generated/contact_sheet.png)"
