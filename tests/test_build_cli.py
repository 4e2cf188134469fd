import csv
import json
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cai.cli import main


def _texture(rng, shape=(96, 96)):
    base = rng.normal(128, 12, shape)
    return np.clip(cv2.GaussianBlur(base, (0, 0), 1.5), 0, 255).astype(np.uint8)


def _crack_pair(rng, size=200):
    image = np.stack([_texture(rng, (size, size))] * 3, axis=2)
    mask = np.zeros((size, size), np.uint8)
    pts = np.stack([np.linspace(20, size - 20, 12), size / 2 + rng.normal(0, 8, 12)], axis=1)
    cv2.polylines(mask, [pts.astype(np.int32).reshape(-1, 1, 2)], False, 255, 3)
    image[mask > 0] = 30
    return image, mask


def _stain_pair(rng, size=120):
    image = np.stack([_texture(rng, (size, size)), _texture(rng, (size, size)), _texture(rng, (size, size))], axis=2)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 5, 255, -1)
    image[mask > 0] = (150, 60, 40)
    return image, mask


@pytest.fixture
def anomaly_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "anomalies"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(4):
        for kind, maker in (("crack", _crack_pair), ("stain", _stain_pair)):
            image, mask = maker(rng)
            stem = f"{kind}{i}"
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
            rows.append({"stem": stem, "anomaly_class": kind, "source": f"{kind}_src", "license": "CC0-1.0"})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def normal_folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "normals"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.stack([_texture(rng)] * 3, axis=2)).save(root / f"n{i}.png")
    return root


def _run(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _rows(out):
    return datasets.load_dataset(str(out), split="train")


def test_build_folder_target_hub_ready_and_deterministic_across_num_proc(tmp_path, anomaly_folder, normal_folder):
    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet", "--seed", "3"]
    _run(common + ["--out", str(tmp_path / "a"), "--num-proc", "1"])
    result = _run(common + ["--out", str(tmp_path / "b"), "--num-proc", "2", "--shard-size", "2"])
    assert "made 30 of 30" in result.output, result.output[-600:]
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == len(b) == 30
    for column in ("image", "mask", "placed_mask"):
        a_bytes = [r["bytes"] for r in a.cast_column(column, datasets.Image(decode=False))[column]]
        b_bytes = [r["bytes"] for r in b.cast_column(column, datasets.Image(decode=False))[column]]
        assert a_bytes == b_bytes
    assert a.remove_columns(["image", "mask", "placed_mask"]).to_list() == \
        b.remove_columns(["image", "mask", "placed_mask"]).to_list()
    row = a[0]
    assert row["seed"] == 3 and len(row["center"]) == 2
    assert set(a["mode"]) == {"normal", "paste"} and a["mode"].count("paste") > a["mode"].count("normal")
    assert set(a["scale"]) == {"large", "medium", "small"}
    assert (tmp_path / "a" / "contact_sheet.png").is_file()
    card = (tmp_path / "a" / "README.md").read_text()
    assert card.startswith("---") and "image-segmentation" in card.split("---")[1] and "**30** pseudo anomalies" in card
    assert "pattern rotations/flips: no" in card and "extent along each defect's long axis" in card
    assert "`normal+paste` (one mode drawn per pseudo anomaly, weights 1.0 : 3.0)" in card
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["made"] == 30 and summary["ms_per_pseudo_anomaly"] > 0
    assert summary["config"]["mode"] == "normal+paste" and summary["config"]["mode_weights"] == [1.0, 3.0]
    # every mask lies on its placed defect's neighbourhood and marks a visible change
    for r in a.select(range(10)):
        mask, placed = np.asarray(r["mask"]) > 0, np.asarray(r["placed_mask"]) > 0
        assert mask.any() and (mask & ~cv2.dilate(placed.astype(np.uint8), np.ones((9, 9))).astype(bool)).sum() == 0


def test_parallel_map_files_removed_and_never_read_back(tmp_path, anomaly_folder, normal_folder):
    """--num-proc 2 workers write arrow files under .cai/map: gone after the run, and a stale one left by an
    interrupted run is overwritten, not loaded."""
    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet", "--seed", "3", "--num-proc", "2", "--shard-size", "2"]
    out = tmp_path / "b"
    _run(common + ["--out", str(out)])
    assert not (out / ".cai" / "map").exists()
    manifest = (out / ".cai-hub-manifest.json").read_text() if (out / ".cai-hub-manifest.json").is_file() else ""
    assert "/map/" not in manifest
    first = _rows(out).to_list()
    # an interrupted run: shard 0 unfinished, a worker file of another run in its place
    (out / "data" / "train-00000-of-00002.parquet").unlink()
    (out / ".cai" / "map").mkdir()
    stale = out / ".cai" / "map" / "shard-00000_00000_of_00002.arrow"
    stale.write_bytes(b"not an arrow file")
    result = _run(common + ["--out", str(out)])
    assert "resuming at shard 1 of 2" in result.output, result.output[-400:]
    assert not stale.exists() and _rows(out).to_list() == first


def test_seed_changes_output(tmp_path, anomaly_folder, normal_folder):
    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet", "--quota", "1,0,0"]
    _run(common + ["--out", str(tmp_path / "s0"), "--seed", "0"])
    _run(common + ["--out", str(tmp_path / "s1"), "--seed", "1"])
    assert _rows(tmp_path / "s0")["center"] != _rows(tmp_path / "s1")["center"]


def test_rebuilt_folder_loads_new_rows(tmp_path, anomaly_folder, normal_folder):
    args = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
            "--size", "96", "--foreground", "all", "--quiet", "--quota", "1,0,0", "--out", str(tmp_path / "same")]
    _run(args + ["--seed", "0"])
    first = _rows(tmp_path / "same")["center"]
    _run(args + ["--seed", "1", "--overwrite"])
    assert _rows(tmp_path / "same")["center"] != first  # not served from the datasets cache


