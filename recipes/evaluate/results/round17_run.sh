#!/bin/bash
# round 17: fill the pairs the bar lacks (plan: recipes/evaluate/results/round17_plan.txt)
# runs from a frozen worktree of 2bd1c34 so that edits in /work/main cannot reach a running evaluation
cd /work/evaltree
export PYTHONPATH=/work/evaltree
E="/work/main/.venv/bin/python -m cai evaluate --daad /work/runs/daad --jobs 2 --threads 2 --quiet"
M="--target mvtec --root /work/shared/data/mvtec_ad --category"
B="--target folder --root /work/runs/bsdata_target/normals --test-root /work/runs/bsdata_target/test --exclude-source bsdata_pitting --seeds 6"
C="--target folder --root /work/runs/carpet_target/normals --test-root /work/runs/carpet_target/test --exclude-source mvtec_ad --seeds 6"
ABL=cai+paste,cai-n,cai-m
BAS=cutpaste,nsa-n,nsa-m,draem,glass-las
set -x
# part 1: single-mode ablations beside the default where they were not paired
$E $M hazelnut --seeds 3 --synth $ABL --out /work/runs/r17a_hazelnut
$E $B --synth $ABL --out /work/runs/r17a_bsdata
$E $M grid --seeds 3 --synth $ABL --out /work/runs/r17a_grid
$E $C --synth $ABL --out /work/runs/r17a_carpet
$E --target ksdd --root /work/shared/data/ksdd --seeds 3 --synth cai-m --out /work/runs/r17a_ksdd
# part 2: the baselines not re-run beside the default
$E $M grid --seeds 3 --synth cutpaste,nsa-n,draem,glass-las --out /work/runs/r17b_grid
$E $M hazelnut --seeds 3 --synth nsa-n,nsa-m,glass-las --out /work/runs/r17b_hazelnut
$E --target ksdd --root /work/shared/data/ksdd --seeds 3 --synth cutpaste,nsa-n,nsa-m,glass-las --out /work/runs/r17b_ksdd
$E $B --synth nsa-n,nsa-m,draem,glass-las --out /work/runs/r17b_bsdata
$E $C --synth nsa-n,nsa-m,draem,glass-las --out /work/runs/r17b_carpet
# part 3: Mixed mode (and paste with today's settings on road cracks) where it is missing
F="--target folder --seeds 6 --root /work/runs"
$E $F/cfd_target/normals --test-root /work/runs/cfd_target/test --exclude-source crackforest,cracks_mixed --synth cai+paste,cai-m --out /work/runs/r17a_cfd
$E $F/neu_target/normals --test-root /work/runs/neu_target/test --exclude-source neu_seg --synth cai-m --out /work/runs/r17a_neu
$E $F/fabric_target/normals --test-root /work/runs/fabric_target/test --exclude-source fabric_hsst --synth cai-m --out /work/runs/r17a_fabric
echo ALLDONE
