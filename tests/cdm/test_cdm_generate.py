"""Generation with a trained CDM: the tokens in a diffusers pipeline, one inpainting, whole runs."""
import json

import datasets
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from cai.build import OUTPUT_FEATURES
from cai.cdm.generate import CDMGenerateError, CDMInpainter, GenerateOptions, generate, place_mask
from cai.engine.config import CAIConfig
from cai.engine.pseudo_mask import dilate


def _image(pipe, prompt):
    return pipe(prompt, num_inference_steps=2, height=32, width=32, guidance_scale=1.0, output_type="np",
                generator=torch.Generator().manual_seed(0)).images[0]


def _pipe(tiny_sd):
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_saved_embeddings_load_with_load_textual_inversion_and_change_the_output(tiny_sd, trained_cdm):
    config = json.loads((trained_cdm / "cdm_config.json").read_text())
    trained = _pipe(tiny_sd)
    # several classes: one diffusers textual-inversion file per token
    trained.load_textual_inversion([str(trained_cdm / config["classes"][c]["file"]) for c in ("crack", "stain")])
    assert trained.tokenizer.tokenize("a photo of <crack> <stain>")[-2:] == ["<crack>", "<stain>"]
    # the same tokens holding their initial embedding ("crack", "stain"), i.e. untrained
    untrained = _pipe(tiny_sd)
    weight = untrained.text_encoder.get_input_embeddings().weight.detach()
    init = {t: weight[untrained.tokenizer.convert_tokens_to_ids(w + "</w>")][None].clone()
            for t, w in (("<crack>", "crack"), ("<stain>", "stain"))}
    untrained.load_textual_inversion([{t: e} for t, e in init.items()])
    learned = load_file(str(trained_cdm / "learned_embeds.safetensors"))
    assert not torch.equal(learned["<crack>"], init["<crack>"])
    assert not np.allclose(_image(trained, "a photo of <crack>"), _image(untrained, "a photo of <crack>"))
    # a prompt without the tokens is untouched
    assert np.array_equal(_image(trained, "a photo of grid"), _image(untrained, "a photo of grid"))
    # the all-token file has two keys, which load_textual_inversion refuses (documented on the card)
    with pytest.raises(ValueError):
        _pipe(tiny_sd).load_textual_inversion(str(trained_cdm))


def test_single_class_folder_loads_directly(tiny_sd, cai_split, tmp_path, train_tiny):
    train_tiny(cai_split, tiny_sd, tmp_path / "one", classes=("stain",), num_vectors=2, max_train_steps=2)
    pipe = _pipe(tiny_sd)
    pipe.load_textual_inversion(str(tmp_path / "one"))  # learned_embeds.safetensors, diffusers' default name
    assert pipe.maybe_convert_prompt("a <stain>", pipe.tokenizer) == "a <stain> <stain>_1"
    assert _image(pipe, "a photo of <stain>").shape == (32, 32, 3)


@pytest.mark.parametrize("which", ["trained_cdm", "trained_cdm_inpainting"])
def test_inpaint_changes_only_the_region(which, request):
    folder = request.getfixturevalue(which)
    inpainter = CDMInpainter(folder, device="cpu")
    assert inpainter.inpainting is (which == "trained_cdm_inpainting")
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    placed = np.zeros((48, 48), bool)
    placed[20:24, 10:40] = True
    region = dilate(placed, 3)
    out = inpainter.inpaint(normal, region, placed, "crack", seed=1, steps=2, resolution=32)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    assert np.array_equal(out[~region], normal[~region])
    assert not np.array_equal(out[region], normal[region])
    again = inpainter.inpaint(normal, region, placed, "crack", seed=1, steps=2, resolution=32)
    assert np.array_equal(out, again)  # seeded
    with pytest.raises(CDMGenerateError, match="not learned"):
        inpainter.inpaint(normal, region, placed, "hole", seed=1, steps=2)


def _rows(out):
    return datasets.load_dataset(str(out), split="train")


