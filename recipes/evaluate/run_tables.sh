#!/usr/bin/env bash
# CPU-scale Tables 1, 3 and 4 and the on-the-fly comparison on the ../shared targets, as the runs in README.md were made.
# Usage (from the repository root, project venv active):  bash recipes/evaluate/run_tables.sh [ANOMALY_SET] [OUT] [SEEDS]
#   ANOMALY_SET  anomaly set for the cai* synthesizers (default OUT/daad: the shared-sources DAAD, built here
#                with `cai-hub daad build --recipe recipes/daad/daad.yaml` when missing). The first three rounds
#                of the quality work used the 3-source set of recipes/anomaly_set_from_shared (README.md).
#   OUT          output root (default runs)
#   SEEDS        seeds per synthesizer (default 3)
# Blocks that already have results.json are skipped, so the script can be re-run after an interruption.
# Then: python recipes/evaluate/collect_tables.py OUT/*_{grid,hazelnut,ksdd}   (tables with paired bootstrap intervals)
#       python recipes/evaluate/compare_runs.py OUT/*_{grid,hazelnut,ksdd} --reference cai-n --candidates ...  (leave one target out)
set -euo pipefail
OUT=${2:-runs}
ASET=${1:-$OUT/daad}
SEEDS=${3:-3}
DATA=../shared/data
BASELINES=cutpaste,nsa-n,nsa-m,draem,glass-las
VARIANTS=cai-n,cai-m,cai-paste,cai+paste,cai+paste50,cai+paste90,cai+nsan25,cai+nsam25,cai+nsanv25,cai+nsanvs25,cai+nsanus25,cai+nsands25,cai+nsanis25,cai+nmpmix,cai+classbal,cai+noborder,cai+rel,cai+aug,cai+flips   # Table 3 on DAAD: modes, share of paste, NSA slots (plain, gated, small, novelty-gated), mode mix, class draw, border, relative, augmentation
MIXES=cai+q622,cai+q262,cai+q226                               # Table 4 (cai itself is 4/3/3)
OTF=cai,draem,cutpaste                                         # --on-the-fly vs the fixed split

mkdir -p "$OUT"
if [ ! -d "$ASET" ]; then
  cai-hub daad build --recipe recipes/daad/daad.yaml --out "$ASET"
fi

run() {  # name, then evaluate options
  local name=$1; shift
  if [ -f "$OUT/$name/results.json" ]; then echo "skip $name (done)"; return; fi
  /usr/bin/time -v -o "$OUT/$name.time" \
    cai-hub evaluate "$@" --daad "$ASET" --profile cpu --seeds "$SEEDS" --out "$OUT/$name" --quiet
}
for t in grid hazelnut ksdd; do
  if [ $t = ksdd ]; then where=(--target ksdd --root $DATA/ksdd); else where=(--target mvtec --root $DATA/mvtec_ad --category $t); fi
  run "cai_$t"  "${where[@]}" --synth cai            # the default
  run "base_$t" "${where[@]}" --synth $BASELINES     # Table 1
  run "abl_$t"  "${where[@]}" --synth $VARIANTS      # Table 3
  run "t4_$t"   "${where[@]}" --synth $MIXES         # Table 4
  run "otf_$t"  "${where[@]}" --synth $OTF --on-the-fly
done
