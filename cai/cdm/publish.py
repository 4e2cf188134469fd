"""Edges of the CDM: model card, dataset card of generated pseudo anomalies, hub push and fetch."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

MODEL_FILES = ["*.safetensors", "cdm_config.json", "README.md", "loss_log.jsonl"]


def _loss_windows(output_dir: Path, window: int = 10):
    path = output_dir / "loss_log.jsonl"
    if not path.is_file():
        return None, None, 0
    losses = [json.loads(line)["loss"] for line in path.read_text().splitlines() if line.strip()]
    if not losses:
        return None, None, 0
    w = max(1, min(window, len(losses) // 2 or 1))
    return sum(losses[:w]) / w, sum(losses[-w:]) / w, w


def render_model_card(output_dir, config: dict, repo_id: str | None = None) -> Path:
    """Render ``README.md`` of a trained CDM from ``cards/cdm_model.md`` (huggingface_hub ModelCard)."""
    from huggingface_hub import ModelCard, ModelCardData

    from cards import template_path

    from ..output_folder import public_name

    output_dir = Path(output_dir)
    first, last, window = _loss_windows(output_dir)
    base_id = config.get("base_model_id")
    train_data = config["train_data"]
    data_is_hub = not Path(train_data).exists() and train_data.count("/") == 1
    card_data = ModelCardData(
        library_name="diffusers", base_model=base_id, datasets=[train_data] if data_is_hub else None,
        tags=["cai-hub", "textual_inversion", "anomaly-detection", "industrial-inspection", "stable-diffusion",
              "diffusers"],
        pipeline_tag="image-to-image" if config["inpainting"] else "text-to-image",
    )
    card = ModelCard.from_template(
        card_data, template_path=template_path("cdm_model.md"),
        pretty_name="CDM anomaly tokens: " + ", ".join(config["classes"]),
        train_data=public_name(train_data), train_rows=config["train_rows"], classes=config["classes"],
        base_model_display=base_id or public_name(config["base_model"]), inpainting=config["inpainting"],
        spatial=config.get("spatial_encoder"), global_step=config["global_step"], training=config["training"],
        resolution=config["resolution"], final_loss=last, first_loss=first, loss_window=window,
        prompt_templates=config["prompt_templates"], repo_id=repo_id or config["training"].get("push_to_hub")
        or output_dir.resolve().name,
    )
    path = output_dir / "README.md"
    card.save(path)
    return path


def render_dataset_card(out, summary: dict, load_id: str | None = None) -> Path:
    """Render ``README.md`` of a CDM-generated split (same schema as CAI's)."""
    import datasets
    from huggingface_hub import DatasetCard, DatasetCardData

    from cards import template_path

    out = Path(out)
    files = sorted(str(p) for p in (out / "data").glob("train-*.parquet"))
    ds = datasets.Dataset.from_parquet(files) if files else None
    per_class = dict(sorted(Counter(ds["anomaly_class"]).items())) if ds is not None and len(ds) else {}
    made = summary["made"]
    card_data = DatasetCardData(
        pretty_name=f"CDM pseudo anomalies: {summary['target']}" + (f"/{summary['category']}" if summary["category"]
                                                                    else ""),
        task_categories=["image-segmentation"],
        tags=["anomaly-detection", "synthetic", "cai-hub", "cdm", "industrial-inspection"],
        size_categories=["n<1K" if made < 1000 else "1K<n<10K" if made < 10000 else "10K<n<100K"],
    )
    fid = summary["mask_fidelity"]
    card = DatasetCard.from_template(
        card_data, template_path=template_path("cdm_dataset.md"), embeds=summary["embeds"], target=summary["target"],
        category=summary["category"], made=made, normals=summary["normals"], slots=summary["slots"],
        skipped=summary["skipped"], masks_note=summary["masks_note"], base_model=summary["base_model"],
        method=summary["method"], steps=summary["steps"], guidance_scale=summary["guidance_scale"],
        strength=summary["strength"], resolution=summary["resolution"], size=summary["size"], seed=summary["seed"],
        mask_dilation=summary["mask_dilation"], threshold=summary["threshold"],
        iou=fid["mean_iou_mask_vs_placed"] or 0.0, visible=fid["mean_visible_share"] or 0.0, per_class=per_class,
        load_id=load_id or out.name,
    )
    path = out / "README.md"
    card.save(path)
    return path


def push_model(output_dir, repo_id: str, private: bool = False) -> str:
    """Upload a trained CDM folder (embeddings, E_s, config, card, loss log; no checkpoints) to a
    hub model repo; return the commit URL."""
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    config = json.loads((output_dir / "cdm_config.json").read_text())
    render_model_card(output_dir, config, repo_id=repo_id)  # the card's snippets name the repo
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(output_dir), repo_id=repo_id, repo_type="model",
                             allow_patterns=MODEL_FILES, ignore_patterns=["checkpoint-*/*", "logs/*"],
                             commit_message="Upload CDM anomaly tokens (cai-hub)")
    return str(getattr(info, "commit_url", info))


def fetch_cdm(spec: str, revision: str | None = None) -> Path:
    """Local folder of a trained CDM: ``spec`` itself when it is a folder, else a snapshot of the hub
    repo ``spec`` (only the CDM files)."""
    from ..output_folder import looks_like_hub_id

    path = Path(spec)
    if path.is_dir():
        if not (path / "cdm_config.json").is_file():
            raise FileNotFoundError(f"--embeds {spec}: has no cdm_config.json, so it is not the output folder of "
                                    "`cai-hub cdm train`")
        return path
    if path.exists():
        raise FileNotFoundError(f"--embeds {spec}: is a file; give the output folder of `cai-hub cdm train` or a "
                                "hub model id org/name")
    if not looks_like_hub_id(spec):
        raise FileNotFoundError(f"--embeds {spec}: no such folder (give the output folder of `cai-hub cdm train`, "
                                "or a hub model id org/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, revision=revision, allow_patterns=MODEL_FILES))
    except Exception as exc:  # offline, unknown repo: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise FileNotFoundError(f"--embeds {spec}: no such local folder, and downloading it as a hub model failed "
                                f"(offline hub access failed? {type(exc).__name__}: {first})") from exc
