"""Backbone features computed once and reused (normals, test set) give the same numbers as computing
them every time: per image, per trained detector, and for a whole tiny evaluation."""
import numpy as np
import pytest
import torch

from cai.eval import detector as det
from cai.eval.detector import FeatureCache, get_profile, train_detector

from test_evaluate import _run, tiny  # noqa: F401  (fixture; tests/eval is on sys.path under pytest)


def test_cached_features_equal_computed_and_are_reused():
    from cai.eval.lite0 import load_lite0

    backbone = load_lite0().eval()
    x = np.random.default_rng(1).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    plain = det._cached_features(backbone, x, (4, 8, 16), "cpu")
    cache = FeatureCache()
    reuse = np.arange(40) < 34  # the first batch (0-31) is all reusable, the second (32-39) is not
    first = det._cached_features(backbone, x, (4, 8, 16), "cpu", cache=cache, reuse=reuse)
    assert len(cache) == 1 and cache.hits == 0
    second = det._cached_features(backbone, x, (4, 8, 16), "cpu", cache=cache, reuse=reuse)
    assert cache.hits == 1 and len(cache) == 1
    for a, b, c in zip(plain, first, second):
        assert a.dtype == torch.float32 and a.shape[0] == 40 and torch.equal(a, b) and torch.equal(a, c)


def test_detector_with_cache_same_maps():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(40)]
    masks = [np.zeros((64, 64), bool) for _ in range(32)] + [rng.random((64, 64)) > 0.9 for _ in range(8)]
    config = get_profile("cpu", epochs=2, size=64, batch_size=4)
    cache = FeatureCache()
    a = train_detector(images, masks, config, seed=0, progress=False)
    b = train_detector(images, masks, config, seed=0, progress=False, feature_cache=cache, reuse=32)
    c = train_detector(images, masks, config, seed=0, progress=False, feature_cache=cache, reuse=32)
    assert cache.hits == 1  # the batch of the 32 normals
    test = images[:11]
    ma = a.predict(test)
    hits = cache.hits
    for d in (b, c):
        mb = d.predict(test, feature_cache=cache)
        assert all(np.array_equal(p, q) for p, q in zip(ma, mb))
    assert cache.hits == hits + 2  # batches of 8 and 3, computed once
    assert [h["loss"] for h in a.history] == [h["loss"] for h in c.history]


def test_tiny_evaluation_metrics_identical_with_and_without_cache(tiny, tmp_path, monkeypatch):  # noqa: F811
    import cai.eval.evaluate as ev

    cached = _run(tiny, tmp_path / "cached", synths=("cai-n", "cutpaste"), seeds=(0, 1))
    monkeypatch.setattr(ev, "FeatureCache", lambda: None)  # the code path before the cache existed
    plain = _run(tiny, tmp_path / "plain", synths=("cai-n", "cutpaste"), seeds=(0, 1))
    for name in ("cai-n", "cutpaste"):
        for ra, rb in zip(cached["synthesizers"][name]["runs"], plain["synthesizers"][name]["runs"]):
            for k in ("pixel_auroc", "pixel_ap", "pro", "image_auroc", "per_class_ap", "made", "final_loss"):
                assert ra[k] == rb[k], (name, k)
        assert cached["synthesizers"][name]["fd"] == plain["synthesizers"][name]["fd"]
    assert cached["bootstrap"] == plain["bootstrap"]


def test_threads_default_to_the_usable_cores(monkeypatch):
    import os

    from cai.eval.detector import default_threads
    from cai.eval.evaluate import EvalOptions

    assert EvalOptions(target="folder", root=".", out="x").threads is None  # resolved when the run starts
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert default_threads() == 7
