"""cai.torch: the on-the-fly generator (anomalib's Perlin-generator contract) and the epoch-seeded
dataset, whose bytes must not depend on the DataLoader's worker count."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cai.imageio import load_rgb  # noqa: E402
from cai.targets import DEFAULT_SAMPLE  # noqa: E402
from cai.torch import CAIAnomalyGenerator, CAIDataset, prepare_pattern_folder, sample_rng  # noqa: E402

SIZE = 96
NORMALS = DEFAULT_SAMPLE / "normals" / "images"


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    """The embedded sample's 18 real defects, prepared once into a save_to_disk folder."""
    return prepare_pattern_folder(str(DEFAULT_SAMPLE / "anomalies"), cache_dir=tmp_path_factory.mktemp("patterns"))


@pytest.fixture(scope="module")
def normal():
    import cv2
    image, _ = load_rgb(str(sorted(NORMALS.iterdir())[0]))
    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _collect(ds, workers: int, context=None) -> dict:
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers,
                                         multiprocessing_context=context if workers else None)
    out = {}
    for batch in loader:
        for j, i in enumerate(batch["index"].tolist()):
            out[i] = (batch["image"][j].numpy().tobytes(), batch["mask"][j].numpy().tobytes(), int(batch["label"][j]))
    return out


def test_prepared_folder_is_reused(patterns, tmp_path):
    assert prepare_pattern_folder(patterns) == patterns  # a pattern folder is used as it is
    again = prepare_pattern_folder(str(DEFAULT_SAMPLE / "anomalies"), cache_dir=tmp_path)
    assert prepare_pattern_folder(str(DEFAULT_SAMPLE / "anomalies"), cache_dir=tmp_path) == again


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_same_seed_epoch_index_same_bytes_for_any_worker_count(patterns, workers):
    ds = CAIDataset(str(NORMALS), patterns, p=0.8, seed=3, size=SIZE)
    ds.set_epoch(2)
    reference = {i: (ds[i]["image"].numpy().tobytes(), ds[i]["mask"].numpy().tobytes(), int(ds[i]["label"]))
                 for i in range(len(ds))}
    ds2 = CAIDataset(str(NORMALS), patterns, p=0.8, seed=3, size=SIZE)
    ds2.set_epoch(2)
    got = _collect(ds2, workers)
    assert got == reference
    assert sum(label for _, _, label in got.values()) >= 1  # something was injected


def test_spawned_workers_reopen_the_patterns_and_agree(patterns):
    """spawn pickles the dataset: the workers get the pattern folder's path and memory-map it."""
    ds = CAIDataset(str(NORMALS), patterns, p=1.0, seed=4, size=SIZE)
    reference = _collect(ds, 0)
    assert _collect(ds, 2, context="spawn") == reference


def test_epochs_differ_and_seeds_differ(patterns):
    ds = CAIDataset(str(NORMALS), patterns, p=1.0, seed=0, size=SIZE)
    first = [ds[i]["image"] for i in range(len(ds))]
    ds.set_epoch(1)
    second = [ds[i]["image"] for i in range(len(ds))]
    assert all(not torch.equal(a, b) for a, b in zip(first, second))
    other = CAIDataset(str(NORMALS), patterns, p=1.0, seed=1, size=SIZE)
    assert not torch.equal(other[0]["image"], first[0])


def test_item_shapes_dtypes_and_label(patterns):
    item = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE)[0]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert item["mask"].shape == (1, SIZE, SIZE) and item["mask"].dtype == torch.float32
    assert set(torch.unique(item["mask"]).tolist()) <= {0.0, 1.0}
    assert int(item["label"]) == int(item["mask"].any())
    assert item["anomaly_class"] in ("crack", "stain") and item["epoch"] == 0 and item["index"] == 0


def test_normals_as_list_of_arrays_and_hf_dataset(patterns, normal):
    import datasets
    from PIL import Image

    arrays = CAIDataset([normal, normal], patterns, p=1.0, seed=5)
    hf = CAIDataset(datasets.Dataset.from_dict({"image": [Image.fromarray(normal)] * 2}), patterns, p=1.0, seed=5)
    assert len(arrays) == len(hf) == 2
    for i in range(2):  # same pixels, same (seed, epoch, index): same bytes whatever the container
        assert torch.equal(arrays[i]["image"], hf[i]["image"])
        assert torch.equal(arrays[i]["mask"], hf[i]["mask"])


