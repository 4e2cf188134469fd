"""`cai-hub cdm train` then `cai-hub cdm generate`, end to end through the CLI on a tiny model and the
CAI output of the embedded sample's real images."""
import json

import datasets
import numpy as np
import pytest
from click.testing import CliRunner

from cai.build import OUTPUT_FEATURES
from cai.cli import main


def _run(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_train_then_generate(tmp_path, tiny_sd):
    cai_out = tmp_path / "cai"
    _run(["build-synthetic", "--out", str(cai_out), "--quota", "1,1,1", "--quiet"])
    model = tmp_path / "cdm"
    trained = _run(["cdm", "train", "--train-data", str(cai_out), "--base-model", str(tiny_sd), "--output-dir",
                    str(model), "--resolution", "32", "--train-batch-size", "2", "--max-train-steps", "4",
                    "--checkpointing-steps", "2", "--num-vectors", "2", "--spatial-tokens", "2", "--no-progress",
                    "--cache-dir", str(tmp_path / "hf_cache")])
    assert "trained 4 steps" in trained.output and "crack -> <crack>" in trained.output
    config = json.loads((model / "cdm_config.json").read_text())
    assert sorted(config["classes"]) == ["crack", "stain"] and config["num_vectors"] == 2
    assert config["spatial_encoder"]["num_tokens"] == 2 and config["train_data"] == str(cai_out)
    for name in ("learned_embeds.safetensors", "learned_embeds-crack.safetensors", "learned_embeds-stain.safetensors",
                 "spatial_encoder.safetensors", "README.md", "loss_log.jsonl", "checkpoint-2", "checkpoint-4"):
        assert (model / name).exists(), name

    out = tmp_path / "gen"
    generated = _run(["cdm", "generate", "--embeds", str(model), "--out", str(out), "--size", "64", "--steps", "2",
                      "--classes", "crack,stain", "--quiet"])
    assert "CDM pseudo anomalies" in generated.output and "latent mask blending" in generated.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slots"] == 18  # every pseudo anomaly of the CAI split, on its own normal image
    assert summary["made"] >= 9
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert ds.features == OUTPUT_FEATURES and len(ds) == summary["made"]
    cai_rows = datasets.load_dataset(str(cai_out), split="train", cache_dir=str(tmp_path / "hf_cache"))
    by_key = {(r["normal_file"], r["k"]): r for r in cai_rows}
    for row in ds.select(range(3)):
        source = by_key[(row["normal_file"], row["k"])]
        assert row["anomaly_class"] == source["anomaly_class"] and row["source_id"] == source["source_id"]
        assert np.asarray(row["image"]).shape == (64, 64)
    assert (out / "contact_sheet.png").is_file()

    new = _run(["cdm", "generate", "--embeds", str(model), "--out", str(tmp_path / "gen_new"), "--size", "64",
                "--steps", "2", "--masks", "new", "--quota", "1,0,0", "--quiet"])
    assert "new placements" in new.output


def test_cli_errors_are_messages(tmp_path, tiny_sd):
    runner = CliRunner()
    missing = runner.invoke(main, ["cdm", "train", "--train-data", str(tmp_path), "--base-model", str(tiny_sd),
                                   "--output-dir", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "no parquet" in missing.output
    no_model = runner.invoke(main, ["cdm", "generate", "--embeds", str(tmp_path), "--out", str(tmp_path / "g")])
    assert no_model.exit_code == 1 and "cdm_config.json" in no_model.output
    bad_prompt = runner.invoke(main, ["cdm", "generate", "--embeds", str(tmp_path), "--out", str(tmp_path / "g"),
                                      "--prompt", "no placeholder"])
    assert bad_prompt.exit_code == 2 and "--prompt" in bad_prompt.output
    bad_quota = runner.invoke(main, ["cdm", "generate", "--embeds", str(tmp_path), "--out", str(tmp_path / "g"),
                                     "--quota", "1,2"])
    assert bad_quota.exit_code == 2


pytestmark = pytest.mark.slow  # tiny SD / mongod / accelerate launch: heavy, still run by default and in CI
