r"""Where a detector's pixel-AP is lost: false positives on the normal test images, or on the normal
pixels of the defective ones, and how much of the real defects it finds.

For each target and synthesizer of the run folders given (their ``per_image`` histograms, seed means):

* ``P-AP``: pixel AP as in the tables;
* ``AP good-neg``: AP with only the *normal test images'* pixels as negatives (all defect pixels as
  positives): what false alarms on defect-free parts leave;
* ``AP defect-neg``: AP with only the normal pixels *of the defective images* as negatives: what false
  alarms around and beside the real defects leave;
* at the score threshold where the detector finds half of the defect pixels (recall 0.5): the share of
  all false-positive pixels that lie in the normal images, and the false-positive pixels per normal and
  per defective image.

    python recipes/evaluate/error_sources.py runs/r10_ksdd runs/r10_hazelnut --synth cai,cai+paste75

A synthesizer whose AP good-neg is far below its AP defect-neg loses its AP to false alarms on normal
surfaces; the other way round, to alarms beside the defects (blurred or misplaced maps).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cai.eval.bootstrap import ap_from_histograms
from cai.eval.collect import load_runs


def error_sources(pos: np.ndarray, neg: np.ndarray, recall: float = 0.5) -> dict:
    """The figures above for one run.

    Parameters
    ----------
    pos, neg : (n_images, n_bins) int ndarray
        Per-image histograms of defect and normal pixel scores (bin 0 = lowest), as saved by
        ``cai-hub evaluate`` (:mod:`cai.eval.bootstrap`).
    recall : float
        Share of the defect pixels found at the threshold the false positives are counted at.

    Returns
    -------
    dict with ``ap``, ``ap_good_neg``, ``ap_defect_neg`` (floats in [0, 1]), ``fp_share_good`` (share of
    the false-positive pixels at that threshold lying in normal images), ``fp_per_good_image``,
    ``fp_per_defect_image`` (pixels), ``n_good``, ``n_defective``.
    """
    good = pos.sum(1) == 0
    if good.all() or not good.any():
        raise ValueError("needs both normal and defective test images")
    p = pos.sum(0)
    # threshold: the highest bin index b such that the pixels in bins >= b hold at least `recall` of the positives
    found = np.cumsum(p[::-1])[::-1]
    b = int(np.nonzero(found >= recall * p.sum())[0].max())
    fp_good = neg[good, b:].sum()
    fp_defect = neg[~good, b:].sum()
    return {"ap": float(ap_from_histograms(p, neg.sum(0))),
            "ap_good_neg": float(ap_from_histograms(p, neg[good].sum(0))),
            "ap_defect_neg": float(ap_from_histograms(p, neg[~good].sum(0))),
            "fp_share_good": float(fp_good / max(fp_good + fp_defect, 1)),
            "fp_per_good_image": float(fp_good / good.sum()),
            "fp_per_defect_image": float(fp_defect / (~good).sum()),
            "n_good": int(good.sum()), "n_defective": int((~good).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders of cai-hub evaluate")
    ap.add_argument("--synth", default="", help="only these synthesizers (comma-separated; default: all)")
    ap.add_argument("--recall", type=float, default=0.5)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    wanted = [s for s in args.synth.split(",") if s]
    out = {}
    print(f"| target | synthesizer | seeds | P-AP | AP good-neg | AP defect-neg | FP share in normal images "
          f"@ recall {args.recall:g} | FP px per normal image | FP px per defective image |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for target, synths in load_runs(args.runs).items():
        for name in wanted or sorted(synths):
            if name not in synths:
                continue
            per_seed = [error_sources(p, n, args.recall) for p, n in synths[name].seeds.values()]
            mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]}
            out.setdefault(target, {})[name] = {"seeds": sorted(synths[name].seeds), **mean}
            print(f"| {target} | {name} | {len(per_seed)} | {100 * mean['ap']:.1f} | {100 * mean['ap_good_neg']:.1f} | "
                  f"{100 * mean['ap_defect_neg']:.1f} | {mean['fp_share_good']:.2f} | {mean['fp_per_good_image']:.0f} | "
                  f"{mean['fp_per_defect_image']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
