"""recipes/evaluate/in_domain_oracle.py: the two folds never share a defect image, and the pooled score
takes each anomalous image from the run whose patterns did not come from it."""
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest

from cai.eval.bootstrap import save_histograms, score_histograms
from cai.eval.collect import SynthRuns

@pytest.fixture(scope="module")
def oracle(evaluate_recipe):
    return evaluate_recipe("in_domain_oracle")


def _mvtec(root: Path) -> Path:
    rng = np.random.default_rng(0)
    base = root / "tile"
    for sub, n in (("train/good", 2), ("test/good", 1), ("test/crack", 3), ("test/glue", 2)):
        (base / sub).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(base / sub / f"{i:03d}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
            if sub.startswith("test/") and sub != "test/good":
                mask = np.zeros((32, 32), np.uint8)
                mask[4 + i:12 + i, 5:15] = 255
                (base / "ground_truth" / sub[5:]).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(base / "ground_truth" / sub[5:] / f"{i:03d}_mask.png"), mask)
    return root


def test_prepare_splits_each_defect_type_into_disjoint_folds(tmp_path, oracle):
    mvtec = _mvtec(tmp_path / "mvtec")
    out = tmp_path / "oracle"
    oracle.prepare(mvtec, "tile", out)
    for fold in (0, 1):
        evaluated = {p.relative_to(out / f"fold{fold}" / "tile" / "test").as_posix()
                     for p in (out / f"fold{fold}" / "tile" / "test").glob("*/*.png")}
        patterns = datasets.load_from_disk(str(out / f"aset_fold{fold}"))
        used = {f"{c}/{i.rsplit('/', 1)[-1]}.png" for c, i in zip(patterns["anomaly_class"], patterns["id"])}
        expected_patterns = {f"crack/{i:03d}.png" for i in range(3) if i % 2 == fold} | \
                            {f"glue/{i:03d}.png" for i in range(2) if i % 2 == fold}
        assert used == expected_patterns, (used, expected_patterns)
        assert not used & evaluated
        assert {e for e in evaluated if not e.startswith("good/")} == \
            {f"{c}/{i:03d}.png" for c, n in (("crack", 3), ("glue", 2)) for i in range(n) if i % 2 != fold}
        assert "good/000.png" in evaluated
        assert all(p.is_symlink() for p in (out / f"fold{fold}" / "tile" / "test").glob("crack/*.png"))
        assert set(patterns["source"]) == {"oracle_tile"}


def _ksdd(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for k in range(1, 4):
        folder = root / "data" / f"kos{k:02d}"
        folder.mkdir(parents=True)
        for part in range(3):
            cv2.imwrite(str(folder / f"Part{part}.jpg"), rng.integers(0, 255, (64, 24), np.uint8))
            label = np.zeros((64, 24), np.uint8)
            if part == 1 or (k == 2 and part == 2):  # 4 defective parts, the others normal
                label[20 + part:30, 5:12] = 255
            cv2.imwrite(str(folder / f"Part{part}_label.png"), label)
    return root


def test_prepare_ksdd_leaves_each_folds_defects_out_of_its_tree(tmp_path, oracle):
    from cai.eval.targets import load_eval_target
    root = _ksdd(tmp_path / "ksdd")
    out = tmp_path / "oracle"
    oracle.prepare_ksdd(root, out)
    full = load_eval_target("ksdd", root)
    defective = sorted(f"{t.path.parent.name}/{t.path.stem}" for t in full.test if t.defect_class != "good")
    assert len(defective) == 4
    seen = []
    for fold in (0, 1):
        target = load_eval_target("ksdd", out / f"fold{fold}")
        assert [(p.parent.name, p.name) for p in target.train] == [(p.parent.name, p.name) for p in full.train]
        evaluated = sorted(f"{t.path.parent.name}/{t.path.stem}" for t in target.test if t.defect_class != "good")
        patterns = datasets.load_from_disk(str(out / f"aset_fold{fold}"))
        used = sorted(i.rsplit("/", 1)[-1].replace("_", "/", 1) for i in patterns["id"])
        assert used == [d for i, d in enumerate(defective) if i % 2 == fold]
        assert evaluated == [d for i, d in enumerate(defective) if i % 2 != fold]
        assert sum(t.defect_class == "good" for t in target.test) == sum(t.defect_class == "good" for t in full.test)
        mask = np.asarray(patterns[0]["mask"]) > 0
        assert mask.any() and mask.shape == (64, 24)
        seen += used
    assert sorted(seen) == defective


def _fold_run(folder: Path, images, strength):
    rng = np.random.default_rng(len(images))
    masks = [np.zeros((16, 16), bool) for _ in images]
    for m, name in zip(masks, images):
        if not name.startswith("good/"):
            m[4:9, 3:11] = True
    for seed in (0, 1):
        maps = [rng.normal(size=(16, 16)) + strength * m for m in masks]
        save_histograms(folder / "per_image" / f"cai__seed{seed}.npz", *score_histograms(maps, masks), images)
    return folder


def test_restricted_keeps_the_named_images_in_order(oracle):
    pos, neg = np.arange(12).reshape(3, 4), np.arange(12, 24).reshape(3, 4)
    runs = SynthRuns(seeds={0: (pos, neg)}, images=["good/a", "crack/b", "crack/c"], run="r")
    sub = oracle._restricted(runs, ["crack/c", "good/a"])
    assert sub.images == ["crack/c", "good/a"]
    assert np.array_equal(sub.seeds[0][0], pos[[2, 0]]) and np.array_equal(sub.seeds[0][1], neg[[2, 0]])
    with pytest.raises(SystemExit, match="did not score 1"):
        oracle._restricted(runs, ["crack/x"])


def test_report_compares_within_each_fold(tmp_path, oracle, capsys):
    all_images = ["good/good/0.png", "crack/crack/0.png", "crack/crack/1.png", "crack/crack/2.png"]
    oracle_dir = tmp_path / "oracle"
    _fold_run(oracle_dir / "run_fold0", ["good/good/0.png", "crack/crack/1.png"], 3.0)
    _fold_run(oracle_dir / "run_fold1", ["good/good/0.png", "crack/crack/0.png", "crack/crack/2.png"], 3.0)
    weak = _fold_run(tmp_path / "weak_tile", all_images, 0.3)
    oracle.report([oracle_dir], [weak])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("cai ") and "oracle" not in line)
    assert "no difference shown" not in row.split("cai:")[1] and "+" in row.split("cai:")[1], out
