"""DAAD mask refinement step (coarse_mask, mask_refined, agreement with reference masks) and the
per-source border policy, on hand-made arrays and through a real build of two tiny pairs sources."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cai.engine.refine import refine_defect_mask
from daad_tools import border as border_mod
from daad_tools import qa as qa_mod
from daad_tools.build import BuildError, build_daad, load_recipe, read_columns
from daad_tools.refine import RefineConfig, agreement, iou, mean_width, refine_row, row_refinement, within


def line_image(seed=0, shape=(64, 64)):
    """Grey noise (std 3 around 120) with a dark 2-px line on rows 30-31, cols 10-53."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(120, 3, shape), 0, 255).astype(np.uint8)
    image[30:32, 10:54] = 60
    fine = np.zeros(shape, bool)
    fine[30:32, 10:54] = True
    coarse = np.zeros(shape, bool)
    coarse[24:38, 6:58] = True
    return image, fine, coarse


# --------------------------------------------------------------------------- pure functions
def test_refine_row_equals_the_whole_image_refinement_and_finds_the_line():
    image, fine, coarse = line_image()
    rgb = np.repeat(image[..., None], 3, axis=2)
    refined, share = refine_row(rgb, coarse)
    assert np.array_equal(refined, refine_defect_mask(rgb, coarse))
    assert share == pytest.approx(refined.sum() / coarse.sum())
    assert iou(refined, fine) > 0.8 and iou(coarse, fine) < 0.2
    assert not (refined & ~coarse).any()


def test_row_refinement_flags_a_wide_mask_but_not_a_fine_one():
    image, fine, coarse = line_image(1)
    config = RefineConfig(enabled=True)
    wide = row_refinement(image, coarse, config)
    assert wide["flags"] == ["coarse_mask", "refined_mask"] and wide["visible_share"] < 0.5
    assert wide["mask_refined"] is not None and iou(wide["mask_refined"], fine) > 0.8
    thin = row_refinement(image, fine, config)
    assert "coarse_mask" not in thin["flags"] and thin["visible_share"] > 0.5
    assert row_refinement(image, coarse, RefineConfig(enabled=True, store="none"))["mask_refined"] is None
    assert row_refinement(image, coarse, RefineConfig(enabled=False)) == {"visible_share": None, "flags": [],
                                                                         "mask_refined": None}
    with pytest.raises(ValueError, match="empty"):
        refine_row(image, np.zeros_like(fine))


def test_mean_width_iou_within_and_agreement_known_values():
    line = np.zeros((9, 30), bool)
    line[4, 2:28] = True
    band = np.zeros((40, 60), bool)
    band[10:30, 5:55] = True
    assert mean_width(line) == 1.0 and mean_width(np.zeros((3, 3), bool)) == 0.0 and mean_width(band) > 8
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12) and iou(a, a) == 1.0
    assert within(a, b, px=1) == 1.0 and within(b, a, px=1) == 1.0 and within(a, np.zeros_like(a)) == 0.0
    result = agreement([("x", a, b, b), ("y", a, None, a)])
    assert result["pairs"] == 2 and result["iou_before"]["mean"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)
    assert result["iou_after"]["mean"] == 1.0 and result["improved"] == 1 and result["rows"]["x"] == [0.3333, 1.0]
    assert agreement([]) == {"pairs": 0}


def test_refine_config_checks():
    with pytest.raises(ValueError, match="store"):
        RefineConfig(store="some")
    with pytest.raises(ValueError, match="unknown"):
        RefineConfig.from_dict({"enabled": True, "kk": 1})
    with pytest.raises(ValueError, match="coarse_below"):
        RefineConfig(coarse_below=0)


