#!/usr/bin/env bash
# CPU-scale Tables 1, 3 and 4 and the on-the-fly comparison on the ../shared targets, as the runs in README.md were made.
# Usage (from the repository root, project venv active):  bash recipes/evaluate/run_tables.sh [ANOMALY_SET] [OUT] [SEEDS]
#   ANOMALY_SET  anomaly set for the cai* synthesizers (default /tmp/aset, made by
#                python recipes/anomaly_set_from_shared/build_anomaly_set.py --shared ../shared/data --out /tmp/aset)
#   OUT          output root (default runs)
#   SEEDS        seeds per synthesizer (default 3)
# Blocks that already have results.json are skipped, so the script can be re-run after an interruption.
# Then: python recipes/evaluate/collect_tables.py OUT/*   (tables with paired bootstrap intervals)
#       python recipes/evaluate/compare_runs.py OUT/* --reference cai-n --candidates ...  (leave one target out)
#       python recipes/evaluate/compare_runs.py OUT/*_grid --reference cai   (on-the-fly runs are named <synth>@otf)
set -euo pipefail
ASET=${1:-/tmp/aset}
OUT=${2:-runs}
SEEDS=${3:-3}
DATA=../shared/data
BASELINES=cutpaste,nsa-n,nsa-m,draem,glass-las
VARIANTS=cai-n,cai-paste,cai-r,cai-mix,cai-paste+refine,cai-n+refine        # the causes, one row each (Table 3)
CHOICE=cai-paste+refine+aug,cai-paste+refine+chmask                           # candidates for the default
MORE=cai+gain2,cai+noborder                                                    # contrast gain, border-cut patterns out
MIXES=cai+q622,cai+q262,cai+q226                                               # Table 4 (cai itself is 4/3/3)
OTF=cai,draem,cutpaste                                                         # --on-the-fly vs the fixed split

run() {  # name, then evaluate options
  local name=$1; shift
  if [ -f "$OUT/$name/results.json" ]; then echo "skip $name (done)"; return; fi
  /usr/bin/time -v -o "$OUT/$name.time" \
    cai-hub evaluate "$@" --daad "$ASET" --profile cpu --seeds "$SEEDS" --out "$OUT/$name" --quiet
}
mkdir -p "$OUT"
for t in grid hazelnut ksdd; do
  if [ $t = ksdd ]; then where=(--target ksdd --root $DATA/ksdd); else where=(--target mvtec --root $DATA/mvtec_ad --category $t); fi
  run "cai_$t"  "${where[@]}" --synth cai            # the default
  run "base_$t" "${where[@]}" --synth $BASELINES     # Table 1
  run "abl_$t"  "${where[@]}" --synth $VARIANTS      # Table 3
  run "cand_$t" "${where[@]}" --synth $CHOICE
  run "more_$t" "${where[@]}" --synth $MORE
  run "t4_$t"   "${where[@]}" --synth $MIXES
  run "otf_$t"  "${where[@]}" --synth $OTF --on-the-fly
done
