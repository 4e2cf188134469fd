"""Issue 9: never delete, overwrite or upload a user's files; one-line errors for the mistakes people make.

Each case runs the command line (CliRunner, under tmp_path) and checks that the user's files are
byte-identical afterwards, the exit code, that the message names the option, and that no traceback
is printed.
"""
import hashlib
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cai.cli import main
from cai.output_folder import MANIFEST, OutputFolderError, claim, public_name

from test_build_cli import anomaly_folder, normal_folder  # noqa: F401  (fixtures)

FAST = ["--size", "64", "--foreground", "all", "--quiet", "--quota", "1,0,0"]


def _snapshot(folder: Path) -> dict:
    """relative path -> sha256 of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_folder(root: Path) -> Path:
    """A folder of someone's own files, including names a run also writes."""
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("my notes")
    (root / "sub" / "thesis.tex").write_text("\\documentclass{article}")
    (root / "README.md").write_text("my readme")
    (root / "summary.json").write_text('{"mine": true}')
    return root


def _invoke(args, **kwargs):
    return CliRunner().invoke(main, args, catch_exceptions=True, **kwargs)


def _assert_clean_error(result, option, code=1):
    """Non-zero exit ``code``, a short message naming ``option``, no traceback."""
    assert result.exit_code == code, result.output + repr(result.exception)
    assert option in result.output, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) <= 2, result.output


# ------------------------------------------------------------------------------------- output folder


def test_out_is_the_current_folder_with_overwrite(tmp_path, monkeypatch):
    work = _user_folder(tmp_path / "cwd")
    before = _snapshot(work)
    monkeypatch.chdir(work)
    result = _invoke(["build-synthetic", "--out", ".", "--overwrite", *FAST])
    _assert_clean_error(result, "--out")
    assert "current folder" in result.output
    assert _snapshot(work) == before


def test_out_equal_to_root_with_overwrite_keeps_the_inputs(tmp_path, anomaly_folder, normal_folder):
    before = _snapshot(normal_folder)
    for extra in ([], ["--overwrite"]):
        result = _invoke(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad",
                          str(anomaly_folder), "--out", str(normal_folder), *FAST, *extra])
        _assert_clean_error(result, "--out")
        assert "--root" in result.output
    assert _snapshot(normal_folder) == before


def test_out_is_a_parent_of_an_input(tmp_path, anomaly_folder):
    before = _snapshot(tmp_path / "anomalies")
    result = _invoke(["build-synthetic", "--daad", str(anomaly_folder), "--out", str(tmp_path), "--overwrite", *FAST])
    _assert_clean_error(result, "--out")
    assert "holds the --daad input" in result.output
    assert _snapshot(tmp_path / "anomalies") == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_someones_folder_is_never_written_or_deleted(tmp_path, overwrite):
    out = _user_folder(tmp_path / "mine")
    before = _snapshot(out)
    result = _invoke(["build-synthetic", "--out", str(out), *FAST] + (["--overwrite"] if overwrite else []))
    _assert_clean_error(result, "--out")
    assert "nothing was changed" in result.output
    assert _snapshot(out) == before


def test_overwrite_removes_only_the_listed_files(tmp_path):
    out = tmp_path / "run"
    first = _invoke(["build-synthetic", "--out", str(out), *FAST])
    assert first.exit_code == 0, first.output
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert "summary.json" in listed and any(f.startswith("data/train-") for f in listed)
    (out / "notes.txt").write_text("added later by me")
    (out / "data" / "mine.parquet").write_bytes(b"not ours")
    again = _invoke(["build-synthetic", "--out", str(out), *FAST, "--seed", "1"])
    _assert_clean_error(again, "--out")
    assert "another run" in again.output and "removes only" in again.output
    done = _invoke(["build-synthetic", "--out", str(out), *FAST, "--seed", "1", "--overwrite"])
    assert done.exit_code == 0, done.output
    assert (out / "notes.txt").read_text() == "added later by me"
    assert (out / "data" / "mine.parquet").read_bytes() == b"not ours"
    assert json.loads((out / "summary.json").read_text())["seed"] == 1


