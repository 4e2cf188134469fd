"""The build path's speed work keeps its outputs: cached patterns equal fresh ones, a second run does not
prepare them again, any PNG level decodes to the same pixels."""
from __future__ import annotations

import hashlib

import datasets
import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sample_set():
    from cai.anomaly_set import load_anomaly_set
    from cai.targets import DEFAULT_SAMPLE
    return load_anomaly_set(str(DEFAULT_SAMPLE / "anomalies"))


def test_cached_patterns_prepared_once_and_equal_to_fresh(cache, monkeypatch):
    import cai.anomaly_set as aset

    ds = _sample_set()
    calls = []
    real = aset.prepare_patterns
    monkeypatch.setattr(aset, "prepare_patterns", lambda *a, **k: calls.append(1) or real(*a, **k))
    path1, p1, report1 = aset.cached_patterns(ds, exclude_sources=["nothing"])
    path2, p2, report2 = aset.cached_patterns(_sample_set(), exclude_sources=["nothing"])  # loaded again
    assert len(calls) == 1 and path1 == path2 and report1 == report2
    assert str(cache) in path1
    fresh, fresh_report = real(ds, exclude_sources=["nothing"])
    assert fresh_report == report1 and len(fresh) == len(p2)
    for i in range(len(fresh)):
        a, b = fresh[i], p2[i]
        for col in ("pattern_image", "pattern_mask"):
            assert np.array_equal(np.asarray(a[col]), np.asarray(b[col]))
        assert {k: a[k] for k in ("long_side", "anomaly_class", "source", "source_id")} == \
               {k: b[k] for k in ("long_side", "anomaly_class", "source", "source_id")}
    # other filters -> another entry
    aset.cached_patterns(ds, classes={"crack"})
    assert len(calls) == 2


def test_patterns_key_follows_content(cache):
    from cai.anomaly_set import patterns_key

    ds = _sample_set().cast_column("mask", datasets.Image(decode=False))
    key = patterns_key(ds)
    assert key == patterns_key(_sample_set())  # decoded or not, same content
    masks = list(ds["mask"])
    value = masks[0]
    data = value["bytes"] if value["bytes"] is not None else open(value["path"], "rb").read()
    masks[0] = {"bytes": data + b"\0", "path": None}  # one byte more in one mask
    changed = ds.remove_columns("mask").add_column("mask", masks).cast_column("mask", datasets.Image(decode=False))
    assert patterns_key(changed) != key
    assert patterns_key(ds, exclude_sources=["x"]) != key and patterns_key(ds, context=0.2) != key


def _rows(folder):
    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    for column in ("image", "mask", "placed_mask"):
        ds = ds.cast_column(column, datasets.Image(decode=False))
    return list(ds)


@pytest.mark.parametrize("other", [{"png_level": 1}, {"png_level": 1, "png_filters": "libpng"},
                                   {"png_level": 6, "png_filters": "fast"}])