def test_resume_after_interruption(tmp_path, anomaly_folder, normal_folder):
    args = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
            "--size", "96", "--foreground", "all", "--quiet", "--shard-size", "1", "--out", str(tmp_path / "r")]
    _run(args)
    first = _rows(tmp_path / "r")
    shards = sorted((tmp_path / "r" / "data").glob("*.parquet"))
    assert len(shards) == 3
    shards[1].unlink()  # as if the run stopped while writing shard 1
    _run(args)
    again = _rows(tmp_path / "r")
    assert again["source_id"] == first["source_id"] and again["center"] == first["center"]
    # another setting in the same folder is refused, not mixed in
    result = CliRunner().invoke(main, args + ["--seed", "9"])
    assert result.exit_code == 1 and "another run" in result.output


def test_classes_exclude_and_leakage_guard(tmp_path, anomaly_folder, normal_folder):
    base = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
            "--size", "96", "--foreground", "all", "--quiet", "--quota", "1,1,1"]
    _run(base + ["--out", str(tmp_path / "c"), "--classes", "crack"])
    assert set(_rows(tmp_path / "c")["anomaly_class"]) == {"crack"}
    _run(base + ["--out", str(tmp_path / "e"), "--exclude-source", "crack_src"])
    assert set(_rows(tmp_path / "e")["source"]) == {"stain_src"}
    bad = CliRunner().invoke(main, base + ["--out", str(tmp_path / "x"), "--classes", "hole"])
    assert bad.exit_code == 1 and "hole" in bad.output
    # a target named like a source is guarded against by default
    renamed = normal_folder.parent / "crack_src"
    normal_folder.rename(renamed)
    result = _run(base[:4] + [str(renamed)] + base[5:] + ["--out", str(tmp_path / "g")])
    assert "leakage guard" in result.output
    assert set(_rows(tmp_path / "g")["source"]) == {"stain_src"}