def test_push_uploads_exactly_the_manifest_files(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return "https://hub.invalid/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "run"
    assert _invoke(["build-synthetic", "--out", str(out), *FAST]).exit_code == 0
    (out / "data" / "train-private.parquet").write_bytes(b"someone's shard")  # matches data/*.parquet
    (out / "secrets.txt").write_text("token")
    result = _invoke(["build-synthetic", "--out", str(out), *FAST, "--push-to-hub", "org/name"])
    assert result.exit_code == 0, result.output
    allowed = calls[-1][1]["allow_patterns"]
    assert "data/train-private.parquet" not in allowed and "secrets.txt" not in allowed
    assert sorted(allowed) == ["README.md", "contact_sheet.png", "data/train-00000-of-00001.parquet", "summary.json"]
    bad = _invoke(["build-synthetic", "--out", str(tmp_path / "x"), *FAST, "--push-to-hub", "not a repo"])
    _assert_clean_error(bad, "--push-to-hub", code=2)


def test_published_files_hold_no_local_paths(tmp_path, anomaly_folder, normal_folder):
    out = tmp_path / "run"
    result = _invoke(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--daad",
                      str(anomaly_folder), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    local = str(tmp_path)
    for name in ("README.md", "summary.json"):
        assert local not in (out / name).read_text(), name
    assert json.loads((out / "summary.json").read_text())["anomaly_set"] == "anomalies"
    rows = datasets.Dataset.from_parquet(sorted(str(p) for p in (out / "data").glob("*.parquet")))
    for column in ("normal_file", "source_id", "source"):
        assert not any(local in str(v) for v in rows[column]), column
    assert public_name("org/name") == "org/name" and public_name(str(normal_folder)) == "normals"


def test_failed_input_check_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    result = _invoke(["build-synthetic", "--out", str(out), "--daad", str(tmp_path / "missing"), *FAST])
    _assert_clean_error(result, "--daad")
    assert not out.exists()  # the corrected rerun is not told "holds another run"


# ------------------------------------------------------------------------------------- one-line errors


def test_missing_daad_path_and_bare_name_are_not_tried_on_the_hub(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("a bare name must not be tried as a hub id")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    for spec in (str(tmp_path / "nope"), "mydefects"):
        result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--daad", spec, *FAST])
        _assert_clean_error(result, "--daad")
        assert "no such file or folder" in result.output


def test_hub_id_offline_says_so(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/defects' on the Hub (LocalEntryNotFoundError)\nmore\nlines")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--daad", "org/defects", *FAST])
    _assert_clean_error(result, "--daad")
    assert "offline hub access failed" in result.output
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--target", "hf", "--root", "org/normals",
                      *FAST])
    _assert_clean_error(result, "--root")
    assert "offline hub access failed" in result.output


def test_target_hf_without_root(tmp_path):
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--target", "hf", *FAST])
    _assert_clean_error(result, "--root")


@pytest.mark.parametrize("option,value", [("--seed", "-1"), ("--size", "7")])
def test_bad_numbers_name_the_option(tmp_path, option, value):
    args = ["build-synthetic", "--out", str(tmp_path / "o"), *FAST, option, value]
    result = _invoke(args)
    _assert_clean_error(result, option, code=2)
    assert not (tmp_path / "o").exists()


def test_stray_non_image_in_daad_folder(tmp_path):
    folder = tmp_path / "defects"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"this is not a JPEG")
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--daad", str(folder), *FAST])
    _assert_clean_error(result, "--daad")
    assert "On your data" in result.output and not (tmp_path / "o").exists()


def test_stray_non_image_in_root_is_counted_not_fatal(tmp_path, normal_folder):
    (normal_folder / "broken.jpg").write_bytes(b"not an image")
    result = _invoke(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--out",
                      str(tmp_path / "o"), *FAST])
    assert result.exit_code == 0, result.output
    assert "normal_corrupt_image 1" in result.output


def test_unexpected_errors_are_one_line_unless_debug(tmp_path, monkeypatch):
    import cai.build

    def boom(*args, **kwargs):
        raise KeyError("something deep")

    monkeypatch.setattr(cai.build, "build_synthetic", boom)
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 1 and "KeyError" in result.output and "--debug" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    debug = _invoke(["--debug", "build-synthetic", "--out", str(tmp_path / "o"), *FAST])
    assert isinstance(debug.exception, KeyError)


# ------------------------------------------------------------------------------------- inputs people have


def _flat_pairs(folder: Path, mask_suffix: str) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir()
    for i in range(3):
        image = rng.integers(90, 160, (80, 80, 3), dtype=np.uint8)
        mask = np.zeros((80, 80), np.uint8)
        mask[20:50, 30 + i:45 + i] = 255
        image[mask > 0] = 20
        Image.fromarray(image).save(folder / f"d{i}.jpg" if not mask_suffix else folder / f"d{i}.png")
        Image.fromarray(mask).save(folder / f"d{i}{mask_suffix}.png")
    return folder


