"""`evaluate` end to end on a tiny synthetic folder target, the CLI through CliRunner, and the
target readers on the real ../shared/data layouts (when present)."""
import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cai.cli import main
from cai.eval.evaluate import EvaluationError, evaluate, make_synthesizers
from cai.eval.targets import EvalTargetError, load_eval_target

SIZE = 64


def _texture(rng, size=SIZE):
    base = rng.normal(128, 12, (size, size)).astype(np.float32)
    base += 20 * np.sin(np.arange(size) / 3.0)[None, :]
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """normals/ (5 images), test/ (2 scratches, 1 blob, 2 normal), anomaly set (crack pairs from
    'other_src' plus one row whose source is the target itself, which the guard must drop)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    normals = root / "tgt"
    normals.mkdir()
    for i in range(5):
        cv2.imwrite(str(normals / f"n{i}.png"), _texture(rng))
    test = root / "test"
    for sub in ("images/scratch", "masks/scratch", "images/blob", "masks/blob", "images/good"):
        (test / sub).mkdir(parents=True)
    for i in range(2):
        image, mask = _texture(rng), np.zeros((SIZE, SIZE), np.uint8)
        cv2.line(mask, (10, 10 + 20 * i), (50, 20 + 20 * i), 255, 3)
        image[mask > 0] = 30
        cv2.imwrite(str(test / f"images/scratch/s{i}.png"), image)
        cv2.imwrite(str(test / f"masks/scratch/s{i}.png"), mask)
        cv2.imwrite(str(test / f"images/good/g{i}.png"), _texture(rng))
    image, mask = _texture(rng), np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(mask, (30, 30), 8, 255, -1)
    image[mask > 0] = 220
    cv2.imwrite(str(test / "images/blob/b0.png"), image)
    cv2.imwrite(str(test / "masks/blob/b0_mask.png"), mask)
    aset = root / "aset"
    (aset / "images").mkdir(parents=True)
    (aset / "masks").mkdir()
    rows = ["stem,anomaly_class,source,license"]
    for i in range(6):
        photo = rng.integers(100, 160, (48, 48, 3), dtype=np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        cv2.line(mask, (5, 5 + 6 * i), (40, 30), 255, 2 + i % 2)
        photo[mask > 0] = 20
        cv2.imwrite(str(aset / f"images/c{i}.png"), photo)
        cv2.imwrite(str(aset / f"masks/c{i}.png"), mask)
        rows.append(f"c{i},crack,{'tgt' if i == 5 else 'other_src'},CC0-1.0")
    (aset / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def _run(tiny, out, synths=("cai-n", "cutpaste"), seeds=(0,), **kw):
    kw.setdefault("threads", 1)  # the default is every core; one is faster on a busy 2-core machine
    return evaluate("folder", tiny / "tgt", daad=str(tiny / "aset"), synths=synths, profile="cpu", seeds=seeds,
                    out=out, test_root=str(tiny / "test"), synth_size=SIZE, per_image=3, progress=False,
                    detector={"epochs": 2, "size": SIZE, "batch_size": 8}, **kw)


def test_evaluate_end_to_end_writes_tables(tiny, tmp_path):
    out = tmp_path / "run"
    res = _run(tiny, out, seeds=(0, 1))
    curves = json.loads((out / "curves.json").read_text())
    assert set(curves["pro"]) == {"cai-n", "cutpaste"} and max(curves["pro"]["cai-n"]["fpr"]) == pytest.approx(0.3)
    for name in ("results.md", "results.json", "results.csv", "curves.json", "curves_pr.png", "curves_pro.png",
                 "anomaly_maps.png", "pseudo_anomalies.png", "train_log.jsonl"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["synthesizers"]) == ["cai-n", "cutpaste"]
    assert saved["target"]["test_per_class"] == {"blob": 1, "good": 2, "scratch": 2}
    assert saved["target"]["defect_classes"] == ["blob", "scratch"]
    assert saved["leakage_guard"]["excluded_sources"] == ["tgt"]  # the target's own row never injected
    assert saved["anomaly_set"]["per_source"] == {"other_src": 5}
    for name, r in saved["synthesizers"].items():
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        for run in r["runs"]:
            assert 0 <= run["pixel_auroc"] <= 1 and 0 <= run["pro"] <= 1 and 0 <= run["image_auroc"] <= 1
            assert set(run["per_class_ap"]) == {"blob", "scratch"}
            assert run["made"] > 0
        mean, std = r["summary"]["pixel_auroc"]
        vals = [run["pixel_auroc"] for run in r["runs"]]
        assert mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals, ddof=1))
        assert np.isfinite(r["fd"]["lite0"])
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["synthesizer"] for r in rows] == ["cai-n", "cutpaste"]
    assert all(r["profile"] == "cpu" for r in rows)
    metric_columns = [c for c in rows[0] if "auroc" in c or "pro_" in c or "pixel_ap" in c]
    assert metric_columns and all(c.startswith("cpu:") for c in metric_columns)
    md = (out / "results.md").read_text()
    assert "P-AUROC [cpu]" in md and "NOT the paper's DRAEM detector" in md and "not comparable with published FID" in md
    assert "| cai-n |" in md and "| cutpaste |" in md and "scratch" in md
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2 * 2 * 2  # synths x seeds x epochs


def test_evaluate_is_reproducible(tiny, tmp_path):
    a = _run(tiny, tmp_path / "a", synths=("cai-n",))
    b = _run(tiny, tmp_path / "b", synths=("cai-n",))
    ra, rb = a["synthesizers"]["cai-n"]["runs"][0], b["synthesizers"]["cai-n"]["runs"][0]
    for k in ("pixel_auroc", "pixel_ap", "pro", "image_auroc", "made", "final_loss"):
        assert ra[k] == pytest.approx(rb[k], rel=1e-5), k


def test_evaluate_errors(tiny, tmp_path):
    with pytest.raises(EvaluationError, match="anomaly set"):
        evaluate("folder", tiny / "tgt", synths=("cai-n",), seeds=1, out=tmp_path / "x",
                 test_root=str(tiny / "test"), progress=False)
    with pytest.raises(EvaluationError, match="unknown synthesizer|needs cai.baselines"):
        make_synthesizers(["no-such"], bank=None)
    for bad, why in [("cai+nosuch", "unknown modifier"), ("cai+nsan25+refine", "must come last"),
                     ("draem+refine", "cai-\\* synthesizers only")]:  # refused before the output folder is made
        with pytest.raises(EvaluationError, match=f"--synth {bad.replace('+', '.')}: .*{why}"):
            evaluate("folder", tiny / "tgt", synths=(bad,), seeds=1, out=tmp_path / "bad", daad=str(tiny / "daad"),
                     test_root=str(tiny / "test"), progress=False)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(EvalTargetError, match="test-root"):
        load_eval_target("folder", tiny / "tgt")
    with pytest.raises(EvalTargetError, match="category"):
        load_eval_target("mvtec", tiny)


def test_cli_evaluate(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))  # the patterns are cropped afresh (a bar)
    out = tmp_path / "cli"
    args = ["evaluate", "--target", "folder", "--root", str(tiny / "tgt"), "--test-root", str(tiny / "test"),
            "--daad", str(tiny / "aset"), "--synth", "cai-n", "--seeds", "1", "--epochs", "1", "--size", str(SIZE),
            "--synth-size", str(SIZE), "--per-image", "2", "--width", "8", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "P-AUROC [cpu]" in result.output and (out / "results.csv").is_file()
    assert "examples/s" not in result.output  # --quiet silences datasets' bars too (cropping the patterns)
    saved = json.loads((out / "results.json").read_text())
    assert saved["seeds"] == [0] and saved["profile"]["config"]["epochs"] == 1
    assert saved["profile"]["config"]["width"] == 8  # --width reaches the detector
    assert "(8 channels)" in saved["profile"]["description"] and "epochs 1" in saved["profile"]["description"]
    assert saved["command"].startswith("cai-hub evaluate --target folder") and "--seeds 1" in saved["command"]

    bad = CliRunner().invoke(main, args[:-3] + ["--synth", "nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "nope" in bad.output
    bad_seeds = CliRunner().invoke(main, args[:-1] + ["--seeds", "zero"])
    assert bad_seeds.exit_code == 2 and "seed" in bad_seeds.output
    bad_width = CliRunner().invoke(main, [*args[:-1], "--width", "0"])
    assert bad_width.exit_code == 2 and "--width" in bad_width.output
    bad_size = CliRunner().invoke(main, [*args[:-1], "--size", "100"])
    assert bad_size.exit_code == 2 and "multiple of 32" in bad_size.output


def test_mtd_layout_split_and_classes(tmp_path):
    rng = np.random.default_rng(0)
    free = tmp_path / "MT_Free" / "Imgs"
    free.mkdir(parents=True)
    for i in range(10):
        cv2.imwrite(str(free / f"f{i:02d}.jpg"), rng.integers(0, 255, (20, 30), dtype=np.uint8))
    for defect in ("Crack", "Blowhole"):
        folder = tmp_path / f"MT_{defect}" / "Imgs"
        folder.mkdir(parents=True)
        mask = np.zeros((20, 30), np.uint8)
        mask[5:9, 4:20] = 255
        cv2.imwrite(str(folder / "a.jpg"), rng.integers(0, 255, (20, 30), dtype=np.uint8))
        cv2.imwrite(str(folder / "a.png"), mask)
    t = load_eval_target("mtd", tmp_path)
    assert [p.name for p in t.train] == [f"f{i:02d}.jpg" for i in range(10) if i % 5 != 4]
    assert t.summary()["test_per_class"] == {"Blowhole": 1, "Crack": 1, "good": 2}
    image, mask = next(x for x in t.test if x.defect_class == "Crack").load()
    assert image.shape == (20, 30, 3) and mask.sum() == 4 * 16
    assert "magnetic_tile" in t.guard_sources
    assert len(load_eval_target("mtd", tmp_path, max_normals=3).train) == 3


# ----------------------------------------------------------------------------- real layouts
@pytest.mark.shared_data
def test_mvtec_grid_target_reads_real_test_set(shared_data):
    t = load_eval_target("mvtec", shared_data / "mvtec_ad", "grid")
    assert len(t.train) == 25
    assert t.summary()["test_per_class"] == {"bent": 3, "broken": 2, "glue": 2, "good": 3,
                                             "metal_contamination": 2, "thread": 2}
    image, mask = next(x for x in t.test if x.defect_class == "thread").load()
    assert image.shape == (1024, 1024, 3) and mask.shape == (1024, 1024) and mask.any()
    assert "mvtec_ad" in t.guard_sources


@pytest.mark.shared_data
def test_ksdd_split_holds_out_one_commutator(shared_data):
    t = load_eval_target("ksdd", shared_data / "ksdd")
    normal_test = [x for x in t.test if x.defect_class == "good"]
    assert {p.parent.name for p in t.train} == {"kos01", "kos02", "kos03", "kos04"}
    assert {x.path.parent.name for x in normal_test} == {"kos05"}
    assert sum(x.defect_class == "crack" for x in t.test) == 52
    assert len(t.train) + len(normal_test) == 35
    assert not {p for p in t.train} & {x.path for x in t.test}


def test_epoch_seed_keeps_epoch_0_and_varies():
    from cai.eval.evaluate import epoch_seed
    assert epoch_seed(3, 0) == 3
    seeds = {epoch_seed(s, e) for s in range(3) for e in range(1, 5)}
    assert len(seeds) == 12 and all(0 <= v < 2 ** 63 for v in seeds)


def test_train_detector_refreshes_every_epoch_after_the_first():
    from cai.eval.detector import get_profile, train_detector
    rng = np.random.default_rng(0)
    calls = []

    def data(epoch):
        calls.append(epoch)
        images = [_texture(rng) for _ in range(4)]
        masks = [np.zeros((SIZE, SIZE), bool) for _ in range(2)] + [np.eye(SIZE, dtype=bool)] * 2
        return images, masks

    config = get_profile("cpu", epochs=3, size=SIZE, batch_size=4)
    fixed = train_detector(*data(0), config, progress=False)
    calls.clear()
    fresh = train_detector(*data(0), config, progress=False, refresh=data)
    assert calls == [0, 1, 2]  # the initial set, then epochs 1 and 2
    assert fixed.history[0]["loss"] != fresh.history[0]["loss"] or fixed.history[-1]["loss"] != fresh.history[-1]["loss"]


def test_evaluate_on_the_fly(tiny, tmp_path):
    fixed = _run(tiny, tmp_path / "fixed", synths=("cai-n",))
    res = _run(tiny, tmp_path / "otf", synths=("cai-n",), on_the_fly=True)
    assert res["on_the_fly"] is True and fixed["on_the_fly"] is False
    run, run_fixed = res["synthesizers"]["cai-n"]["runs"][0], fixed["synthesizers"]["cai-n"]["runs"][0]
    assert run["made"] == run_fixed["made"]  # epoch 0 is the fixed split
    assert run["made_on_the_fly"] > 0  # epoch 1 (of 2) made a fresh split
    assert run["final_loss"] != run_fixed["final_loss"]
    assert "on the fly" in (tmp_path / "otf" / "results.md").read_text()
    result = CliRunner().invoke(main, ["evaluate", "--target", "folder", "--root", str(tiny / "tgt"), "--test-root",
                                       str(tiny / "test"), "--synth", "cutpaste", "--seeds", "1", "--epochs", "2",
                                       "--size", "64", "--synth-size", "64", "--per-image", "2", "--quiet",
                                       "--on-the-fly", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["on_the_fly"] is True
