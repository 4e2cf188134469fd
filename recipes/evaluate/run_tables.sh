#!/usr/bin/env bash
# CPU-scale reproduction of the paper's Tables 1, 3 and 4 on the ../shared targets.
# Usage (from the repository root):  bash recipes/evaluate/run_tables.sh [ANOMALY_SET] [OUT] [SEEDS]
#   ANOMALY_SET  anomaly set for the cai-* synthesizers (default /tmp/aset, made by
#                python recipes/anomaly_set_from_shared/build_anomaly_set.py --shared ../shared/data --out /tmp/aset)
#   OUT          output root (default runs)
#   SEEDS        seeds per synthesizer (default 3)
# Each block writes OUT/<name>/results.{md,json,csv} + curves and example maps; blocks that already
# have results.json are skipped, so the script can be re-run after an interruption.
set -euo pipefail
ASET=${1:-/tmp/aset}
OUT=${2:-runs}
SEEDS=${3:-3}
DATA=../shared/data
T1=cai-n,cai-m,nsa-n,nsa-m,cutpaste,draem                                 # Table 1: CAI vs baselines
ABL=cai-n,cai-paste,cai-no-stm,cai-no-ils,cai-433,cai-622,cai-262,cai-226    # Tables 3 (ablations) and 4 (scale mixes)

run() {  # name, then evaluate options
  local name=$1; shift
  if [ -f "$OUT/$name/results.json" ]; then echo "skip $name (done)"; return; fi
  # GNU time records the CPU (user + system) and wall time of the whole command
  /usr/bin/time -v -o "$OUT/$name.time" \
    cai-hub evaluate "$@" --daad "$ASET" --profile cpu --seeds "$SEEDS" --out "$OUT/$name" --quiet
}
mkdir -p "$OUT"
run grid            --target mvtec --root $DATA/mvtec_ad --category grid     --synth $T1
run hazelnut        --target mvtec --root $DATA/mvtec_ad --category hazelnut --synth $T1
run ksdd            --target ksdd  --root $DATA/ksdd                          --synth $T1
run grid_abl        --target mvtec --root $DATA/mvtec_ad --category grid     --synth $ABL
run hazelnut_abl    --target mvtec --root $DATA/mvtec_ad --category hazelnut --synth $ABL
run ksdd_abl        --target ksdd  --root $DATA/ksdd                          --synth $ABL