def test_tensor_and_numpy_inputs_agree(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=1.0, seed=7)
    before = normal.copy()
    out_np, mask_np = gen(normal, index=4)
    assert out_np.dtype == np.uint8 and out_np.shape == normal.shape
    assert mask_np.dtype == bool and mask_np.shape == normal.shape[:2] and mask_np.any()
    tensor = torch.from_numpy(normal.transpose(2, 0, 1).copy()).float() / 255
    out_t, mask_t = gen(tensor, index=4)
    assert out_t.shape == tensor.shape and out_t.dtype == torch.float32
    assert mask_t.shape == (1, SIZE, SIZE) and mask_t.dtype == torch.float32
    assert np.array_equal(np.rint(out_t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8), out_np)
    assert np.array_equal(mask_t[0].numpy().astype(bool), mask_np)
    assert not np.array_equal(out_np, normal)  # the output changed, ...
    assert np.array_equal(normal, before)  # ... never the input in place


def test_unchanged_pixels_keep_the_exact_input(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=1.0, seed=0)
    rng = np.random.default_rng(0)
    tensor = torch.from_numpy(rng.uniform(0.2, 0.8, (3, SIZE, SIZE)))  # not multiples of 1/255, float64
    out, mask = gen(tensor, index=0)
    assert out.dtype == torch.float64
    same = (out == tensor).all(dim=0)
    assert mask.any() and bool(same.sum() > 0.5 * SIZE * SIZE)
    assert bool(same[~mask[0].bool()].float().mean() > 0.9)


def test_batch_equals_single_calls(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=0.7, seed=1)
    one = torch.from_numpy(normal.transpose(2, 0, 1).copy()).float() / 255
    batch = torch.stack([one, one.flip(-1), one.flip(-2)])
    out, masks = gen(batch, index=[10, 11, 12], epoch=3)
    assert out.shape == batch.shape and masks.shape == (3, 1, SIZE, SIZE)
    for b in range(3):
        single, mask = gen(batch[b], index=10 + b, epoch=3)
        assert torch.equal(out[b], single) and torch.equal(masks[b], mask)
    gen.set_epoch(3)
    again, _ = gen(batch, index=10)  # an int index means 10, 11, 12; epoch from set_epoch
    assert torch.equal(again, out)


def test_default_stream_repeats_per_seed_and_moves_on(patterns, normal):
    a, b = CAIAnomalyGenerator(patterns, p=1.0, seed=2), CAIAnomalyGenerator(patterns, p=1.0, seed=2)
    first_a, first_b = a(normal)[0], b(normal)[0]
    assert np.array_equal(first_a, first_b)
    assert not np.array_equal(a(normal)[0], first_a)


def test_p0_returns_inputs_unchanged(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=0.0)
    tensor = torch.rand(2, 3, 32, 40)
    out, masks = gen(tensor)
    assert torch.equal(out, tensor) and out is not tensor and masks.shape == (2, 1, 32, 40) and not masks.any()
    out_np, mask_np = gen(normal, index=0)
    assert np.array_equal(out_np, normal) and not mask_np.any()


def test_p1_always_injects(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=1.0)
    assert all(gen(normal, index=i)[1].any() for i in range(8))


@pytest.mark.parametrize("image, match", [
    (torch.zeros(3, 32, 32, dtype=torch.uint8), "floating point"),
    (torch.full((3, 32, 32), 1.5), r"\[0, 1\]"),
    (torch.full((3, 32, 32), -0.1), r"\[0, 1\]"),
    (torch.full((3, 32, 32), float("nan")), "NaN"),
    (torch.rand(4, 32, 32), "1 or 3 channels"),
    (torch.rand(2, 2, 32, 32), "1 or 3 channels"),
    (torch.rand(32, 32), r"\[C, H, W\]"),
    (np.zeros((32, 32, 3), np.float32), "uint8"),
    (np.zeros((3, 32, 32), np.uint8), "channels last"),
    ([[0.5]], "torch tensor or a numpy array"),
])
def test_bad_input_is_a_clear_value_error(patterns, image, match):
    with pytest.raises(ValueError, match=match):
        CAIAnomalyGenerator(patterns, p=1.0)(image)