def test_bad_inputs_are_counted_not_fatal(tmp_path, anomaly_folder, normal_folder):
    rng = np.random.default_rng(5)
    (normal_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray((np.stack([_texture(rng)] * 3, axis=2).astype(np.uint16) * 257)[..., 0]).save(normal_folder / "deep16.png")
    rgba = np.dstack([np.stack([_texture(rng)] * 3, axis=2), np.full((96, 96), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(normal_folder / "rgba.png")
    Image.fromarray(_texture(rng)).save(normal_folder / "grey.png")
    img = np.asarray(Image.open(anomaly_folder / "images" / "crack0.png"))
    Image.fromarray(img).save(anomaly_folder / "images" / "zz_empty.png")
    Image.fromarray(np.zeros(img.shape[:2], np.uint8)).save(anomaly_folder / "masks" / "zz_empty.png")
    Image.fromarray(img).save(anomaly_folder / "images" / "zz_size.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(anomaly_folder / "masks" / "zz_size.png")
    Image.fromarray(img).save(anomaly_folder / "images" / "zz_soft.png")
    Image.fromarray(rng.integers(0, 255, img.shape[:2], dtype=np.uint8)).save(anomaly_folder / "masks" / "zz_soft.png")
    (anomaly_folder / "images" / "zz_corrupt.png").write_bytes(b"garbage")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(anomaly_folder / "masks" / "zz_corrupt.png")
    with open(anomaly_folder / "metadata.csv", "a") as f:
        for stem in ("zz_empty", "zz_size", "zz_soft", "zz_corrupt"):
            f.write(f"{stem},crack,crack_src,CC0-1.0\n")
    result = _run(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
                   "--size", "96", "--foreground", "all", "--quiet", "--out", str(tmp_path / "bad")])
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert summary["skipped"] == {"normal_corrupt_image": 10}
    assert summary["patterns"]["skipped"] == {"empty_mask": 1, "mask_size_mismatch": 1, "mask_not_binary": 1,
                                              "corrupt_image": 1}
    assert summary["made"] == 60
    assert "normal_corrupt_image 10" in result.output
    rows = _rows(tmp_path / "bad")
    modes = {f: r.mode for f, r in zip(rows["normal_file"], rows["image"])}
    assert modes["grey.png"] == "L" and modes["deep16.png"] == "L" and modes["rgba.png"] == "L"  # grey content


def test_colour_target_gets_colour_patterns_and_grey_target_grey(tmp_path, anomaly_folder):
    rng = np.random.default_rng(2)
    colour = tmp_path / "colour"
    colour.mkdir()
    Image.fromarray(rng.integers(60, 200, (96, 96, 3), dtype=np.uint8)).save(colour / "c.png")
    _run(["build-synthetic", "--target", "folder", "--root", str(colour), "--daad", str(anomaly_folder),
          "--size", "96", "--foreground", "all", "--quiet", "--out", str(tmp_path / "co")])
    assert {im.mode for im in _rows(tmp_path / "co")["image"]} == {"RGB"}


def test_bad_options(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["build-synthetic", "--out", str(tmp_path / "o"), "--quota", "4,3"])
    assert r.exit_code == 2 and "three" in r.output
    r = runner.invoke(main, ["build-synthetic", "--out", str(tmp_path / "o"), "--target", "mvtec", "--root",
                             str(tmp_path), "--category", "nothing"])
    assert r.exit_code == 1 and "train/good" in r.output
    r = runner.invoke(main, ["build-synthetic", "--out", str(tmp_path / "o"), "--daad", str(tmp_path / "missing.txt")])
    assert r.exit_code == 1


def test_embedded_default_runs(tmp_path):
    result = _run(["build-synthetic", "--out", str(tmp_path / "demo"), "--quiet", "--quota", "1,1,1"])
    rows = _rows(tmp_path / "demo")
    assert len(rows) == 18 and set(rows["anomaly_class"]) <= {"crack", "stain"}
    assert "foreground: all" in result.output


def test_push_to_hub_uploads_the_folder(tmp_path, anomaly_folder, normal_folder, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Info", (), {"commit_url": f"https://hub.invalid/{kwargs['repo_id']}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = _run(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
                   "--size", "96", "--foreground", "all", "--quiet", "--quota", "1,0,0", "--out", str(tmp_path / "p"),
                   "--push-to-hub", "org/cai-test", "--private"])
    assert calls[0] == ("create_repo", "org/cai-test", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[1][1]
    assert upload["repo_id"] == "org/cai-test" and upload["repo_type"] == "dataset"
    # exactly the manifest's published files (issue 9), not patterns that could match a user's files
    assert upload["folder_path"] == str(tmp_path / "p")
    assert upload["allow_patterns"] == ["README.md", "contact_sheet.png", "data/train-00000-of-00001.parquet",
                                        "summary.json"]
    assert ".cai" not in " ".join(upload["allow_patterns"])
    assert "pushed: https://hub.invalid/org/cai-test/commit/1" in result.output


def test_paper_flags_reach_the_config_and_bad_mode_is_one_line(tmp_path):
    from click.testing import CliRunner

    from cai.cli import main

    res = CliRunner().invoke(main, ["build-synthetic", "--out", str(tmp_path / "p"), "--mode", "normal",
                                    "--no-refine-mask", "--no-augment", "--median-ksize", "7", "--draw", "class",
                                    "--scale-reference", "long", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    cfg = summary["config"]
    assert (cfg["mode"], cfg["refine_mask"], cfg["augment"], cfg["median_ksize"]) == ("normal", False, False, 7)
    assert cfg["draw"] == "class" and "scale_reference" not in cfg
    bad = CliRunner().invoke(main, ["build-synthetic", "--out", str(tmp_path / "q"), "--mode", "poisson"])
    assert bad.exit_code == 2 and "--mode" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "q").exists()


def test_contact_sheet_and_card_read_the_shards_without_a_datasets_cache(tmp_path, anomaly_folder, normal_folder,
                                                                         monkeypatch):
    from cai.outputs import render_card, write_contact_sheet
    from cai.targets import load_target

    _run(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
          "--size", "96", "--foreground", "all", "--quiet", "--seed", "1", "--shard-size", "2",
          "--out", str(tmp_path / "a")])
    out = tmp_path / "a"
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    normals, _ = load_target("folder", str(normal_folder))
    sheet = write_contact_sheet(out, normals, rows=3, tile=32)  # the third normal is in the second shard
    render_card(out, json.loads((out / "summary.json").read_text()))
    assert not cache.exists() or not any(cache.rglob("*.arrow"))  # nothing copied into a cache
    # the same sheet as one drawn from the rows read through datasets (first row of the first 3 normals)
    ds = datasets.Dataset.from_parquet(sorted(str(p) for p in (out / "data").glob("train-*.parquet")),
                                       cache_dir=str(tmp_path / "ref_cache"))
    firsts = [list(ds["normal_index"]).index(n) for n in sorted(set(ds["normal_index"]))[:3]]
    got = cv2.cvtColor(cv2.imread(str(sheet)), cv2.COLOR_BGR2RGB)
    assert len(firsts) == 3 and got.shape == (3 * 36, 3 * 36, 3)
    for line, i in enumerate(firsts):
        pseudo = np.asarray(ds[i]["image"].convert("RGB"))
        tile = got[line * 36 + 2:line * 36 + 34, 36 + 2:36 + 34]
        assert np.array_equal(tile, cv2.resize(pseudo, (32, 32), interpolation=cv2.INTER_AREA))


def test_mode_weights_reach_the_rows_and_bad_weights_are_one_line(tmp_path, anomaly_folder, normal_folder):
    base = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
            "--size", "96", "--foreground", "all", "--quiet", "--quota", "2,2,2", "--mode", "normal+paste"]
    _run(base + ["--out", str(tmp_path / "p"), "--mode-weights", "0,1"])
    assert set(_rows(tmp_path / "p")["mode"]) == {"paste"}
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["config"]["mode_weights"] == [0.0, 1.0]
    for weights, code in (("1,x", 2), ("-1,2", 2), ("0,0", 2), ("1,2,3", 1)):
        bad = CliRunner().invoke(main, base + ["--out", str(tmp_path / "q"), "--mode-weights", weights])
        assert bad.exit_code == code and "weights" in bad.output and "Traceback" not in bad.output, bad.output
        assert not (tmp_path / "q").exists()


def _image_bytes(rows, column="image"):
    return [r["bytes"] for r in rows.cast_column(column, datasets.Image(decode=False))[column]]


def test_synth_mixture_slots_are_the_default_or_nsa_own_and_num_proc_safe(tmp_path, anomaly_folder, normal_folder):
    """--synth cai+nsan50: each slot is byte for byte either the default run's slot or NSA's own slot made from
    the decoded normals directly; the same bytes with two workers and small shards."""
    from cai.baselines import make_synthesizer
    from cai.engine.config import CAIConfig
    from cai.imageio import load_rgb

    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet", "--seed", "2"]
    _run(common + ["--out", str(tmp_path / "default")])
    _run(common + ["--out", str(tmp_path / "mix"), "--synth", "cai+nsan50"])
    _run(common + ["--out", str(tmp_path / "mix2"), "--synth", "cai+nsan50", "--num-proc", "2", "--shard-size", "1"])
    default, mix, mix2 = (_rows(tmp_path / n) for n in ("default", "mix", "mix2"))
    assert _image_bytes(mix) == _image_bytes(mix2) and mix["mode"] == mix2["mode"]
    assert len(mix) == len(default) == 30
    normals = [load_rgb(str(p))[0] for p in sorted(normal_folder.glob("*.png"))]
    nsa = make_synthesizer("nsa-n", normals=normals, config=CAIConfig(), per_image=10)
    own = {i: nsa.synthesize(n, np.ones((96, 96), bool), i, 2, is_grey=True) for i, n in enumerate(normals)}
    by_slot = {(r["normal_index"], r["k"]): b for r, b in zip(default.remove_columns(["image", "mask", "placed_mask"]),
                                                             _image_bytes(default))}
    n_nsa = 0
    for row, image_bytes in zip(mix, _image_bytes(mix)):
        i, k = row["normal_index"], row["k"]
        if row["mode"] == "nsa-n":
            n_nsa += 1
            assert row["anomaly_class"] == "nsa-n" and row["scale"] == "" and row["source_id"].startswith("normal:")
            assert np.array_equal(np.asarray(row["image"]), own[i][k].image)
            assert np.array_equal(np.asarray(row["mask"]) > 0, own[i][k].mask)
        else:
            assert image_bytes == by_slot[(i, k)]
    assert 8 <= n_nsa <= 22  # half of 30 slots, drawn
    summary = json.loads((tmp_path / "mix" / "summary.json").read_text())
    assert summary["synthesizer"] == "cai+nsan50"
    assert summary["mixture"] == {"synthesizer": "nsa-n", "share": 0.5, "gate": None, "gate_rule": None,
                                  "small_patches": False}
    card = (tmp_path / "mix" / "README.md").read_text()
    assert "Synthesizer: `cai+nsan50`" in card and "probability 0.5 for an NSA patch" in card
    assert "(crack, stain) injected" in card  # the in-domain class is not listed as a foreign defect
    assert "Synthesizer:" not in (tmp_path / "default" / "README.md").read_text()


def test_synth_gated_mixture_card_and_default_name_keeps_the_fingerprint(tmp_path, anomaly_folder, normal_folder):
    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet"]
    _run(common + ["--out", str(tmp_path / "a")])
    result = _run(common + ["--out", str(tmp_path / "a"), "--synth", "cai"])  # same run: found complete
    assert "already complete" in result.output
    _run(common + ["--out", str(tmp_path / "g"), "--synth", "cai+nsanis25"])
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["mixture"]["gate"] == "distinct_inside" and "inside the foreground" in summary["mixture"]["gate_rule"]
    card = (tmp_path / "g" / "README.md").read_text()
    assert "a slot whose patch fails keeps its CAI pseudo anomaly" in card


def test_synth_variant_settings_replace_options_with_a_warning(tmp_path, anomaly_folder, normal_folder):
    result = _run(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad",
                   str(anomaly_folder), "--size", "96", "--foreground", "all", "--quiet", "--out", str(tmp_path / "n"),
                   "--synth", "cai-n", "--mode", "paste", "--border", "exclude"])
    assert "warning: mode paste is replaced by --synth cai-n (mode normal)" in result.output
    assert "border" not in result.output  # not a setting cai-n names: it applies
    summary = json.loads((tmp_path / "n" / "summary.json").read_text())
    assert summary["config"]["mode"] == "normal" and summary["config"]["refine_mask"] is False
    assert summary["config"]["border"] == "exclude"
    assert set(_rows(tmp_path / "n")["mode"]) == {"normal"}


def test_synth_bad_names_and_combinations_are_one_line_errors(tmp_path, anomaly_folder, normal_folder):
    runner = CliRunner()
    common = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad", str(anomaly_folder),
              "--size", "96", "--foreground", "all", "--quiet"]
    for synth, expected in (("cia", "unknown synthesizer 'cia'"), ("draem", "cai-hub evaluate --synth cai,draem"),
                            ("cai+nsan25+paste", "must come last"), ("cai+bogus", "unknown modifier")):
        r = runner.invoke(main, common + ["--out", str(tmp_path / "x"), "--synth", synth])
        assert r.exit_code == 1 and expected in r.output and "Traceback" not in r.output, (synth, r.output)
    one = tmp_path / "one"
    one.mkdir()
    (one / "n0.png").write_bytes((normal_folder / "n0.png").read_bytes())
    r = runner.invoke(main, ["build-synthetic", "--target", "folder", "--root", str(one), "--daad", str(anomaly_folder),
                             "--size", "96", "--foreground", "all", "--quiet", "--out", str(tmp_path / "y"),
                             "--synth", "cai+nsan25"])
    assert r.exit_code == 1 and "at least two normal images" in r.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # nothing written


def test_synth_unreadable_pool_image_skips_the_slots_that_drew_it(tmp_path, anomaly_folder, normal_folder):
    (normal_folder / "n9_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = _run(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad",
                   str(anomaly_folder), "--size", "96", "--foreground", "all", "--quiet", "--out", str(tmp_path / "p"),
                   "--synth", "cai+nsan99"])
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["skipped"]["normal_corrupt_image"] == 10
    assert summary["skipped"].get("pool_corrupt_image", 0) >= 10  # an NSA slot of a good image drew the broken one
    assert summary["made"] + sum(summary["skipped"].values()) == 40
    assert "pool_corrupt_image" in result.output


