#!/bin/bash
# round 18: default, cai+nsanv25 (r14), cai+nsands25 (r16d), cai-m (r17a) pooled; extra args go to the script
cd /work/main
A=""
for t in grid hazelnut ksdd bsdata_target carpet_target cfd_target; do A="$A --alias $t:cai=cai+paste50 --alias $t:cai+paste75=cai"; done
R=""
for t in grid hazelnut ksdd bsdata carpet; do R="$R runs/r10_$t"; for r in r14 r16d r17a; do [ -f /work/runs/${r}_$t/results.json ] && R="$R runs/${r}_$t"; done; done
R="$R runs/r11_cfd runs/r12_neu runs/r13_fabric"
for t in cfd neu fabric; do for r in r14 r16d r17a; do [ -f /work/runs/${r}_$t/results.json ] && R="$R runs/${r}_$t"; done; done
C="--cluster=bsdata_target=_(\d+_\d{3}_crop_\d_w\d)\. --cluster=carpet_target=carpet_color_(\d{3})_w --cluster=cfd_target=cfd_(\d{3})_w --cluster=neu_target=neu_(\d+)_w --cluster=fabric_target=(fabric_.+)_w\d+"
S=${SCRIPT:-compare_runs.py}; [ "$S" = compare_runs.py ] && A="$A --reference ${REF:-cai}"
echo "# runs: $R"
cd /work && main/.venv/bin/python main/recipes/evaluate/$S $R $A $C "$@"
