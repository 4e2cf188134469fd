#!/usr/bin/env bash
# On the head node of recipes/ray/cluster.yaml: 1 M normals under /data/normals, anomaly set under /data/daad.
# A shard is one Ray Data job (1000 tasks of 2 normals here: enough for 256 cores) and the unit a rerun resumes at;
# the driver holds one shard's rows (~2000 x 10 x 80 KiB = 1.6 GB) before writing it, so do not make it much larger.
set -euo pipefail
cai-hub build-synthetic --target folder --root /data/normals --daad /data/daad --out /data/out \
    --engine ray --ray-address auto --shard-size 2000 --quiet
