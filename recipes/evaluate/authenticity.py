"""Fréchet distance (FD-Lite0) of synthesizers' pseudo anomalies to a target's real test anomalies,
without training a detector: the authenticity half of an evaluation, in a minute.

Same inputs as ``cai-hub evaluate`` (normals at the synthesis size, foregrounds, leakage-guarded
anomaly set, seed 0, 10 per normal) and the same FD as its tables.

    python recipes/evaluate/authenticity.py --target ksdd --root ../shared/data/ksdd --daad /tmp/aset \
        --synth cai-n,cai-paste,cai
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from cai.baselines import make_synthesizer
from cai.eval.evaluate import _pattern_bank, load_normals, synthesize_all
from cai.eval.features import Lite0Features, frechet_distance_features
from cai.eval.targets import NORMAL_CLASS, load_eval_target
from cai.foreground import make_foreground


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, choices=["mvtec", "ksdd", "mtd", "folder"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--category")
    ap.add_argument("--daad", required=True)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write {synth: fd} here")
    args = ap.parse_args()
    target = load_eval_target(args.target, args.root, args.category)
    normals, is_grey = load_normals(target.train, 256)
    fg_fn = make_foreground("auto", category=args.category)
    fgs = [np.asarray(fg_fn(n[..., 0] if is_grey else n), bool) for n in normals]
    with tempfile.TemporaryDirectory() as cache:
        bank, *_ = _pattern_bank(args.daad, target.guard_sources, (), Path(cache))
        features = Lite0Features()
        real = features([t.load()[0] for t in target.test if t.defect_class != NORMAL_CLASS])
        out = {}
        for name in args.synth.split(","):
            synth = make_synthesizer(name, bank=bank, normals=normals)
            images, _, _ = synthesize_all(synth, normals, fgs, args.seed, is_grey)
            out[name] = frechet_distance_features(features(images), real)
            print(f"{target.category or target.name} {name}: FD-Lite0 {out[name]:.1f} ({len(images)} pseudo anomalies)",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