def test_resize_keeps_the_aspect_by_default_or_squares_on_request(tmp_path, anomaly_folder):
    rng = np.random.default_rng(2)
    root = tmp_path / "wide"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.stack([_texture(rng, (80, 200))] * 3, axis=2)).save(root / f"n{i}.png")
    common = ["build-synthetic", "--target", "folder", "--root", str(root), "--daad", str(anomaly_folder),
              "--size", "64", "--foreground", "all", "--quiet"]
    _run(common + ["--out", str(tmp_path / "short")])
    _run(common + ["--out", str(tmp_path / "square"), "--resize", "square"])
    for name, shape, words in (("short", (64, 160), "short side 64 px, aspect kept"), ("square", (64, 64), "64 x 64 px")):
        rows = _rows(tmp_path / name)
        assert len(rows) == 20 and {np.asarray(r["image"]).shape[:2] for r in rows} == {shape}
        assert json.loads((tmp_path / name / "summary.json").read_text())["resize"] == name
        assert f"image size: {words};" in (tmp_path / name / "README.md").read_text()
        sheet = cv2.imread(str(tmp_path / name / "contact_sheet.png"))  # two lines, tiles 192 px high, undistorted
        assert sheet.shape[:2] == (2 * 196, 3 * (4 + (480 if name == "short" else 192)))
    r = CliRunner().invoke(main, common + ["--out", str(tmp_path / "bad"), "--resize", "stretch"])
    assert r.exit_code == 2 and "stretch" in r.output
    # a square run (what every version before --resize made; same fingerprint) is not resumed by the default,
    # and the message says which option resumes it; other runs keep the plain message
    before = sorted(p.name for p in (tmp_path / "square" / "data").iterdir())
    r = CliRunner().invoke(main, common + ["--out", str(tmp_path / "square")])
    assert r.exit_code == 1 and "pass --resize square to resume it" in r.output, r.output
    r = CliRunner().invoke(main, common + ["--out", str(tmp_path / "square"), "--resize", "square"])
    assert r.exit_code == 0 and "already complete" in r.output, r.output
    r = CliRunner().invoke(main, [*common[:-5], "--size", "96", "--foreground", "all", "--out", str(tmp_path / "square")])
    assert r.exit_code == 1 and "another run (different inputs" in r.output and "--resize" not in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "square" / "data").iterdir()) == before
    from cai.build import RESIZE_RULES
    option = next(p for p in main.commands["build-synthetic"].params if p.name == "resize")
    assert tuple(option.type.choices) == RESIZE_RULES  # the CLI's copy of the rules


