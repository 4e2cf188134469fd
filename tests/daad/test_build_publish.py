import hashlib
import json
import os
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from daad_tools import build as build_mod
from daad_tools.build import BuildError, build_daad, read_columns
from daad_tools.cli import daad
from daad_tools.publish import PublishError, push_daad
from daad_tools.records import CLASSES, DAAD_FEATURES, RawAnomaly
from daad_tools.stats import daad_stats

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------- fake sources


def _photo(seed, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    base = 100 + 50 * np.sin(rows / rng.uniform(4, 12)) * np.cos(cols / rng.uniform(4, 12))
    image = np.stack([base, base * 0.7 + 30, base * 0.5 + 60], axis=2)
    for _ in range(4):
        cv2.circle(image, (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0]))), int(rng.integers(4, 14)),
                   tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _save(path: Path, image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    return path


def _box(shape, r0, c0, r1, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


class FakeSources:
    """Two tiny sources on disk: ``alpha`` (CC-BY-4.0) and ``beta`` (CC-BY-NC-SA-4.0, holding an
    exact copy of alpha/a0.png and a grey JPEG)."""

    def __init__(self, root: Path):
        self.root = root
        self.calls = Counter()
        s = (48, 64)
        two = _box(s, 5, 5, 15, 20) | _box(s, 30, 30, 40, 50)
        self.items = {
            "alpha": [
                ("a0.png", _photo(0), _box(s, 10, 10, 25, 30), "scr", 0, []),
                ("a1.png", _photo(1), two, "crk", 0, []),
                ("a2.png", _photo(2), np.zeros(s, bool), "scr", 0, ["mask_empty"]),
                ("a3.png", _photo(3), _box(s, 0, 0, 12, 12), "stn", 0, ["mask_soft_binarized"]),
                ("multi.png", _photo(4), _box(s, 20, 5, 30, 25), "scr", 1, []),
                ("multi.png", _photo(4), _box(s, 2, 40, 14, 60), "stn", 2, []),
                ("tiny.png", _photo(5), _box(s, 20, 20, 22, 22), "crk", 0, []),
            ],
            "beta": [
                ("copy_of_a0.png", _photo(0), _box(s, 11, 11, 26, 31), "crk", 0, []),
                ("b1.png", _photo(6), _box(s, 10, 20, 30, 40), "crk", 0, []),
                ("grey.jpg", _photo(7)[..., 0], _box(s, 5, 5, 20, 20), "stn", 0, []),
            ],
        }
        for source, items in self.items.items():
            for name, image, *_ in items:
                _save(root / source / name, image)

    def iter_source(self, layout, root, options, stats):
        self.calls[layout] += 1
        if options.get("fail"):
            raise RuntimeError("importer crashed")
        license = {"alpha": "CC-BY-4.0", "beta": "CC-BY-NC-SA-4.0"}[layout]
        for name, _, mask, label, component, notes in self.items[layout]:
            yield RawAnomaly(source=layout, original_file=name, image_path=Path(root) / name, mask=mask.copy(),
                             original_label=options.get("relabel", {}).get(label, label), license=license,
                             source_domain="test", component=component, notes=list(notes))


class UnmappedLabel(KeyError):
    pass


def _fake_taxonomy():
    def load_taxonomy(path=None, overrides=None):
        return {"scr": "scratch", "crk": "crack", "stn": "stain", "gone": "exclude"}

    def map_records(records, taxonomy, unmapped="error"):
        out, missing = [], Counter()
        for r in records:
            if r.original_label not in taxonomy:
                missing[(r.source, r.original_label)] += 1
            elif taxonomy[r.original_label] != "exclude":
                out.append((r, taxonomy[r.original_label]))
        if missing and unmapped == "error":
            raise UnmappedLabel(list(missing))
        return out, {"mapped": len(out), "unmapped": dict(missing), "skipped": sum(missing.values())}

    return types.SimpleNamespace(load_taxonomy=load_taxonomy, map_records=map_records, UnmappedLabel=UnmappedLabel)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    sources = FakeSources(tmp_path / "src")
    monkeypatch.setattr(build_mod, "_iter_source", sources.iter_source)
    monkeypatch.setattr(build_mod, "_taxonomy_module", _fake_taxonomy)
    return sources


def _recipe(tmp_path, name="recipe.yaml", order=("alpha", "beta"), extra="", source_extra=None, shard_size=2):
    source_extra = source_extra or {}
    lines = [f"name: Test DAAD\nshard_size: {shard_size}\n{extra}\nsources:"]
    for s in order:
        lines.append(f"  - layout: {s}\n    root: src/{s}\n" + "".join(f"    {line}\n" for line in source_extra.get(s, [])))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(out, columns=("id", "content_hash", "anomaly_class", "source", "license", "qa_flags", "bbox")):
    return read_columns(out, list(columns)).to_pylist()


def _digest(out):
    """Every published value (image and mask bytes included), in row order."""
    table = read_columns(out)
    return [hashlib.sha256(json.dumps(row, default=lambda b: b.hex(), sort_keys=True).encode()).hexdigest()
            for row in table.to_pylist()]


# ----------------------------------------------------------------------------------- build


def test_build_rows_qa_and_report(fake, tmp_path):
    report = build_daad(_recipe(tmp_path), tmp_path / "out", progress=False)
    rows = {r["id"]: r for r in _rows(tmp_path / "out")}
    assert sorted(rows) == ["alpha/a0.png", "alpha/a1.png", "alpha/a3.png", "alpha/multi.png#scr",
                            "alpha/multi.png#stn", "beta/b1.png", "beta/grey.jpg"]
    assert rows["alpha/a3.png"]["qa_flags"] == ["touches_border", "soft_edges"]
    assert rows["alpha/a0.png"]["bbox"] == [10, 10, 25, 30]
    assert CLASSES[rows["alpha/multi.png#stn"]["anomaly_class"]] == "stain"
    assert rows["beta/b1.png"]["license"] == "CC-BY-NC-SA-4.0"
    rejected = {r["id"]: r for r in report["rejected_rows"]}
    assert rejected["alpha/a2.png"]["reasons"] == ["empty"]
    assert rejected["alpha/tiny.png"]["reasons"] == ["trivial"]
    assert rejected["beta/copy_of_a0.png"]["reasons"] == ["exact_duplicate"]
    assert rejected["beta/copy_of_a0.png"]["duplicate_of"] == "alpha/a0.png"
    saved = json.loads((tmp_path / "out" / "qa_report.json").read_text())
    assert {r["id"] for r in saved["rejected_rows"]} == set(rejected)
    md = (tmp_path / "out" / "qa_report.md").read_text()
    assert all(f"`{i}`" in md for i in rejected)
    assert report["per_source"]["beta"] == {"rows": 3, "published": 2, "rejected": 1, "flags": {"exact_duplicate": 1}}
    assert report["shards"] == 4 and len(list((tmp_path / "out" / "data").glob("train-*-of-00004.parquet"))) == 4
    # masks are lossless single-channel PNG 0/255 of the image's size; the grey JPEG is embedded as is
    table = read_columns(tmp_path / "out", ["id", "image", "mask", "width", "height"]).to_pylist()
    for row in table:
        mask = cv2.imdecode(np.frombuffer(row["mask"]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255} and mask.shape == (row["height"], row["width"])
    grey = next(r for r in table if r["id"] == "beta/grey.jpg")
    assert grey["image"]["bytes"] == (tmp_path / "src" / "beta" / "grey.jpg").read_bytes()


def test_loads_with_stock_datasets_in_another_process_and_feeds_cai(fake, tmp_path):
    build_daad(_recipe(tmp_path), tmp_path / "daad", progress=False)
    script = """
import json, datasets
from daad_tools.records import DAAD_FEATURES
from cai.anomaly_set import load_anomaly_set, prepare_patterns
ds = datasets.load_dataset("daad", split="train")
patterns, report = prepare_patterns(load_anomaly_set("daad"))
print(json.dumps({"schema_ok": ds.features == DAAD_FEATURES, "ids": list(ds["id"]), "mode": ds[0]["image"].mode,
                  "patterns": len(patterns), "skipped": report["skipped"], "licenses": report.get("licenses")}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf_cache")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["schema_ok"]
    assert result["ids"] == [r["id"] for r in _rows(tmp_path / "daad")]
    assert result["mode"] == "RGB"
    assert result["patterns"] == 7 and result["skipped"] == {}
    assert result["licenses"] == {"alpha": "CC-BY-4.0", "beta": "CC-BY-NC-SA-4.0"}


def test_ids_are_stable_and_do_not_depend_on_row_order(fake, tmp_path):
    build_daad(_recipe(tmp_path), tmp_path / "one", progress=False)
    build_daad(_recipe(tmp_path), tmp_path / "two", progress=False)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    first = {r["id"]: r["content_hash"] for r in _rows(tmp_path / "one")}
    # beta first: beta's copy of a0 is now the kept one, every other row keeps its id and content
    build_daad(_recipe(tmp_path, "reversed.yaml", order=("beta", "alpha")), tmp_path / "rev", progress=False)
    reversed_rows = {r["id"]: r["content_hash"] for r in _rows(tmp_path / "rev")}
    assert set(reversed_rows) == set(first) - {"alpha/a0.png"} | {"beta/copy_of_a0.png"}
    assert all(reversed_rows[i] == h for i, h in first.items() if i in reversed_rows)


def test_split_components_rows_and_ids(fake, tmp_path):
    recipe = _recipe(tmp_path, extra="split_components: true\nmin_component_area: 20")
    report = build_daad(recipe, tmp_path / "out", progress=False)
    rows = {r["id"]: r for r in _rows(tmp_path / "out")}
    assert rows["alpha/a1.png@1"]["bbox"] == [5, 5, 15, 20]
    assert rows["alpha/a1.png@2"]["bbox"] == [30, 30, 40, 50]
    assert "alpha/a1.png" not in rows and "alpha/multi.png#scr@1" in rows
    assert rows["alpha/a1.png@1"]["content_hash"] != rows["alpha/a1.png@2"]["content_hash"]
    assert report["components_dropped"] == {"alpha": 1}  # tiny.png's 4-px defect


_REAL_WRITE_SHARD = build_mod._write_shard


def _failing_writer(monkeypatch, after: int):
    """Replace the shard writer: record the shards written, interrupt before writing the shard after ``after``."""
    real, calls = _REAL_WRITE_SHARD, []

    def write(tmp, columns):
        if len(calls) == after:  # killed halfway through writing this shard
            tmp.write_bytes(b"PAR1 half a shard")
            raise KeyboardInterrupt("simulated interruption")
        calls.append(tmp.name)
        real(tmp, columns)

    monkeypatch.setattr(build_mod, "_write_shard", write)
    return calls


def test_interrupted_build_resumes_without_loss_or_duplicates(fake, tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)
    build_daad(recipe, tmp_path / "clean", progress=False)
    out = tmp_path / "out"
    _failing_writer(monkeypatch, after=1)
    with pytest.raises(KeyboardInterrupt):
        build_daad(recipe, out, progress=False)
    shards = sorted((out / "data").glob("*"))
    assert [p.name for p in shards] == ["train-00000-of-00004.parquet"]  # no partial file in data/
    first_inode = shards[0].stat().st_ino
    imports_before = dict(fake.calls)
    calls = _failing_writer(monkeypatch, after=99)
    build_daad(recipe, out, progress=False)
    assert calls == ["train-00001-of-00004.parquet", "train-00002-of-00004.parquet", "train-00003-of-00004.parquet"]
    assert (out / "data" / "train-00000-of-00004.parquet").stat().st_ino == first_inode  # kept, not rewritten
    assert dict(fake.calls) == imports_before  # the cached first pass is reused
    assert list((out / ".daad" / "tmp").iterdir()) == []  # the half-written shard is gone
    assert _digest(out) == _digest(tmp_path / "clean")
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == len(set(ids)) == 7
    # a finished build rerun is a no-op for the shards
    calls = _failing_writer(monkeypatch, after=99)
    build_daad(recipe, out, progress=False)
    assert calls == []


def test_interrupted_first_pass_keeps_finished_sources(fake, tmp_path):
    recipe = _recipe(tmp_path, source_extra={"beta": ["options: {fail: true}"]})
    with pytest.raises(RuntimeError, match="importer crashed"):
        build_daad(recipe, tmp_path / "out", progress=False)
    assert fake.calls == {"alpha": 1, "beta": 1}
    with pytest.raises(RuntimeError, match="importer crashed"):
        build_daad(recipe, tmp_path / "out", progress=False)
    assert fake.calls == {"alpha": 1, "beta": 2}  # alpha's finished first pass was not redone


def test_other_recipe_in_the_same_folder_is_refused_unless_overwrite(fake, tmp_path):
    out = tmp_path / "out"
    build_daad(_recipe(tmp_path), out, progress=False)
    other = _recipe(tmp_path, "other.yaml", shard_size=3)
    with pytest.raises(BuildError, match="another DAAD build"):
        build_daad(other, out, progress=False)
    report = build_daad(other, out, overwrite=True, progress=False)
    assert report["shards"] == 3 and len(list((out / "data").glob("*.parquet"))) == 3
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="holds no DAAD build"):
        build_daad(other, foreign, progress=False)
    with pytest.raises(BuildError, match="does not write"):
        build_daad(other, foreign, overwrite=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_licence_filter_and_unmapped_labels(fake, tmp_path):
    report = build_daad(_recipe(tmp_path, extra="exclude_licenses: [cc-by-nc-sa-4.0]"), tmp_path / "a", progress=False)
    assert {r["source"] for r in _rows(tmp_path / "a")} == {"alpha"}
    assert report["excluded_license"] == {"beta": 3}
    relabel = {"alpha": ["options: {relabel: {crk: weird}}"]}
    with pytest.raises(BuildError, match=r"does not map: alpha/weird \(2\)"):
        build_daad(_recipe(tmp_path, "r2.yaml", source_extra=relabel), tmp_path / "b", progress=False)
    report = build_daad(_recipe(tmp_path, "r2.yaml", source_extra=relabel), tmp_path / "c", unmapped="skip",
                        progress=False)
    assert report["unmapped"] == {"alpha": 2}
    assert report["sources"][0]["taxonomy_report"]["unmapped"] == {"alpha/weird": 2}  # JSON-safe keys
    assert "alpha/a1.png" not in {r["id"] for r in _rows(tmp_path / "c")}
    relabel = {"alpha": ["options: {relabel: {crk: gone}}"]}
    report = build_daad(_recipe(tmp_path, "r3.yaml", source_extra=relabel,
                                extra="taxonomy: {overrides: {}}"), tmp_path / "d", progress=False)
    assert report["unmapped"] == {} and report["taxonomy_excluded"] == {"alpha": 2}


def test_recipe_errors_are_named(fake, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {layout: alpha, root: src/alpha, colour: red}\n")
    with pytest.raises(BuildError, match="colour"):
        build_daad(bad, tmp_path / "out", progress=False)
    bad.write_text("sources:\n  - {layout: alpha, root: src/nowhere}\n")
    with pytest.raises(BuildError, match="does not exist"):
        build_daad(bad, tmp_path / "out2", progress=False)
    bad.write_text("qa: {reject: [shiny]}\nsources:\n  - {layout: alpha, root: src/alpha}\n")
    with pytest.raises(BuildError, match="shiny"):
        build_daad(bad, tmp_path / "out3", progress=False)


def test_card_content(fake, tmp_path):
    from huggingface_hub import DatasetCard

    build_daad(_recipe(tmp_path), tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "README.md").read_text()
    header = text.split("---")[1]
    assert "configs:" not in header and "license: other" in header and "image-segmentation" in header
    card = DatasetCard.load(tmp_path / "out" / "README.md")
    assert card.data.pretty_name == "Test DAAD"
    assert "| `crack` | 2 |" in text and "| `scratch` | 2 |" in text and "| `stain` | 3 |" in text
    assert "| `pits` | 0 |" in text
    assert "| `alpha` | 5 | CC-BY-4.0 |" in text and "| `beta` | 2 | CC-BY-NC-SA-4.0 |" in text
    assert "2501.15211" in text and "@article{wang2025stones" in text
    assert "10 candidate rows: 7 published, 3 rejected" in text
    assert "| `exact_duplicate` | 1 | 1 |" in text
    assert "shard_size: 2" in text  # the recipe is quoted
    assert 'load_dataset("out"' in text


# ----------------------------------------------------------------------------------- curation


def _write_curation(folder: Path, rejected=(), reclassed=None, masks=None) -> None:
    """curation.json (+ curation_masks/*.png) in the format `daad sync` writes (daad_tools.curation)."""
    (folder / "curation_masks").mkdir(parents=True, exist_ok=True)
    doc = {"format": "cai-hub/daad-curation", "version": 1, "updated": "2025-01-01T00:00:00+00:00",
           "rejected": {rid: {"reason": "curation"} for rid in rejected},
           "reclassed": {rid: {"from": "?", "to": cls} for rid, cls in (reclassed or {}).items()}, "masks": {}}
    for i, (rid, mask) in enumerate((masks or {}).items()):
        png = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))[1].tobytes()
        (folder / "curation_masks" / f"m{i}.png").write_bytes(png)
        doc["masks"][rid] = {"path": f"curation_masks/m{i}.png", "sha256": hashlib.sha256(png).hexdigest(),
                             "kind": "replaced"}
    (folder / "curation.json").write_text(json.dumps(doc))


def _curation_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in [folder / "curation.json",
                                                                       *(folder / "curation_masks").iterdir()]}


_CURATED_MASK = _box((48, 64), 30, 35, 44, 60)  # replaces alpha/a3.png's border-touching box


def _assert_curated(out: Path, report: dict) -> None:
    rows = {r["id"]: r for r in read_columns(out, ["id", "anomaly_class", "mask", "bbox", "mask_area_ratio",
                                                   "content_hash", "qa_flags"]).to_pylist()}
    assert sorted(rows) == ["alpha/a0.png", "alpha/a3.png", "alpha/multi.png#scr", "alpha/multi.png#stn",
                            "beta/b1.png", "beta/grey.jpg"]  # alpha/a1.png rejected
    assert CLASSES[rows["beta/b1.png"]["anomaly_class"]] == "scratch"  # was crack
    a3 = rows["alpha/a3.png"]
    mask = cv2.imdecode(np.frombuffer(a3["mask"]["bytes"], np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask > 0, _CURATED_MASK)
    assert a3["bbox"] == [30, 35, 44, 60] and a3["mask_area_ratio"] == pytest.approx(_CURATED_MASK.mean())
    assert a3["content_hash"] == build_mod.qa_mod.content_hash(_photo(3), _CURATED_MASK)
    assert a3["qa_flags"] == ["soft_edges"]  # no longer touches_border; the importer's note still counts
    curated = [r for r in report["rejected_rows"] if r["id"] == "alpha/a1.png"]
    assert curated == [{"id": "alpha/a1.png", "source": "alpha", "anomaly_class": "crack",
                        "reasons": ["curated_reject"], "flags": [], "duplicate_of": None}]
    assert report["rejected_by_reason"]["curated_reject"] == 1 and report["published"] == 6
    assert report["curation"]["unknown_ids"] == ["alpha/gone.png"]
    assert json.loads((out / "qa_report.json").read_text())["rejected_by_reason"] == report["rejected_by_reason"]
    assert "`curated_reject`" in (out / "qa_report.md").read_text()
    assert "| `curated_reject` | 1 | 1 |" in (out / "README.md").read_text()


def test_build_honours_curation_on_rebuild_overwrite_and_resume(fake, tmp_path, monkeypatch):
    recipe, out = _recipe(tmp_path), tmp_path / "out"
    build_daad(recipe, out, progress=False)
    _write_curation(out, rejected=["alpha/a1.png", "alpha/gone.png"], reclassed={"beta/b1.png": "scratch"},
                    masks={"alpha/a3.png": _CURATED_MASK})
    files = _curation_files(out)
    # a reference: a fresh folder holding only the curation (counts as empty)
    ref = tmp_path / "ref"
    ref.mkdir()
    for name, data in files.items():
        (ref / name).parent.mkdir(parents=True, exist_ok=True)
        (ref / name).write_bytes(data)
    _assert_curated(ref, build_daad(recipe, ref, progress=False))

    # the same recipe in the same folder: the first pass is reused, every shard rewritten
    imports = dict(fake.calls)
    calls = _failing_writer(monkeypatch, after=99)
    _assert_curated(out, build_daad(recipe, out, progress=False))
    assert dict(fake.calls) == imports and len(calls) == 3
    assert _digest(out) == _digest(ref) and _curation_files(out) == files

    # --overwrite: everything but the reviewer's files is rebuilt
    _assert_curated(out, build_daad(recipe, out, overwrite=True, progress=False))
    assert _digest(out) == _digest(ref) and _curation_files(out) == files

    # interrupted after one shard (under --overwrite), then resumed without it
    _failing_writer(monkeypatch, after=1)
    with pytest.raises(KeyboardInterrupt):
        build_daad(recipe, out, overwrite=True, progress=False)
    assert _curation_files(out) == files
    calls = _failing_writer(monkeypatch, after=99)
    _assert_curated(out, build_daad(recipe, out, progress=False))
    assert calls == ["train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]
    assert _digest(out) == _digest(ref) and _curation_files(out) == files


def test_changed_curation_rewrites_every_shard(fake, tmp_path, monkeypatch):
    recipe, out = _recipe(tmp_path), tmp_path / "out"
    build_daad(recipe, out, progress=False)
    # like `daad sync`: a shard edited in place (here: junk bytes) and the decision recorded
    (out / "data" / "train-00000-of-00004.parquet").write_bytes(b"PAR1 edited by sync")
    _write_curation(out, reclassed={"beta/grey.jpg": "hole"})  # a row of the last shard
    calls = _failing_writer(monkeypatch, after=99)
    build_daad(recipe, out, progress=False)
    assert len(calls) == 4  # not only the shard holding the reclassed row
    rows = {r["id"]: CLASSES[r["anomaly_class"]] for r in _rows(out)}
    assert len(rows) == 7 and rows["beta/grey.jpg"] == "hole"
    calls = _failing_writer(monkeypatch, after=99)
    build_daad(recipe, out, progress=False)
    assert calls == []  # unchanged curation: a finished build stays finished
    # a mask file edited by hand is a change too
    _write_curation(out, masks={"alpha/a0.png": _box((48, 64), 10, 10, 25, 31)})
    calls = _failing_writer(monkeypatch, after=99)
    report = build_daad(recipe, out, progress=False)
    assert len(calls) == 4 and report["curation"]["masks"] == 1
    assert {r["id"]: r["bbox"] for r in _rows(out)}["alpha/a0.png"] == [10, 10, 25, 31]


def test_curation_errors_and_curated_mask_qa(fake, tmp_path):
    recipe, out = _recipe(tmp_path), tmp_path / "out"
    build_daad(recipe, out, progress=False)
    before = _digest(out)
    _write_curation(out, reclassed={"beta/b1.png": "rust"})
    with pytest.raises(BuildError, match="rust"):
        build_daad(recipe, out, overwrite=True, progress=False)
    assert _digest(out) == before  # nothing deleted
    _write_curation(out, masks={"beta/b1.png": np.ones((10, 10), bool)})
    with pytest.raises(BuildError, match="10x10"):
        build_daad(recipe, out, progress=False)
    (out / "curation.json").write_text("{not json")
    with pytest.raises(BuildError, match="not valid JSON"):
        build_daad(recipe, out, progress=False)
    # a curated mask is QA'd like any mask: a tiny one is rejected, unless qa.keep_ids publishes it
    _write_curation(out, masks={"beta/b1.png": _box((48, 64), 20, 20, 22, 22)})
    report = build_daad(recipe, out, progress=False)
    assert [r["reasons"] for r in report["rejected_rows"] if r["id"] == "beta/b1.png"] == [["trivial"]]
    keep = _recipe(tmp_path, "keep.yaml", extra="qa: {keep_ids: [beta/b1.png]}")
    report = build_daad(keep, out, overwrite=True, progress=False)
    assert report["overridden"] == ["beta/b1.png"]
    assert {r["id"]: r["qa_flags"] for r in _rows(out)}["beta/b1.png"] == ["trivial"]


# ----------------------------------------------------------------------------------- publish + stats


class FakeApi:
    calls = []
    logged_in = True

    def __init__(self, token=None):
        self.token = token

    def whoami(self):
        if not FakeApi.logged_in:
            raise OSError("no token")
        return {"name": "tester"}

    def create_repo(self, repo_id, **kwargs):
        FakeApi.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, **kwargs):
        folder = Path(folder_path)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        rows = read_columns(folder, ["id", "license"]).to_pylist()
        FakeApi.calls.append(("upload_folder", files, kwargs, rows, (folder / "README.md").read_text()))
        return types.SimpleNamespace(commit_url=f"https://hub/{kwargs['repo_id']}/commit/1")


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeApi.calls, FakeApi.logged_in = [], True
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def test_push_daad_uploads_the_folder(fake, fake_hub, tmp_path):
    out = tmp_path / "daad"
    build_daad(_recipe(tmp_path), out, progress=False)
    before = sorted(p.name for p in out.rglob("*"))
    result = push_daad(out, "org/daad", private=True)
    (name, repo, kwargs), (_, files, upload, rows, readme) = fake_hub.calls
    assert (name, repo, kwargs) == ("create_repo", "org/daad", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert upload["repo_id"] == "org/daad" and upload["repo_type"] == "dataset"
    assert upload["delete_patterns"] == ["data/*.parquet", "mosaics/*.png"]
    assert set(upload["allow_patterns"]) == {"data/*.parquet", "README.md", "qa_report.json", "qa_report.md",
                                             "mosaics/*.png"}
    assert files == ["README.md", *[f"data/train-0000{i}-of-00004.parquet" for i in range(4)],
                     *[f for f in files if f.startswith("mosaics/")], "qa_report.json", "qa_report.md"]
    assert any(f.startswith("mosaics/mosaic_") for f in files)
    assert len(rows) == 7 and 'load_dataset("org/daad"' in readme
    assert result["rows"] == 7 and result["commit"].endswith("/commit/1")
    assert sorted(p.name for p in out.rglob("*")) == before  # the local folder is unchanged


def test_push_with_licence_filter_pushes_a_filtered_copy(fake, fake_hub, tmp_path):
    out = tmp_path / "daad"
    build_daad(_recipe(tmp_path), out, progress=False)
    result = push_daad(out, "org/daad-open", exclude_licenses=["CC-BY-NC-SA-4.0"])
    _, files, upload, rows, readme = fake_hub.calls[-1]
    assert {r["license"] for r in rows} == {"CC-BY-4.0"} and len(rows) == 5
    assert result["removed"] == {"CC-BY-NC-SA-4.0": 2} and result["rows"] == 5
    assert "| `beta` | 2 | CC-BY-NC-SA-4.0 |" not in readme and "| `alpha` | 5 | CC-BY-4.0 |" in readme
    assert "| CC-BY-NC-SA-4.0 |" not in readme  # the licence table counts the pushed rows
    assert "leaves out the rows under CC-BY-NC-SA-4.0 (2 of 7)" in readme
    assert len(_rows(out)) == 7  # local folder untouched
    with pytest.raises(PublishError, match="no row"):
        push_daad(out, "org/x", exclude_licenses=["CC-BY-4.0", "cc-by-nc-sa-4.0"])


def test_push_refuses_without_login_or_build(fake, fake_hub, tmp_path):
    out = tmp_path / "daad"
    build_daad(_recipe(tmp_path), out, progress=False)
    fake_hub.logged_in = False
    with pytest.raises(PublishError, match="not logged in"):
        push_daad(out, "org/daad")
    assert fake_hub.calls == []
    with pytest.raises(PublishError, match="README"):
        push_daad(tmp_path, "org/daad")


def test_stats_counts_and_mosaics(fake, tmp_path):
    build_daad(_recipe(tmp_path), tmp_path / "out", progress=False)
    lines = []
    stats = daad_stats(tmp_path / "out", tmp_path / "stats", echo=lines.append)
    assert stats["rows"] == 7
    assert stats["per_class"]["stain"] == 3 and stats["per_class"]["crack"] == 2 and stats["per_class"]["pits"] == 0
    assert stats["per_source"] == {"alpha": 5, "beta": 2}
    # bbox long sides: a0 20, a1 45 (two boxes), a3 12, multi 20 + 20, b1 20, grey 15 px
    assert stats["per_scale"] == {"small": 6, "medium": 1, "large": 0}
    assert stats["per_class_scale"]["crack"] == {"small": 1, "medium": 1, "large": 0}
    assert set(stats["mosaics"]) == {"crack", "scratch", "stain"}
    mosaic = cv2.imread(stats["mosaics"]["stain"])
    assert mosaic.shape == (2 + 130, 2 + 3 * 130, 3)
    assert (mosaic[..., 2] > 200).any() and any("per class" in line for line in lines)
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["per_source"] == {"alpha": 5, "beta": 2}


# ----------------------------------------------------------------------------------- CLI


def test_cli_build_stats_push(fake, fake_hub, tmp_path):
    runner = CliRunner()
    recipe, out = _recipe(tmp_path), tmp_path / "daad"
    result = runner.invoke(daad, ["build", "--recipe", str(recipe), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "7 of 10 rows published, 3 rejected" in result.output
    assert "exact_duplicate 1" in result.output
    result = runner.invoke(daad, ["stats", "--folder", str(out), "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert "per source: alpha 5, beta 2" in result.output
    result = runner.invoke(daad, ["push", "--folder", str(out), "--repo", "org/daad", "--exclude-license",
                                  "CC-BY-NC-SA-4.0", "--private"])
    assert result.exit_code == 0, result.output
    assert "pushed 5 rows to org/daad" in result.output
    assert fake_hub.calls[0][2]["private"] is True


def test_cli_errors(fake, fake_hub, tmp_path):
    runner = CliRunner()
    recipe, out = _recipe(tmp_path), tmp_path / "daad"
    result = runner.invoke(daad, ["push", "--folder", str(tmp_path), "--repo", "not a repo"])
    assert result.exit_code == 2 and "ORG/daad" in result.output
    result = runner.invoke(daad, ["build", "--recipe", str(tmp_path / "src" / "alpha" / "a0.png"), "--out", str(out)])
    assert result.exit_code == 2 and "YAML" in result.output
    runner.invoke(daad, ["build", "--recipe", str(recipe), "--out", str(out), "--quiet"])
    other = _recipe(tmp_path, "other.yaml", shard_size=5)
    result = runner.invoke(daad, ["build", "--recipe", str(other), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "another DAAD build" in result.output
    result = runner.invoke(daad, ["build", "--recipe", str(other), "--out", str(out), "--quiet", "--overwrite"])
    assert result.exit_code == 0, result.output
    fake_hub.logged_in = False
    result = runner.invoke(daad, ["push", "--folder", str(out), "--repo", "org/daad"])
    assert result.exit_code == 1 and "not logged in" in result.output


# ----------------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_real_crack_sources_dedup_and_build(shared_data, tmp_path):
    pytest.importorskip("cai.layouts")
    pytest.importorskip("daad_tools.taxonomy")
    recipe = tmp_path / "real.yaml"
    recipe.write_text(f"""
name: DAAD real subset
shard_size: 100
sources:
  - layout: supervisely
    root: {shared_data}/sources/cracks_mixed
  - layout: crackforest
    root: {shared_data}/sources/crackforest
  - layout: pairs
    root: {shared_data}/sources/fabric_hsst/dataset_samples
    options: {{images: images, masks: annotations, label: stain, domain: fabric}}
    source: fabric_hsst
    license: Apache-2.0
""")
    report = build_daad(recipe, tmp_path / "daad", progress=False)
    rejected = {r["id"]: r for r in report["rejected_rows"]}
    cfd = [r for r in rejected.values() if r["source"] == "crackforest"]
    # every CFD photo with a ground truth is also in cracks_mixed: the crackforest copies are flagged
    assert report["per_source"]["crackforest"]["published"] == 0
    assert len(cfd) == report["per_source"]["crackforest"]["rows"] > 100
    assert all(r["reasons"] == ["exact_duplicate"] and r["duplicate_of"].startswith("cracks_mixed/") for r in cfd)
    assert report["rejected_by_reason"]["empty"] >= 11  # cracks_mixed's empty masks
    rows = _rows(tmp_path / "daad")
    assert len({r["id"] for r in rows}) == len(rows) == report["published"]
    assert {CLASSES[r["anomaly_class"]] for r in rows} <= {"crack", "stain"}
    assert pq.read_schema(next((tmp_path / "daad" / "data").glob("*.parquet"))).names == list(DAAD_FEATURES)