@pytest.mark.parametrize("mask_suffix", ["", "_mask"])
def test_flat_same_stem_pairs_as_daad(tmp_path, mask_suffix):
    folder = _flat_pairs(tmp_path / "pairs", mask_suffix)
    before = _snapshot(folder)
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o1"), "--daad", str(folder), *FAST])
    _assert_clean_error(result, "--anomaly-class")
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o2"), "--daad", str(folder), "--anomaly-class",
                      "crack", "--source", "my_photos", *FAST, "--quota", "0,0,1"])
    assert result.exit_code == 0, result.output
    rows = datasets.load_dataset(str(tmp_path / "o2"), split="train")
    assert set(rows["source"]) == {"my_photos"} and set(rows["anomaly_class"]) == {"crack"}
    assert _snapshot(folder) == before


def test_images_masks_without_metadata_take_the_flags(tmp_path, anomaly_folder):
    (anomaly_folder / "metadata.csv").unlink()
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--daad", str(anomaly_folder),
                      "--anomaly-class", "stain", "--source", "lab", *FAST])
    assert result.exit_code == 0, result.output
    assert set(datasets.load_dataset(str(tmp_path / "o"), split="train")["anomaly_class"]) == {"stain"}


# ------------------------------------------------------------------------------------- say what happened


def test_exclude_source_that_matches_nothing_is_reported(tmp_path, anomaly_folder):
    result = _invoke(["build-synthetic", "--out", str(tmp_path / "o"), "--daad", str(anomaly_folder),
                      "--exclude-source", "crak_src", *FAST])
    assert result.exit_code == 0, result.output
    assert "warning: --exclude-source crak_src matched no source" in result.output
    assert "excluded sources: crak_src" not in result.output


def test_category_ignored_by_folder_target_is_reported(tmp_path, normal_folder):
    result = _invoke(["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--category", "grid",
                      "--out", str(tmp_path / "o"), *FAST[:2], "--quiet", "--quota", "1,0,0"])
    assert result.exit_code == 0, result.output
    assert "warning: --category grid is ignored by --target folder" in result.output
    assert "foreground: all" not in result.output  # the texture rule of MVTec grid is not applied


def test_rerun_says_already_complete_and_resume_says_where(tmp_path, normal_folder):
    out = tmp_path / "o"
    args = ["build-synthetic", "--target", "folder", "--root", str(normal_folder), "--out", str(out), "--shard-size",
            "1", *FAST]
    assert _invoke(args).exit_code == 0
    again = _invoke(args)
    assert again.exit_code == 0 and "already complete" in again.output
    assert "ms per pseudo anomaly" not in again.output
    (out / "data" / "train-00002-of-00003.parquet").unlink()
    resumed = _invoke(args)
    assert resumed.exit_code == 0 and "resuming at shard 3 of 3" in resumed.output
    assert "1 made earlier" not in resumed.output and "2 made earlier" in resumed.output