def test_build_resizes_normals_as_the_evaluation_does(tmp_path):
    """The build's normals are the images the evaluation measured: a normal smaller than the size is
    enlarged (INTER_LINEAR) and a larger one shrunk (INTER_AREA) identically by both, a non-square one to
    the same short side with its aspect kept."""
    from cai.build import NormalsPool
    from cai.eval.evaluate import load_normals
    from cai.targets import load_target

    rng = np.random.default_rng(0)
    folder = tmp_path / "normals"
    folder.mkdir()
    for name, shape in (("small", (40, 40)), ("large", (100, 100)), ("wide", (50, 120))):
        Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8)).save(folder / f"{name}.png")
    normals, _ = load_target("folder", str(folder))
    pool = NormalsPool(normals, 64)
    names = [Path(v["path"]).name for v in normals.cast_column("image", datasets.Image(decode=False))["image"]]
    for j, name in enumerate(names):
        evaluated = load_normals([folder / name], 64)[0][0]
        assert pool(j).shape == evaluated.shape == ((64, 154, 3) if name == "wide.png" else (64, 64, 3))
        assert np.array_equal(pool(j), evaluated), name
    small = names.index("small.png")
    assert not np.array_equal(pool(small), cv2.resize(np.asarray(Image.open(folder / "small.png")), (64, 64),
                                                      interpolation=cv2.INTER_AREA))  # the old rule differs


def test_normals_pool_decodes_once_keeps_a_byte_budget_and_pickles_empty(normal_folder):
    import pickle

    from cai.build import NormalsPool
    from cai.imageio import load_rgb
    from cai.targets import load_target

    normals, _ = load_target("folder", str(normal_folder))
    pool = NormalsPool(normals, 64, cache_mib=2 * 64 * 64 * 3 / 2**20)  # room for two images
    first = pool(0)
    assert first.shape == (64, 64, 3) and not first.flags.writeable
    assert np.array_equal(first, cv2.resize(load_rgb(str(normal_folder / "n0.png"))[0], (64, 64),
                                            interpolation=cv2.INTER_AREA))
    assert pool(0) is first  # kept
    pool(1), pool(2)  # a third image drops the least recently used (0)
    assert list(pool._cache) == [1, 2] and pool._cached_bytes == 2 * first.nbytes
    assert pool(0) is not first and np.array_equal(pool(0), first)
    copy = pickle.loads(pickle.dumps(pool))
    assert len(copy) == 3 and not copy._cache and np.array_equal(copy(2), pool(2))