def test_trim_border_and_policy_counts():
    mask = np.zeros((10, 10), bool)
    mask[0:5, 3:6] = True
    assert border_mod.touches_border(mask)
    trimmed = border_mod.trim_border(mask, 2)
    assert trimmed[2:5, 3:6].all() and trimmed.sum() == 9 and not border_mod.touches_border(trimmed)
    assert mask.sum() == 15  # input unchanged
    with pytest.raises(ValueError, match=">= 1"):
        border_mod.trim_border(mask, 0)
    with pytest.raises(ValueError, match="border"):
        border_mod.check_policy("cut")
    counts = border_mod.policy_counts([("a", ["touches_border", "border_excluded"]), ("a", []), ("b", ["border_trimmed"])],
                                      {"a": "exclude"}, "trim")
    assert counts == {"a": {"policy": "exclude", "rows": 2, "touching": 1, "trimmed": 0, "excluded": 1},
                      "b": {"policy": "trim", "rows": 1, "touching": 1, "trimmed": 1, "excluded": 0}}


def test_small_mask_iou():
    m = np.zeros((40, 80), bool)
    m[10:20, 10:30] = True
    assert qa_mod.small_mask_iou(m, m) == 1.0 and qa_mod.small_mask_iou(m, m[:, ::-1]) == 0.0
    big = np.kron(m, np.ones((3, 3), bool))  # the same defect at another resolution
    assert qa_mod.small_mask_iou(m, big) > 0.8


# --------------------------------------------------------------------------- through a build
def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def two_sources(tmp_path):
    """alpha: a coarse mask on the line photo + a defect at the left border; beta: the same photo
    (byte-identical) with the fine mask, as reference."""
    image, fine, coarse = line_image(2)
    edge_image = np.clip(np.random.default_rng(3).normal(120, 3, (64, 64)), 0, 255).astype(np.uint8)
    edge_image[20:40, 0:12] = 50
    edge = np.zeros((64, 64), bool)
    edge[20:40, 0:12] = True
    gamma_image = edge_image.copy()
    gamma_image[50:54, 50:54] = 200  # another photo (not a duplicate of alpha's)
    for name, img, mask in (("alpha/images/line.png", image, coarse), ("alpha/images/edge.png", edge_image, edge),
                            ("beta/images/line.png", image, fine), ("gamma/images/edge.png", gamma_image, edge)):
        _png(tmp_path / "src" / name, img)
        _png(tmp_path / "src" / name.replace("images", "masks"), mask.astype(np.uint8) * 255)
    (tmp_path / "tax.csv").write_text("source,original_label,anomaly_class,note\nalpha,*,crack,\nbeta,*,crack,\n"
                                      "gamma,*,hole,\n")
    return tmp_path