def test_png_settings_change_bytes_not_pixels(tmp_path, cache, other):
    import cv2

    from cai.build import BuildOptions, build_synthetic

    build_synthetic(BuildOptions(out=str(tmp_path / "l6"), seed=3, png_level=6, png_filters="libpng"), progress=False)
    build_synthetic(BuildOptions(out=str(tmp_path / "l1"), seed=3, **other), progress=False)
    a, b = _rows(tmp_path / "l6"), _rows(tmp_path / "l1")
    assert len(a) == len(b) > 0
    differ = 0
    for ra, rb in zip(a, b):
        for column in ("image", "mask", "placed_mask"):
            pa = cv2.imdecode(np.frombuffer(ra[column]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
            pb = cv2.imdecode(np.frombuffer(rb[column]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert pa.dtype == pb.dtype and np.array_equal(pa, pb)
            differ += ra[column]["bytes"] != rb[column]["bytes"]
        others = [c for c in ra if c not in ("image", "mask", "placed_mask")]
        assert {c: ra[c] for c in others} == {c: rb[c] for c in others}
    assert differ > 0  # the settings did reach the encoder


def test_png_level_and_filters_checked(tmp_path):
    from cai.build import BuildError, BuildOptions, build_synthetic
    from cai.imageio import encode_png

    with pytest.raises(ValueError, match="0-9"):
        encode_png(np.zeros((4, 4), np.uint8), level=10)
    with pytest.raises(ValueError, match="filters"):
        encode_png(np.zeros((4, 4), np.uint8), filters="zopfli")
    with pytest.raises(BuildError, match="png-filters"):
        build_synthetic(BuildOptions(out=str(tmp_path / "x"), png_filters="zopfli"), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["rgb", "grey", "bool"])
def test_fast_png_filters_decode_to_the_same_pixels(kind):
    import cv2

    from cai.imageio import encode_png

    rng = np.random.default_rng(0)
    a = {"rgb": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
         "grey": rng.integers(0, 256, (37, 53), dtype=np.uint8), "bool": rng.random((37, 53)) > 0.7}[kind]
    fast, slow = encode_png(a, 1, "fast")["bytes"], encode_png(a, 1, "libpng")["bytes"]
    assert fast != slow
    expected = a.astype(np.uint8) * 255 if a.dtype == bool else a
    for data in (fast, slow):
        out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if out.ndim == 3 else out
        assert np.array_equal(out, expected)


def test_second_run_reuses_patterns_and_gives_same_bytes(tmp_path, cache, monkeypatch):
    import cai.anomaly_set as aset
    from cai.build import BuildOptions, build_synthetic

    build_synthetic(BuildOptions(out=str(tmp_path / "a"), seed=1), progress=False)
    monkeypatch.setattr(aset, "prepare_patterns", lambda *a, **k: pytest.fail("patterns prepared again"))
    build_synthetic(BuildOptions(out=str(tmp_path / "b"), seed=1, num_proc=2), progress=False)
    digest = lambda rows: hashlib.sha256(repr(rows).encode()).hexdigest()  # noqa: E731
    assert digest(_rows(tmp_path / "a")) == digest(_rows(tmp_path / "b"))


def test_stored_refined_masks_equal_fresh_refinement(cache):
    from cai.anomaly_set import cached_patterns, ensure_refined_masks, open_pattern_bank, pattern_bank
    from cai.engine.refine import refine_defect_mask

    path, patterns, _ = cached_patterns(_sample_set())
    ensure_refined_masks(path)
    bank, fresh = open_pattern_bank(path), pattern_bank(patterns)
    assert bank.refined is not None and fresh.refined is None
    for i in range(len(fresh.long_sides)):
        stored = bank.refined(i)
        assert stored.dtype == bool and np.array_equal(stored, refine_defect_mask(*fresh.load(i)))


def test_synthesizer_takes_stored_refined_mask():
    from cai.engine.config import CAIConfig
    from cai.engine.synthesizer import CAISynthesizer, PatternBank

    image = np.full((40, 40, 3), 100, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    marker = np.zeros((40, 40), bool)
    marker[0, 0] = True
    bank = PatternBank(long_sides=[20], anomaly_class=["crack"], source=["s"], ids=["0"],
                       load=lambda i: (image, mask), refined=lambda i: marker)
    assert CAISynthesizer(bank, CAIConfig(refine_mask=True))._pattern(0)[1] is marker
    bank.refined = lambda i: None  # nothing stored: refined here (a flat image keeps the whole mask)
    assert np.array_equal(CAISynthesizer(bank, CAIConfig(refine_mask=True))._pattern(0)[1], mask)


def test_refined_file_follows_the_refinement_code(cache, monkeypatch):
    import cai.anomaly_set as aset
    from cai.engine import refine

    name = aset.refined_file_name()
    assert name.startswith("refined-") and name.endswith(".npz")
    aset.refined_file_name.cache_clear()
    monkeypatch.setattr(refine, "__file__", aset.__file__)  # "other refinement code"
    try:
        assert aset.refined_file_name() != name
    finally:
        aset.refined_file_name.cache_clear()


def test_channel_max_equals_reduction():
    from cai.engine.pseudo_mask import channel_max

    rng = np.random.default_rng(0)
    for a in (rng.normal(0, 50, (17, 23, 3)).astype(np.float32), rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
              np.abs(rng.normal(0, 1, (4, 4, 2)))):
        out = channel_max(a)
        assert out.dtype == a.dtype and np.array_equal(out, a.max(axis=2))
