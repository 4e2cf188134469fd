#!/bin/bash
# round 17: every synthesizer paired with the default (cai = 3/4 paste) on the eight targets; extra args to the script
cd /work/main
A=""
for t in grid hazelnut ksdd bsdata_target carpet_target cfd_target; do A="$A --alias $t:cai=cai+paste50 --alias $t:cai+paste75=cai"; done
R=""
for t in grid hazelnut ksdd bsdata carpet; do R="$R runs/r10_$t"; for r in r17a r17b; do [ -f /work/runs/${r}_$t/results.json ] && R="$R runs/${r}_$t"; done; done
R="$R runs/r11_cfd runs/r12_neu runs/r13_fabric"
for t in cfd neu fabric; do for r in r17a r17b; do [ -f /work/runs/${r}_$t/results.json ] && R="$R runs/${r}_$t"; done; done
C="--cluster=bsdata_target=_(\d+_\d{3}_crop_\d_w\d)\. --cluster=carpet_target=carpet_color_(\d{3})_w --cluster=cfd_target=cfd_(\d{3})_w --cluster=neu_target=neu_(\d+)_w --cluster=fabric_target=(fabric_.+)_w\d+"
echo "# runs: $R"
cd /work && main/.venv/bin/python main/recipes/evaluate/compare_runs.py $R $A $C --reference cai "$@"