def test_generate_with_cai_masks_writes_a_cai_schema_split(trained_cdm, tmp_path):
    out = tmp_path / "gen"
    options = GenerateOptions(embeds=str(trained_cdm), out=str(out), size=48, steps=2, limit=6, seed=3)
    summary = generate(options, progress=False)
    assert summary["slots"] == 6 and summary["made"] + sum(summary["skipped"].values()) == 6
    assert summary["made"] >= 1
    assert "latent mask blending" in summary["method"]
    ds = _rows(out)
    assert ds.features == OUTPUT_FEATURES
    assert len(ds) == summary["made"]
    for row in ds:
        image, mask, placed = (np.asarray(row[c]) for c in ("image", "mask", "placed_mask"))
        assert image.shape == (48, 48)  # the embedded sample's normals are grey, as CAI keeps them
        assert mask.shape == placed.shape == (48, 48)
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        assert not (mask > 0)[~dilate(placed > 0, CAIConfig().mask_margin)].any()
        assert row["mode"] == "cdm" and row["anomaly_class"] in ("crack", "stain") and row["seed"] == 3
    for name in ("README.md", "contact_sheet.png", "summary.json"):
        assert (out / name).is_file()
    card = (out / "README.md").read_text()
    assert "CAI-guided Diffusion Mechanism" in card and "task_categories" in card
    # same settings again: the finished shard is reused; other settings: refused
    assert generate(options, progress=False)["made"] == summary["made"]
    with pytest.raises(CDMGenerateError, match="another run"):
        generate(GenerateOptions(embeds=str(trained_cdm), out=str(out), size=48, steps=3, limit=6), progress=False)


def test_generate_with_new_masks_places_real_shapes_inside_the_image(trained_cdm_inpainting, tmp_path):
    out = tmp_path / "gen_new"
    options = GenerateOptions(embeds=str(trained_cdm_inpainting), out=str(out), masks="new", size=64, steps=2,
                              config=CAIConfig(quota=(1, 0, 1)), limit=4)
    summary = generate(options, progress=False)
    assert summary["slots"] == 4 and "inpainting model" in summary["method"]
    ds = _rows(out)
    assert ds.features == OUTPUT_FEATURES and len(ds) == summary["made"] >= 1
    assert set(ds["scale"]) <= {"large", "small"}
    assert set(ds["anomaly_class"]) == {"crack"}
    assert all(s.startswith("crack") for s in ds["source_id"])
    for row in ds:
        placed = np.asarray(row["placed_mask"]) > 0
        assert placed.shape == (64, 64) and placed.any()


def test_generate_rejects_unknown_classes_and_mask_modes(trained_cdm, tmp_path):
    with pytest.raises(CDMGenerateError, match="not learned"):
        generate(GenerateOptions(embeds=str(trained_cdm), out=str(tmp_path / "x"), classes=("hole",)))
    with pytest.raises(CDMGenerateError, match="masks"):
        generate(GenerateOptions(embeds=str(trained_cdm), out=str(tmp_path / "x"), masks="paint"))


def test_place_mask_centres_the_bounding_box_and_cuts_at_the_border():
    crop = np.zeros((5, 7), bool)
    crop[1:4, 2:5] = True  # 3 x 3 box
    out = place_mask((10, 10), crop, (5, 5))
    assert np.array_equal(np.argwhere(out).min(0), [4, 4]) and np.array_equal(np.argwhere(out).max(0), [6, 6])
    edge = place_mask((10, 10), crop, (0, 9))
    assert edge.sum() == 4  # rows -1..1 and cols 8..10 -> 2 x 2 inside


def test_embeds_by_hub_id_go_through_snapshot_download(trained_cdm, tmp_path, monkeypatch):
    import huggingface_hub

    from cai.cdm.publish import MODEL_FILES, fetch_cdm
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, allow_patterns))
        return str(trained_cdm)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert fetch_cdm("someone/cdm-grid") == trained_cdm
    assert calls == [("someone/cdm-grid", MODEL_FILES)]
    assert fetch_cdm(str(trained_cdm)) == trained_cdm and len(calls) == 1  # a folder is used as it is
    with pytest.raises(FileNotFoundError, match="cdm_config.json"):
        fetch_cdm(str(tmp_path))


def test_new_masks_never_come_from_the_targets_own_dataset(trained_cdm, tmp_path):
    """CAI's leakage guard: with a target named like an anomaly source, that source's masks are not used."""
    import shutil

    from cai.targets import DEFAULT_SAMPLE
    normals = tmp_path / "cracks_mixed"  # the embedded sample's crack source is called cracks_mixed
    normals.mkdir()
    shutil.copy(DEFAULT_SAMPLE / "normals" / "images" / "fabric_01.png", normals / "n.png")
    common = dict(embeds=str(trained_cdm), target="folder", root=str(normals), masks="new", size=48, steps=2,
                  foreground="all", config=CAIConfig(quota=(1, 0, 0)))
    with pytest.raises(CDMGenerateError, match="no usable mask of class"):
        generate(GenerateOptions(out=str(tmp_path / "a"), classes=("crack",), **common), progress=False)
    summary = generate(GenerateOptions(out=str(tmp_path / "b"), classes=("stain",), **common), progress=False)
    assert summary["excluded_mask_sources"] == ["cracks_mixed"]
    assert set(_rows(tmp_path / "b")["source"]) <= {"fabric_hsst"}


pytestmark = pytest.mark.slow  # tiny SD / mongod / accelerate launch: heavy, still run by default and in CI