def test_bad_arguments(patterns):
    with pytest.raises(ValueError, match="p must be in"):
        CAIAnomalyGenerator(patterns, p=1.5)
    with pytest.raises(ValueError, match="unknown synthesizer"):
        CAIAnomalyGenerator(patterns, synthesizer="perlin-magic")
    with pytest.raises(ValueError, match="needs an anomaly set"):
        CAIAnomalyGenerator(None, synthesizer="cai")
    for name in ("nsa-n", "cai+nsan25"):  # told at once, not at the first image
        with pytest.raises(ValueError, match="other normal images"):
            CAIAnomalyGenerator(patterns, synthesizer=name)
    with pytest.raises(ValueError, match="unknown modifier"):
        CAIAnomalyGenerator(patterns, synthesizer="cai+nosuch")
    gen = CAIAnomalyGenerator(patterns, p=1.0)
    with pytest.raises(ValueError, match="foreground shape"):
        gen(torch.rand(3, 32, 32), foreground=torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="index has 1 entries for 2 images"):
        gen(torch.rand(2, 3, 32, 32), index=[0])


@pytest.mark.parametrize("synthesizer", ["cai", "draem", "cutpaste"])
def test_foreground_is_respected(patterns, normal, synthesizer):
    gen = CAIAnomalyGenerator(patterns if synthesizer == "cai" else None, p=1.0, synthesizer=synthesizer)
    fg = np.zeros(normal.shape[:2], bool)
    fg[:, : SIZE // 2] = True
    masks = [gen(normal, foreground=fg, index=i)[1] for i in range(6)]
    assert any(m.any() for m in masks)
    assert not any(m[:, SIZE // 2:].any() for m in masks)
    batch = torch.from_numpy(np.stack([normal] * 2).transpose(0, 3, 1, 2).copy()).float() / 255
    _, bmasks = gen(batch, foreground=torch.from_numpy(np.stack([fg, fg])[:, None]), index=0)
    assert bmasks.any() and not bmasks[..., SIZE // 2:].any()


@pytest.mark.parametrize("synthesizer", ["draem", "cutpaste", "glass-las", "cai-n"])
def test_other_synthesizer_by_name(patterns, synthesizer):
    ds = CAIDataset(str(NORMALS), patterns if synthesizer.startswith("cai") else None, p=1.0, seed=0, size=SIZE,
                    synthesizer=synthesizer)
    items = [ds[i] for i in range(3)]
    assert all(item["synthesizer"] == synthesizer for item in items)
    assert sum(int(item["label"]) for item in items) >= 2
    assert torch.equal(ds[1]["image"], items[1]["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], items[1]["image"])


def test_nsa_draws_from_the_dataset_normals():
    ds = CAIDataset(str(NORMALS), None, p=1.0, size=SIZE, synthesizer="nsa-n")
    assert any(int(ds[i]["label"]) for i in range(3))


def test_nsa_mixture_on_the_fly_draws_both_kinds(patterns):
    ds = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE, synthesizer="cai+nsan50")
    items = []
    for epoch in range(4):  # 6 normals x 4 epochs
        ds.set_epoch(epoch)
        items += [ds[i] for i in range(len(ds))]
    slots = ds.generator._engine._slots  # built on first use
    assert sum(p for p, _ in slots) == pytest.approx(1.0) and slots[-1][0] == pytest.approx(0.5)
    assert slots[-1][1].name == "nsa-n" and slots[-1][1].per_image == 1
    classes = {item["anomaly_class"] for item in items if int(item["label"])}
    assert "nsa-n" in classes and classes - {"nsa-n"}  # both the NSA slots and CAI's real defects
    assert torch.equal(ds[3]["image"], items[3 + 18]["image"])  # epoch 3 again: the same bytes


@pytest.mark.parametrize("name,gated", [("cai+nsanv50", "nsa-n+visible"), ("cai+nsanu50", "nsa-n+novel")])
def test_gated_nsa_mixture_on_the_fly(patterns, name, gated):
    ds = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE, synthesizer=name)
    items = [ds[i] for i in range(len(ds))]
    slots = ds.generator._engine._slots
    assert slots[-1][1].name == gated and slots[-1][1].per_image == 1
    assert all(int(item["label"]) for item in items)  # a slot with no patch passing the gate is drawn again
    assert torch.equal(ds[2]["image"], items[2]["image"])


@pytest.mark.parametrize("reason", ["not_visible", "not_novel"])
def test_a_gated_slot_that_finds_nothing_gives_the_image_one_of_cais(patterns, reason):
    """The NSA slot of "cai+nsanv99" replaced by one that never passes its gate: every image still gets a
    pseudo anomaly, from CAI, at the first retry (3 attempts would leave ~0.99 ** 3 of them empty)."""
    from cai.engine.synthesizer import Skipped

    class NeverPasses:
        name, per_image = "gate", 1

        def synthesize(self, normal, foreground, normal_index, seed, is_grey=False):
            return [Skipped(0, reason)]

    ds = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE, synthesizer="cai+nsanv99")
    ds[0]
    slots = ds.generator._engine._slots
    slots[-1] = (slots[-1][0], NeverPasses())
    items = [ds[i] for i in range(len(ds))]
    assert all(int(item["label"]) for item in items) and all(item["anomaly_class"] != "nsa-n" for item in items)


def test_grey_tensor_stays_one_channel(patterns, normal):
    grey = torch.from_numpy(normal[..., 0].copy()).float()[None] / 255
    out, mask = CAIAnomalyGenerator(patterns, p=1.0)(grey, index=0)
    assert out.shape == (1, SIZE, SIZE) and mask.any()
    ds = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE, grey=True)
    assert ds[0]["image"].shape == (1, SIZE, SIZE)


def test_pickled_generator_carries_the_path_not_the_patterns(patterns, normal):
    gen = CAIAnomalyGenerator(patterns, p=1.0)
    expected = gen(normal, index=3)
    payload = pickle.dumps(gen)
    assert len(payload) < 20_000  # the path and settings, not 18 decoded crops
    clone = pickle.loads(payload)
    assert clone._engine._bank is None  # opened lazily (memory-mapped) on first use
    got = clone(normal, index=3)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_sample_rng_checks_its_arguments():
    assert sample_rng(1, 2, 3).integers(1 << 30) == np.random.default_rng([1, 2, 3]).integers(1 << 30)
    with pytest.raises(ValueError, match="epoch"):
        sample_rng(0, -1, 0)


def test_import_without_torch_names_the_extra():
    code = "import sys; sys.modules['torch'] = None; import cai.torch"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "pip install 'cai-hub[torch]'" in last


def test_warm_up_decodes_every_pattern(patterns):
    assert CAIAnomalyGenerator(patterns).warm_up() == 18
    assert CAIAnomalyGenerator(None, synthesizer="cutpaste").warm_up() == 0


def test_recipe_trains_two_steps(tmp_path):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "recipes" / "train_on_the_fly" / "train.py"
    spec = importlib.util.spec_from_file_location("train_on_the_fly", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--output_dir", str(tmp_path / "run"), "--resolution", "64", "--epochs", "2",
                 "--train_batch_size", "2", "--dataloader_num_workers", "0", "--max_train_steps", "2", "--p", "1"])
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    assert state["model"] == "lite0-head" and state["state_dict"]
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 1 and '"samples": 4, "pseudo_anomalies": 4' in log[0]  # p=1: every sample


def test_scales_follow_the_quota(patterns, normal):
    from cai import CAIConfig
    small = CAIAnomalyGenerator(patterns, CAIConfig(quota=(0, 0, 1)), p=1.0)
    for i in range(5):
        small(normal, index=i)
        assert small.last_info[0]["scale"] == "small"
    mixed = CAIAnomalyGenerator(patterns, p=1.0)  # 4/3/3
    scales = set()
    for i in range(40):
        mixed(normal, index=i)
        scales.add(mixed.last_info[0]["scale"])
    assert scales == {"large", "medium", "small"}


def test_dataset_foreground_masks_callable_and_kind(patterns):
    left = np.zeros((SIZE, SIZE), bool)
    left[:, : SIZE // 2] = True
    n = len(CAIDataset(str(NORMALS), patterns, size=SIZE))
    for foreground in ([left] * n, lambda image: left, "all"):
        ds = CAIDataset(str(NORMALS), patterns, p=1.0, size=SIZE, foreground=foreground)
        masks = [ds[i]["mask"][0] for i in range(n)]
        assert any(bool(m.any()) for m in masks)
        if foreground != "all":
            assert not any(bool(m[:, SIZE // 2:].any()) for m in masks)
    with pytest.raises(ValueError, match="masks for"):
        CAIDataset(str(NORMALS), patterns, foreground=[left])


def test_patterns_are_shared_read_only_views_with_the_arrow_bytes(patterns, normal):
    from cai.anomaly_set import open_pattern_bank
    mapped = CAIAnomalyGenerator(patterns, p=1.0, seed=6)
    mapped.warm_up()
    image, mask = mapped._engine._bank.load(3)
    assert not image.flags.writeable and not mask.flags.writeable  # views of the mapped file, no copies
    decoded = CAIAnomalyGenerator(open_pattern_bank(patterns), p=1.0, seed=6)  # a bank given in-process
    ref_image, ref_mask = decoded._engine._bank.load(3)
    assert np.array_equal(image, ref_image) and np.array_equal(mask, ref_mask)
    for i in range(6):  # same pixels, same refined masks: the same pseudo anomalies
        a, b = mapped(normal, index=i), decoded(normal, index=i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