def _write_recipe(tmp_path, alpha_border="keep", gamma_border="trim", refine="enabled: true\n  reference_sources: [beta]"):
    text = f"""name: refine test
shard_size: 10
border: keep
border_trim: 3
refine:
  {refine}
taxonomy: {{path: tax.csv}}
sources:
  - layout: pairs
    root: src/alpha
    source: alpha
    border: {alpha_border}
  - layout: pairs
    root: src/beta
    source: beta
  - layout: pairs
    root: src/gamma
    source: gamma
    border: {gamma_border}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_build_records_refinement_border_policy_and_loads_in_a_fresh_process(two_sources):
    tmp_path = two_sources
    report = build_daad(_write_recipe(tmp_path, alpha_border="exclude"), tmp_path / "out", progress=False)
    rows = {r["id"]: r for r in read_columns(tmp_path / "out", ["id", "qa_flags", "bbox", "mask_refined"]).to_pylist()}
    # alpha/edge.png touches the border and alpha excludes such rows; gamma trims 3 px
    assert set(rows) == {"alpha/images/line.png", "gamma/images/edge.png"}
    assert report["rejected_by_reason"]["border_excluded"] == 1
    assert report["border_policy"]["per_source"]["alpha"] == {"policy": "exclude", "rows": 2, "touching": 1,
                                                              "trimmed": 0, "excluded": 1}
    assert report["border_policy"]["per_source"]["gamma"]["trimmed"] == 1
    gamma = rows["gamma/images/edge.png"]
    assert "border_trimmed" in gamma["qa_flags"] and "touches_border" not in gamma["qa_flags"]
    assert gamma["bbox"] == [20, 3, 40, 12]
    line = rows["alpha/images/line.png"]
    assert {"coarse_mask", "refined_mask"} <= set(line["qa_flags"]) and line["mask_refined"] is not None
    ref = report["refinement"]["reference"][0]
    assert ref["reference_source"] == "beta" and ref["sources"] == ["alpha"]
    assert ref["agreement"]["pairs"] == 1
    assert ref["agreement"]["iou_before"]["mean"] < 0.2 < 0.8 < ref["agreement"]["iou_after"]["mean"]
    assert report["refinement"]["refined_ids"] == ["alpha/images/line.png"]
    md = (tmp_path / "out" / "qa_report.md").read_text()
    assert "## Mask refinement" in md and "## Border policy" in md and "| gamma | trim | 1 | 1 | 1 | 0 |" in md
    card = (tmp_path / "out" / "README.md").read_text()
    assert "mosaics/mosaic_crack.png" in card and "mosaics/mosaic_hole.png" in card
    assert (tmp_path / "out" / "mosaics" / "mosaic_hole.png").is_file()
    assert "Empty classes: pits, stain, scratch, orifice, impurity, abrasion" in card
    code = ("import datasets, numpy as np; ds = datasets.load_dataset(%r, split='train'); "
            "r = {x['id']: x for x in ds}; m = r['alpha/images/line.png']; "
            "print(len(ds), np.asarray(m['mask']).astype(bool).sum(), np.asarray(m['mask_refined']).astype(bool).sum(), "
            "r['gamma/images/edge.png']['mask_refined'] is None)" % str(tmp_path / "out"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "2" and int(out[1]) == 14 * 52 and 0 < int(out[2]) < int(out[1]) and out[3] in ("True", "False")


def test_keep_policy_and_refinement_off(two_sources):
    tmp_path = two_sources
    report = build_daad(_write_recipe(tmp_path, gamma_border="keep", refine="enabled: false"), tmp_path / "o2",
                        progress=False)
    rows = {r["id"]: r for r in read_columns(tmp_path / "o2", ["id", "qa_flags", "mask_refined"]).to_pylist()}
    assert "touches_border" in rows["gamma/images/edge.png"]["qa_flags"]
    assert all(r["mask_refined"] is None and "coarse_mask" not in r["qa_flags"] for r in rows.values())
    assert report["refinement"] == {"enabled": False}
    assert report["border_policy"]["per_source"]["gamma"]["excluded"] == 0


def test_recipe_rejects_bad_border_and_refine_settings(two_sources):
    tmp_path = two_sources
    with pytest.raises(BuildError, match="border must be one of"):
        load_recipe(_write_recipe(tmp_path, gamma_border="cut"))
    with pytest.raises(BuildError, match="refine"):
        load_recipe(_write_recipe(tmp_path, refine="store: sometimes"))


@pytest.mark.shared_data
def test_refinement_agrees_better_with_the_fine_crackforest_masks(shared_data):
    """The measurement behind the recipe: cracks_mixed polygons vs CrackForest .mat strokes of the
    same photos, IoU before and after refinement (full figures in the build's QA report)."""
    from cai.imageio import load_rgb
    from cai.layouts import iter_source

    fine = {r.original_file.split("/")[-1]: r for r in iter_source("crackforest", shared_data / "sources" / "crackforest")}
    pairs = []
    for r in iter_source("supervisely", shared_data / "sources" / "cracks_mixed"):
        name = r.original_file.split("/")[-1]
        if name in fine and len(pairs) < 20:
            rgb, _ = load_rgb(r.image_path.read_bytes())
            refined, _ = refine_row(rgb, r.mask)
            pairs.append((name, r.mask, refined, fine[name].mask))
    result = agreement(pairs)
    assert result["pairs"] == 20
    assert result["iou_before"]["mean"] < 0.25 and result["iou_after"]["mean"] > 0.3
    assert result["improved"] >= 18
