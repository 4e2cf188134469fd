"""Benchmark of ``cai.engine.poisson.poisson_blend`` against ``cv2.seamlessClone`` on real masks.

Written in the airspeed-velocity (asv) style used by scikit-image: a suite class whose
``setup`` builds seeded inputs once per parameter combination and one ``time_*`` method per
variant. ``python benchmarks/bench_poisson.py`` runs it on one pinned core and prints a table.

Inputs (all real data, from ``../shared/data`` relative to the repository root):

* regions: crack masks of ``sources/cracks_mixed`` (class-index PNG, crack = 2, channel 0 > 0)
  and stain masks of ``sources/fabric_hsst`` ({0, 255}), cropped to their bounding box,
  resized to a long side of 48 / 120 / 200 px (small / medium / large) and dilated by 2 px;
* pattern: the same bounding box (plus a margin) of the photo the mask was drawn on, resized
  alike;
* target: a defect-free 256 x 256 crop of a fabric photo; the pattern goes in its centre.

Our solver is timed as the engine calls it, on the crop ``bbox(region) + 1 px`` (``solver``
columns), and as a whole blending step that also pastes the clipped uint8 result back into a
copy of the 256 x 256 target (``step`` columns), which is what ``cv2.seamlessClone`` returns.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy / numba / cv2 are imported

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cai.engine.poisson import _blend, poisson_blend  # noqa: E402

cv2.setNumThreads(1)

DATA = REPO.parent / "shared" / "data" / "sources"
CRACK_MASKS = DATA / "cracks_mixed" / "ds" / "masks_machine"
CRACK_IMAGES = DATA / "cracks_mixed" / "ds" / "img"
FABRIC_MASKS = DATA / "fabric_hsst" / "dataset_samples" / "annotations"
FABRIC_IMAGES = DATA / "fabric_hsst" / "dataset_samples" / "images"
SIZES = {"small": 48, "medium": 120, "large": 200}
MIX = {"large": 4, "medium": 3, "small": 3}  # patterns per normal image (paper quota)
TARGET_SIZE = 256
N_MASKS = 10  # masks per dataset, drawn with a fixed seed
SEED = 0


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _read_mask(path):
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return (m[..., 0] if m.ndim == 3 else m) > 0


def _mask_files(kind):
    """Non-empty mask files of a dataset paired with their photos, seeded subset."""
    if kind == "crack":
        masks, images = CRACK_MASKS, CRACK_IMAGES
    else:
        masks, images = FABRIC_MASKS, FABRIC_IMAGES
    pairs = []
    for f in sorted(masks.glob("*.png")):
        photo = [p for p in images.glob(f.stem + ".*")]
        if photo and _read_mask(f).any():
            pairs.append((f, photo[0]))
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(pairs), size=min(N_MASKS, len(pairs)), replace=False)
    return [pairs[i] for i in sorted(pick)]


def _target():
    """A defect-free 256 x 256 crop (3 channels, uint8) of a fabric photo."""
    rng = np.random.default_rng(SEED)
    for img_path in sorted(FABRIC_IMAGES.glob("*.jpg")):
        img = cv2.imread(str(img_path))
        ann = cv2.imread(str(FABRIC_MASKS / (img_path.stem + ".png")), cv2.IMREAD_GRAYSCALE)
        for _ in range(50):
            y = rng.integers(0, img.shape[0] - TARGET_SIZE + 1)
            x = rng.integers(0, img.shape[1] - TARGET_SIZE + 1)
            if not ann[y:y + TARGET_SIZE, x:x + TARGET_SIZE].any():
                return np.ascontiguousarray(img[y:y + TARGET_SIZE, x:x + TARGET_SIZE])
    raise RuntimeError("no defect-free 256 x 256 fabric crop found")


def _pattern(mask_path, photo_path, kind, long_side, target):
    """Region (256, 256) bool and source (256, 256, 3) uint8 for one mask at one size."""
    mask = _read_mask(mask_path)
    photo = cv2.imread(str(photo_path))
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    scale = long_side / max(y1 - y0, x1 - x0)
    h, w = max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale))
    small = cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8) * 255, (w, h),
                       interpolation=cv2.INTER_LINEAR) > 127
    if not small.any():  # a 1-px-wide crack can vanish when shrunk: keep its skeleton
        small = cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), (w, h),
                           interpolation=cv2.INTER_AREA) > 0
    m = 4  # pattern margin in target pixels (covers the 2-px dilation and its neighbours)
    pm = int(np.ceil(m / scale))
    py0, px0 = max(0, y0 - pm), max(0, x0 - pm)
    py1, px1 = min(photo.shape[0], y1 + pm), min(photo.shape[1], x1 + pm)
    ph, pw = round((py1 - py0) * scale), round((px1 - px0) * scale)
    patch = cv2.resize(photo[py0:py1, px0:px1], (pw, ph), interpolation=cv2.INTER_AREA)
    region = np.zeros(target.shape[:2], bool)
    source = target.copy()
    oy, ox = (TARGET_SIZE - h) // 2, (TARGET_SIZE - w) // 2
    region[oy:oy + h, ox:ox + w] = small
    sy, sx = oy - round((y0 - py0) * scale), ox - round((x0 - px0) * scale)
    ty0, tx0 = max(sy, 0), max(sx, 0)
    ty1, tx1 = min(sy + ph, TARGET_SIZE), min(sx + pw, TARGET_SIZE)
    source[ty0:ty1, tx0:tx1] = patch[ty0 - sy:ty1 - sy, tx0 - sx:tx1 - sx]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # 2-px dilation
    region = cv2.dilate(region.astype(np.uint8), kernel) > 0
    return region, source


class Case:
    """One blending problem: the full 256 x 256 inputs and the engine's crop of them."""

    def __init__(self, target, source, region):
        self.target, self.source, self.region = target, source, region
        ys, xs = np.nonzero(region)
        self.box = (ys.min() - 1, ys.max() + 2, xs.min() - 1, xs.max() + 2)
        y0, y1, x0, x1 = self.box
        self.t_crop = np.ascontiguousarray(target[y0:y1, x0:x1])
        self.s_crop = np.ascontiguousarray(source[y0:y1, x0:x1])
        self.r_crop = np.ascontiguousarray(region[y0:y1, x0:x1])
        self.mask255 = region.astype(np.uint8) * 255
        bx, by, bw, bh = cv2.boundingRect(self.mask255)
        self.center = (bx + bw // 2, by + bh // 2)  # cv2 puts the mask's box back in place
        self.unknowns = int(region.sum())


def build_cases(kind, size):
    target = _target()
    cases = []
    for mask_path, photo_path in _mask_files(kind):
        region, source = _pattern(mask_path, photo_path, kind, SIZES[size], target)
        cases.append(Case(target, source, region))
    return cases


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------
def ours(case, mode):
    return poisson_blend(case.t_crop, case.s_crop, case.r_crop, mode)


def ours_step(case, mode):
    out = case.target.copy()
    y0, y1, x0, x1 = case.box
    blended = poisson_blend(case.t_crop, case.s_crop, case.r_crop, mode)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def opencv(case, flag):
    return cv2.seamlessClone(case.source, case.target, case.mask255, case.center, flag)


class PoissonBlendSuite:
    """asv suite: one parameter combination = one dataset x one pattern size."""

    params = (["crack", "fabric"], list(SIZES))
    param_names = ["dataset", "size"]
    timeout = 600

    def setup(self, dataset, size):
        self.cases = build_cases(dataset, size)
        ours(self.cases[0], "normal")  # JIT compile / cache load outside the timing

    def time_ours_normal(self, dataset, size):
        for case in self.cases:
            ours(case, "normal")

    def time_ours_mixed(self, dataset, size):
        for case in self.cases:
            ours(case, "mixed")

    def time_ours_step_normal(self, dataset, size):
        for case in self.cases:
            ours_step(case, "normal")

    def time_ours_step_mixed(self, dataset, size):
        for case in self.cases:
            ours_step(case, "mixed")

    def time_cv2_normal(self, dataset, size):
        for case in self.cases:
            opencv(case, cv2.NORMAL_CLONE)

    def time_cv2_mixed(self, dataset, size):
        for case in self.cases:
            opencv(case, cv2.MIXED_CLONE)


VARIANTS = {
    "solver normal": lambda c: ours(c, "normal"),
    "solver mixed": lambda c: ours(c, "mixed"),
    "step normal": lambda c: ours_step(c, "normal"),
    "step mixed": lambda c: ours_step(c, "mixed"),
    "cv2 NORMAL": lambda c: opencv(c, cv2.NORMAL_CLONE),
    "cv2 MIXED": lambda c: opencv(c, cv2.MIXED_CLONE),
}


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------
def _ms_per_call(fn, cases, repeat):
    """Mean over cases of the median over ``repeat`` runs (after one warm-up run), in ms."""
    per_case = []
    for case in cases:
        fn(case)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(case)
            runs.append(time.perf_counter() - t0)
        per_case.append(np.median(runs))
    return 1e3 * float(np.mean(per_case))


_FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {repo!r})
from cai.engine.poisson import poisson_blend
t1 = time.perf_counter()
rng = np.random.default_rng(0)
t = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
s = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
r = np.zeros((40, 40), bool); r[5:35, 8:30] = True
t2 = time.perf_counter(); poisson_blend(t, s, r, "normal"); t3 = time.perf_counter()
poisson_blend(t, s, r, "mixed"); t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first": t3 - t2, "second": t4 - t3}}))
"""


def first_call_times():
    """Import and first-call times in fresh processes: with an empty numba cache (the JIT
    compiles everything) and with a filled one (the compiled code is loaded from disk)."""
    code = _FIRST_CALL.format(repo=str(REPO))
    out = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        for label in ("cold (empty cache)", "warm (cache filled)"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True)
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main(repeat=7):
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    if not CRACK_MASKS.is_dir() or not FABRIC_MASKS.is_dir():
        sys.exit(f"real data not found under {DATA}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, opencv {cv2.__version__}, "
          f"1 core (affinity {sorted(os.sched_getaffinity(0))}), cv2 threads "
          f"{cv2.getNumThreads()}, load average at start {os.getloadavg()[0]:.2f}")
    print("\nFirst call in a fresh process (40x40x3 uint8, normal then mixed), seconds:")
    for label, t in first_call_times().items():
        print(f"  {label:22s} import {t['import']:6.2f}  first call {t['first']:6.2f}  "
              f"second call {t['second']:7.4f}")

    suite = PoissonBlendSuite()
    results = {}
    names = list(VARIANTS)
    print(f"\nms per call: mean over {N_MASKS} masks of the median of {repeat} runs; "
          "n = unknowns (pixels of the region);\nCG it = mean CG iterations (normal and mixed)")
    header = (f"{'dataset':8s} {'size':6s} {'long':>4s} {'n mean':>7s} {'n max':>6s} "
              f"{'CG it':>5s} " + " ".join(f"{n:>13s}" for n in names) + f" {'cv2/solver':>10s}")
    print(header)
    for dataset in suite.params[0]:
        for size in suite.params[1]:
            suite.setup(dataset, size)
            row = {n: _ms_per_call(fn, suite.cases, repeat) for n, fn in VARIANTS.items()}
            results[dataset, size] = row
            un = [c.unknowns for c in suite.cases]
            its = [_blend(c.t_crop, c.s_crop, c.r_crop, mixed)[1]
                   for c in suite.cases for mixed in (False, True)]
            speed = ((row["cv2 NORMAL"] + row["cv2 MIXED"])
                     / (row["solver normal"] + row["solver mixed"]))
            print(f"{dataset:8s} {size:6s} {SIZES[size]:4d} {np.mean(un):7.0f} {max(un):6d} "
                  f"{np.mean(its):5.2f} " + " ".join(f"{row[n]:13.3f}" for n in names)
                  + f" {speed:9.1f}x")
    print("\nMix per normal image: 4 large + 3 medium + 3 small patterns, crack and fabric "
          "weighted equally; mean ms per pattern:")
    mix = {}
    for n in names:
        mix[n] = sum(MIX[s] * np.mean([results[d, s][n] for d in suite.params[0]])
                     for s in SIZES) / sum(MIX.values())
    print("  " + "  ".join(f"{n}: {mix[n]:.3f}" for n in names))
    for mode, cv in (("normal", "cv2 NORMAL"), ("mixed", "cv2 MIXED")):
        print(f"  {mode}: cv2 / solver = {mix[cv] / mix['solver ' + mode]:.1f}x, "
              f"cv2 / step = {mix[cv] / mix['step ' + mode]:.1f}x")
    print(f"load average at end {os.getloadavg()[0]:.2f} (other processes share the 2 cores)")
    return results


if __name__ == "__main__":
    main()
