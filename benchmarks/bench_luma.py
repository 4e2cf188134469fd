"""Luma without BLAS: what the CPU-independent ``cai.engine.pseudo_mask.grey`` costs, side by side in one
run with the BLAS product it replaced (``image @ w``, whose last bit depends on the CPU's kernel).

Times ``grey()`` on a 256 x 256 RGB image and ``pseudo_mask(rule="luma")`` (the paper's luma rule; the
default rule is per-channel and computes no luma) on a 30 x 90 px defect in it, each with the BLAS luma
and with the elementwise one. (The code before also took the BLAS luma of the whole image and cut the
window out of it; the luma is now taken on the window only.)

    python benchmarks/bench_luma.py [--repeats 300] [--rounds 3]

Figures only; nothing is asserted (tests/engine/test_pseudo_mask_inject.py checks the values).
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from cai.engine import pseudo_mask as pm  # noqa: E402

WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def blas_grey(image):
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    return image[..., 0] if image.shape[2] == 1 else image @ WEIGHTS


def per_call_ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    placed = np.zeros((256, 256), bool)
    placed[100:130, 80:170] = True
    injected = normal.copy()
    injected[placed] //= 2
    elementwise = pm.grey
    try:
        for r in range(args.rounds):
            row = {}
            for name, grey in (("BLAS", blas_grey), ("elementwise", elementwise)):
                pm.grey = grey
                row[name] = (per_call_ms(lambda: grey(normal), args.repeats),
                             per_call_ms(lambda: pm.pseudo_mask(normal, injected, placed, rule="luma"), args.repeats))
            print(f"round {r}: grey() 256x256 RGB: BLAS {row['BLAS'][0]:.3f} ms, elementwise "
                  f"{row['elementwise'][0]:.3f} ms | pseudo_mask(rule='luma'): BLAS "
                  f"{row['BLAS'][1]:.3f} ms, elementwise {row['elementwise'][1]:.3f} ms", flush=True)
    finally:
        pm.grey = elementwise


if __name__ == "__main__":
    main()
