#!/bin/bash
# round 19: the ninth target (r19p_pave) and the from-scratch detector check (r19_<t>); extra args go to the script
cd /work
C='--cluster=pave_target=pave_Im_(?:no)?GT_((?:AIGLE_RN|ESAR|LCMS|TEMPEST2)_[A-Z]?\d+)'
case "$1" in
  pave) shift; main/.venv/bin/python main/recipes/evaluate/compare_runs.py runs/r19p_pave --reference cai "$C" "$@" ;;
  choose) shift; main/.venv/bin/python main/recipes/evaluate/choose_with_few_defects.py runs/r19p_pave "$C" \
      --candidates cai,cai+nsanv25,cai+nsands25,cai+paste --default cai --k 1,2,3,5 --draws 2000 "$@" ;;
  scratch) shift; main/.venv/bin/python main/recipes/evaluate/compare_runs.py runs/r19_hazelnut runs/r19_ksdd \
      --reference cai "$@" ;;
esac