def test_cdm_generate_missing_embeds(tmp_path):
    pytest.importorskip("torch")
    result = _invoke(["cdm", "generate", "--embeds", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    _assert_clean_error(result, "--embeds")
    assert "no such folder" in result.output and "Repo id" not in result.output
    assert not (tmp_path / "o").exists()


def test_daad_stats_on_a_non_daad_folder(tmp_path):
    out = tmp_path / "run"
    assert _invoke(["build-synthetic", "--out", str(out), *FAST]).exit_code == 0
    result = _invoke(["daad", "stats", "--folder", str(out), "--out", str(tmp_path / "stats")])
    _assert_clean_error(result, "--folder")
    assert "not a built DAAD folder" in result.output and not (tmp_path / "stats").exists()


def test_evaluate_cai_synths_without_daad(tmp_path):
    pytest.importorskip("torch")
    result = _invoke(["evaluate", "--target", "folder", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    _assert_clean_error(result, "--daad", code=2)
    assert "--synth" in result.output and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------- other commands


def test_evaluate_refuses_someones_folder(tmp_path, normal_folder):
    pytest.importorskip("torch")
    out = _user_folder(tmp_path / "mine")
    before = _snapshot(out)
    test_root = tmp_path / "test"
    (test_root / "images" / "crack").mkdir(parents=True)
    (test_root / "masks" / "crack").mkdir(parents=True)
    first = sorted(p for p in Path(normal_folder).rglob("*") if p.is_file())[0]
    image = np.asarray(Image.open(first).convert("RGB"))
    Image.fromarray(image).save(test_root / "images" / "crack" / "x.png")
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(test_root / "masks" / "crack" / "x.png")
    result = _invoke(["evaluate", "--target", "folder", "--root", str(normal_folder), "--synth", "cutpaste",
                      "--test-root", str(test_root), "--out", str(out)])
    _assert_clean_error(result, "--out")
    assert _snapshot(out) == before


def test_daad_build_refuses_the_current_folder_and_someones_folder(tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    src = tmp_path / "src"
    src.mkdir()
    recipe.write_text(f"name: t\nsources:\n  - layout: pairs\n    root: {src}\n")
    out = _user_folder(tmp_path / "mine")
    before = _snapshot(out)
    for extra in ([], ["--overwrite"]):
        result = _invoke(["daad", "build", "--recipe", str(recipe), "--out", str(out), "--quiet", *extra])
        _assert_clean_error(result, "--out")
    assert _snapshot(out) == before
    monkeypatch.chdir(out)
    result = _invoke(["daad", "build", "--recipe", str(recipe), "--out", ".", "--quiet", "--overwrite"])
    _assert_clean_error(result, "--out")
    result = _invoke(["daad", "build", "--recipe", str(recipe), "--out", str(src), "--quiet"])
    _assert_clean_error(result, "--out")
    assert _snapshot(out) == before


def test_cdm_train_refuses_someones_folder(tmp_path):
    from cai.cdm.train import CDMTrainError, claim_train_folder

    class Cfg:
        train_data, base_model = str(tmp_path / "split"), "org/model"

    out = _user_folder(tmp_path / "mine")
    before = _snapshot(out)
    with pytest.raises(CDMTrainError, match="--output-dir"):
        claim_train_folder(out, Cfg())
    assert _snapshot(out) == before
    folder = claim_train_folder(tmp_path / "new", Cfg())
    assert folder.root == tmp_path / "new" and (tmp_path / "new" / MANIFEST).is_file()


# ------------------------------------------------------------------------------------- the policy module


def test_remove_listed_touches_nothing_else(tmp_path):
    folder = claim(tmp_path / "o", "build-synthetic")
    (tmp_path / "o" / "data").mkdir()
    for rel in ("data/a.parquet", "summary.json"):
        folder.add(tmp_path / "o" / rel)
        (tmp_path / "o" / rel).write_text("ours")
    (tmp_path / "o" / "data" / "b.txt").write_text("theirs")
    again = claim(tmp_path / "o", "build-synthetic", overwrite=True)
    assert not (tmp_path / "o" / "data" / "a.parquet").exists() and not (tmp_path / "o" / "summary.json").exists()
    assert (tmp_path / "o" / "data" / "b.txt").read_text() == "theirs" and again.files == set()
    with pytest.raises(OutputFolderError, match="DAAD build"):
        claim(tmp_path / "o", "daad-build")


def test_legacy_folder_is_adopted_only_with_its_marker_and_names(tmp_path):
    old = tmp_path / "old"
    (old / ".cai").mkdir(parents=True)
    (old / ".cai" / "run.json").write_text("{}")
    (old / "summary.json").write_text("{}")
    folder = claim(old, "build-synthetic", legacy_marker=".cai/run.json", legacy_names=(".cai", "summary.json"))
    assert folder.resumed and folder.files == {".cai/run.json", "summary.json"}
    other = tmp_path / "other"
    (other / ".cai").mkdir(parents=True)
    (other / ".cai" / "run.json").write_text("{}")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="notes.txt"):
        claim(other, "build-synthetic", legacy_marker=".cai/run.json", legacy_names=(".cai", "summary.json"))
    assert not (other / MANIFEST).exists()
    assert sorted(os.listdir(other)) == [".cai", "notes.txt"]


def test_evaluate_reads_every_input_before_writing(tmp_path):
    from click.testing import CliRunner

    from cai.cli import main

    out = tmp_path / "eval_out"
    for args in (["--synth", "cai-nope"], ["--root", str(tmp_path / "missing")], ["--daad", str(tmp_path / "nothing")]):
        base = {"--synth": "cai", "--root": str(tmp_path / "normals"), "--daad": str(tmp_path / "aset")}
        base.update(dict(zip(args[::2], args[1::2])))
        cmd = ["evaluate", "--target", "folder", "--out", str(out), "--test-root", str(tmp_path / "test")]
        for k, v in base.items():
            cmd += [k, v]
        res = CliRunner().invoke(main, cmd)
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert not out.exists(), (args, res.output)
