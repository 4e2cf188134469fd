"""Pixel metrics of one evaluation run on a KolektorSDD-sized test set, with the stable argsort they
replaced side by side in the same run.

59 anomaly maps of 1250 x 500 float32 (a 40 x 104 random map upsampled bilinearly, as the detector's
maps are; ~37 M pixels), 52 of them with a 40 x 30 defect; pixel AUROC / AP / PRO / image AUROC and the
AP of two image subsets (per-class AP), the test set's ground truth prepared once
(:class:`cai.eval.metrics.GroundTruth`, as ``cai-hub evaluate`` does). "stable argsort" replaces the
ranking (:func:`cai.eval.metrics._rank`) with ``np.argsort(-scores, kind="stable")`` on float64
(the code before); the last line says whether every figure came out identical.

    python benchmarks/bench_metrics.py [--repeats 3]

Figures only; nothing is asserted (tests/eval/test_metrics.py checks the equality).
"""
import argparse
import time

import cv2
import numpy as np

from cai.eval import metrics


def test_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(59):
        maps.append(cv2.resize(rng.random((40, 104)).astype(np.float32), (500, 1250), interpolation=cv2.INTER_LINEAR))
        mask = np.zeros((1250, 500), bool)
        if i > 6:
            mask[600:640, 200:230] = True
        masks.append(mask)
    return maps, masks


def stable_rank(scores):
    scores = scores.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    return order, np.r_[np.flatnonzero(np.diff(scores[order])), scores.size - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    maps, masks = test_set()
    truth = metrics.GroundTruth(masks)
    subsets = {"all": list(range(59)), "every other": list(range(0, 59, 2))}
    print(f"{sum(m.size for m in maps) / 1e6:.1f} M pixels, {len(maps)} maps; best of {args.repeats}")
    results, fast_rank = {}, metrics._rank
    for label, rank in (("64-bit key sort (default)", fast_rank), ("stable argsort", stable_rank)):
        metrics._rank = rank
        try:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = metrics.pixel_metrics(maps, truth, subsets=subsets)
                best = min(best, time.perf_counter() - start)
        finally:
            metrics._rank = fast_rank
        results[label] = out
        print(f"  {label:<26} {best:6.2f} s  pixel AP {out['pixel_ap']:.6f}  PRO {out['pro']:.6f}")
    a, b = results.values()
    print("identical:", all(a[k] == b[k] for k in ("pixel_auroc", "pixel_ap", "pro", "image_auroc", "subset_ap")))


if __name__ == "__main__":
    main()
