"""The one pattern store (cai.anomaly_set): prepared crops, refined masks, and their decoded,
memory-mapped form that open_pattern_bank (build, evaluation, cai.torch workers) reads."""
from __future__ import annotations

import multiprocessing
import os
import shutil

import datasets
import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def sample(cache):
    """The embedded sample's patterns folder (18 crops), its refined masks stored."""
    from cai.anomaly_set import cached_patterns, ensure_refined_masks, load_anomaly_set
    from cai.targets import DEFAULT_SAMPLE

    path, _, _ = cached_patterns(load_anomaly_set(str(DEFAULT_SAMPLE / "anomalies")))
    ensure_refined_masks(path)
    return path


def _pil(path):
    """Pattern i as PIL decodes the stored PNGs (what open_pattern_bank gave before the mapped store)."""
    ds = datasets.load_from_disk(path)
    return [(np.asarray(r["pattern_image"].convert("RGB")), np.asarray(r["pattern_mask"].convert("L")) > 127)
            for r in ds]


def test_decoded_file_equals_pil_decode_for_every_pattern(sample):
    from cai.anomaly_set import MappedPatterns, decoded_patterns, ensure_refined_masks, open_pattern_bank

    file = decoded_patterns(sample)
    assert file.parent == type(file)(sample) and file.name.startswith("decoded-")
    reference = _pil(sample)
    mapped, bank = MappedPatterns(file), open_pattern_bank(sample)
    assert len(mapped) == len(reference) == len(bank.long_sides) == 18
    with np.load(ensure_refined_masks(sample)) as npz:
        for i, (image, mask) in enumerate(reference):
            got_image, got_mask = bank.load(i)
            assert got_image.dtype == np.uint8 and got_mask.dtype == bool
            assert np.array_equal(got_image, image) and np.array_equal(got_mask, mask)
            refined = bank.refined(i)
            assert refined.dtype == bool and np.array_equal(refined, npz[str(i)])  # ensure_refined_masks' arrays


def test_views_are_read_only_and_writing_fails_loudly(sample):
    from cai.anomaly_set import decoded_patterns, mapped_refined, open_pattern_bank

    bank = open_pattern_bank(sample)
    before = decoded_patterns(sample).read_bytes(), mapped_refined(sample).read_bytes()
    image, mask = bank.load(0)
    for array in (image, mask, bank.refined(0)):
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 1
    assert (decoded_patterns(sample).read_bytes(), mapped_refined(sample).read_bytes()) == before


def test_changed_content_or_refinement_code_gets_new_files(sample, tmp_path, monkeypatch):
    import cai.anomaly_set as aset
    from cai.engine import refine

    # a patterns folder of one's own (cai.torch and evaluation accept any), later rewritten in place
    # (cached_patterns' folders are named by their content: theirs never changes)
    shutil.copytree(sample, tmp_path / "mine")
    sample = str(tmp_path / "mine")
    first, first_refined = aset.decoded_patterns(sample), aset.mapped_refined(sample)
    assert aset.decoded_patterns(sample) == first  # written once, then found
    # the folder rewritten in place with other content (here: its first 5 patterns)
    tmp = tmp_path / "other"
    datasets.load_from_disk(sample).select(range(5)).save_to_disk(str(tmp))
    for f in aset._data_files(sample):
        f.unlink()
    for f in tmp.iterdir():
        shutil.copy(f, os.path.join(sample, f.name))
    second = aset.decoded_patterns(sample)
    assert second != first and first.is_file()  # a new file, the old one never read for the new content
    assert len(aset.MappedPatterns(second)) == 5
    for (image, mask), (ref_image, ref_mask) in zip((aset.MappedPatterns(second).load(i) for i in range(5)),
                                                    _pil(sample)):
        assert np.array_equal(image, ref_image) and np.array_equal(mask, ref_mask)
    assert aset.mapped_refined(sample) is None and first_refined.is_file()  # the old content's masks: not these
    stored = aset.ensure_refined_masks(sample)  # computed for the new content
    assert aset.mapped_refined(sample) != first_refined
    with np.load(stored) as npz:
        assert sorted(npz.files, key=int) == [str(i) for i in range(5)]
        assert all(np.array_equal(aset.open_pattern_bank(sample).refined(i), npz[str(i)]) for i in range(5))
    # other refinement code: no mapped refined file until ensure_refined_masks stores that code's masks
    aset.refined_file_name.cache_clear()
    monkeypatch.setattr(refine, "__file__", aset.__file__)
    try:
        assert aset.mapped_refined(sample) is None
    finally:
        aset.refined_file_name.cache_clear()


def _write(path, queue):
    from cai.anomaly_set import decoded_patterns
    queue.put(str(decoded_patterns(path)))


def test_concurrent_writers_give_one_complete_file(sample):
    from cai.anomaly_set import decoded_patterns

    for f in os.listdir(sample):
        if f.endswith(".u8"):
            os.unlink(os.path.join(sample, f))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_write, args=(sample, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    names = {queue.get(timeout=5) for _ in procs}
    assert names == {str(decoded_patterns(sample))}
    assert not [f for f in os.listdir(sample) if f.startswith(".")]  # no temporary file left
    reference = _pil(sample)
    from cai.anomaly_set import MappedPatterns
    mapped = MappedPatterns(decoded_patterns(sample))
    assert all(np.array_equal(mapped.load(i)[0], reference[i][0]) for i in range(len(reference)))


@pytest.mark.parametrize("mode", ["paste", "normal"])
def test_mapped_bank_gives_the_same_pseudo_anomalies(sample, mode):
    from cai.anomaly_set import ensure_refined_masks, open_pattern_bank
    from cai.engine.config import CAIConfig
    from cai.engine.synthesizer import CAISynthesizer, PatternBank
    from cai.imageio import load_rgb
    from cai.targets import DEFAULT_SAMPLE

    ds = datasets.load_from_disk(sample)
    decoded = _pil(sample)
    with np.load(ensure_refined_masks(sample)) as npz:
        stored = {int(k): npz[k] for k in npz.files}
    reference = PatternBank(long_sides=np.asarray(ds["long_side"]), anomaly_class=list(ds["anomaly_class"]),
                            source=list(ds["source"]), ids=list(ds["source_id"]), load=lambda i: decoded[i],
                            refined=stored.get)  # the bank as open_pattern_bank built it before
    config = CAIConfig(mode=mode)
    normal = load_rgb(str(sorted((DEFAULT_SAMPLE / "normals" / "images").iterdir())[0]))[0][:128, :128]
    fg = np.ones(normal.shape[:2], bool)
    for seed in range(3):
        a = CAISynthesizer(open_pattern_bank(sample), config).synthesize(normal, fg, seed, seed)
        b = CAISynthesizer(reference, config).synthesize(normal, fg, seed, seed)
        assert len(a) == len(b) and any(hasattr(r, "image") for r in a)
        for x, y in zip(a, b):
            assert type(x) is type(y)
            if hasattr(x, "image"):
                assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
                assert x.source_id == y.source_id


def test_ray_ships_the_crops_not_the_decoded_files(sample):
    from cai.anomaly_set import decoded_patterns, mapped_refined
    from cai.ray_engine import pack_folder

    decoded_patterns(sample), mapped_refined(sample)
    files = pack_folder(sample)["files"]
    assert "state.json" in files and not [f for f in files if f.endswith(".u8") or f.startswith(".")]
