"""``cai-hub cdm``: train the CDM's anomaly tokens on a CAI split, and generate pseudo anomalies with them.

Only click is imported here; torch, diffusers and friends load when a command runs.
"""
from __future__ import annotations

import dataclasses

import click

from ..cli_options import csv_option as _csv
from ..cli_options import quota_option as _quota
from ..cli_options import require_extra
from .models import DEFAULT_BASE_MODEL


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter("must be >= 1")
    return value


@click.group()
def cdm():
    """CDM (CAI-guided Diffusion Mechanism): learn anomaly tokens from CAI pseudo anomalies, then inpaint them.

    The base model is Stable Diffusion 1.x (default: stable-diffusion-v1-5/stable-diffusion-inpainting);
    without internet give its local folder with --base-model.
    """


def _train_options(func):
    """One click option per field of :class:`cai.cdm.train.CDMTrainConfig` (the same options as
    ``python -m cai.cdm.train``)."""
    from .train import CDMTrainConfig

    for f in reversed(dataclasses.fields(CDMTrainConfig)):
        meta = f.metadata
        name = meta.get("flag") or f.name.replace("_", "-")
        if meta["type"] is bool:
            decorator = click.option(f"--{name}/--no-{name}", f.name, default=f.default, show_default=True,
                                     help=meta["help"])
        elif meta["type"] is tuple:
            decorator = click.option(f"--{name}", f.name, multiple=True, callback=_csv, help=meta["help"])
        else:
            kind = click.Choice(meta["choices"]) if meta["choices"] else meta["type"]
            decorator = click.option(f"--{name}", f.name, type=kind, default=f.default,
                                     show_default=f.default is not None, required=f.name == "train_data",
                                     help=meta["help"])
        func = decorator(func)
    return func


@cdm.command("train")
@_train_options
def train_cmd(**kwargs):
    """Learn one token per anomaly class (Eq. 5's mask-weighted loss) on a CAI pseudo-anomaly split.

    Same options as `python -m cai.cdm.train`; for several GPUs or mixed precision run
    `accelerate launch -m cai.cdm.train ...` instead.
    """
    require_extra("cdm", "cai-hub cdm train")
    from .data import CDMDataError
    from .models import BaseModelError
    from .tokens import TokenError
    from .train import CDMTrainConfig, CDMTrainError, train

    try:
        result = train(CDMTrainConfig(**kwargs))
    except (CDMTrainError, CDMDataError, BaseModelError, TokenError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    tokens = ", ".join(f"{ct.anomaly_class} -> {ct.token}" for ct in result.class_tokens)
    click.echo(f"trained {result.global_step} steps -> {result.output_dir}")
    click.echo(f"tokens: {tokens}")
    if result.losses:  # this run's steps only (a resumed run starts after its checkpoint)
        n = len(result.losses)
        w = max(1, min(10, n // 2))
        start = result.global_step - n + 1
        first, last = sum(result.losses[:w]) / w, sum(result.losses[-w:]) / w
        click.echo(f"masked loss (Eq. 5): steps {start}-{start + w - 1} {first:.4f}, "
                   f"steps {result.global_step - w + 1}-{result.global_step} {last:.4f}")


@cdm.command("generate")
@click.option("--embeds", required=True, help="Trained CDM: output folder of `cai-hub cdm train` or a hub model id.")
@click.option("--base-model", default=None,
              help=f"SD 1.x folder or hub id (default: the CDM's own; e.g. {DEFAULT_BASE_MODEL}).")
@click.option("--target", type=click.Choice(["mvtec", "folder", "hf", "default"]), default="default",
              show_default=True, help="Layout of the normal images (default: the embedded sample).")
@click.option("--root", default=None, help="Target root folder (or dataset folder / hub id for --target hf).")
@click.option("--category", default=None, help="MVTec AD category, e.g. grid.")
@click.option("--classes", multiple=True, callback=_csv, help="Classes to generate, e.g. crack,stain (default: all).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (hub-ready dataset).")
@click.option("--masks", type=click.Choice(["cai", "new"]), default="cai", show_default=True,
              help="cai: the placed masks of a CAI split; new: new placements with real mask shapes.")
@click.option("--cai", "cai_split", default=None,
              help="CAI split giving the masks for --masks cai (default: the CDM's training split).")
@click.option("--daad", default=None, help="Anomaly set giving mask shapes for --masks new (default: embedded sample).")
@click.option("--quota", default="4,3,3", show_default=True, callback=_quota,
              help="--masks new: large,medium,small slots per normal image.")
@click.option("--limit", type=int, default=None, callback=_positive, help="At most this many slots.")
@click.option("--steps", type=int, default=30, show_default=True, callback=_positive, help="Denoising steps.")
@click.option("--guidance-scale", type=float, default=7.5, show_default=True)
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="How far the region is re-noised (1: from pure noise).")
@click.option("--prompt", default=None, help="Prompt template, {} = class token (default: the first training one).")
@click.option("--negative-prompt", default=None)
@click.option("--size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Normal images (and outputs) are SIZE x SIZE.")
@click.option("--resolution", type=int, default=None, callback=_positive,
              help="Working resolution of the diffusion model (default: the training resolution).")
@click.option("--mask-dilation", type=click.IntRange(min=0), default=None,
              help="Pixels the inpainted region extends beyond the placed mask (default: the training value).")
@click.option("--threshold", type=click.IntRange(0, 254), default=7, show_default=True,
              help="Pseudo-mask threshold in grey levels (as CAI).")
@click.option("--foreground", type=click.Choice(["auto", "rembg", "threshold", "all"]), default="auto",
              show_default=True)
@click.option("--rembg-model", default="u2net", show_default=True)
@click.option("--rembg-model-dir", default=None)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-attempts", type=int, default=3, show_default=True, callback=_positive,
              help="Generations per slot before an empty pseudo mask skips it.")
@click.option("--device", default=None, help="cuda, cpu... (default: cuda when available).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--shard-size", type=int, default=100, show_default=True, callback=_positive,
              help="Normal images per parquet shard.")
@click.option("--local-files-only", is_flag=True, help="Never contact the hub for the base model.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier output in --out: removes only the files it lists as its own.")
@click.option("--push-to-hub", "push_to_hub", default=None,
              help="Also push the run's own files (data, card, summary, contact sheet) to this hub dataset repo.")
@click.option("--private", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(embeds, base_model, target, root, category, classes, out, masks, cai_split, daad, quota, limit, steps,
                 guidance_scale, strength, prompt, negative_prompt, size, resolution, mask_dilation, threshold,
                 foreground, rembg_model, rembg_model_dir, seed, max_attempts, device, dtype, shard_size,
                 local_files_only, overwrite, push_to_hub, private, quiet):
    """Inpaint the learned anomaly tokens into a target's normal images (output: CAI's schema)."""
    require_extra("cdm", "cai-hub cdm generate")
    from ..anomaly_set import AnomalySetError
    from ..engine.config import CAIConfig
    from ..foreground import ForegroundUnavailable
    from ..targets import TargetError
    from .data import CDMDataError
    from .generate import CDMGenerateError, GenerateOptions, generate
    from .models import BaseModelError
    from .tokens import TokenError

    if prompt is not None and "{}" not in prompt:
        raise click.BadParameter("must contain {} (the class token)", param_hint="--prompt")
    try:
        options = GenerateOptions(
            embeds=embeds, out=out, base_model=base_model, target=target, root=root, category=category,
            classes=classes, masks=masks, cai=cai_split, daad=daad, limit=limit, steps=steps,
            guidance_scale=guidance_scale, strength=strength, prompt=prompt, negative_prompt=negative_prompt,
            size=size, resolution=resolution, mask_dilation=mask_dilation,
            config=CAIConfig(quota=quota, threshold=threshold), foreground=foreground, rembg_model=rembg_model,
            rembg_model_dir=rembg_model_dir, seed=seed, max_attempts=max_attempts, device=device, dtype=dtype,
            shard_size=shard_size, local_files_only=local_files_only, overwrite=overwrite,
            push_to_hub=push_to_hub, private=private)
        summary = generate(options, progress=not quiet, echo=lambda line: click.echo(line, err=True))
    except (CDMGenerateError, CDMDataError, BaseModelError, TokenError, AnomalySetError, TargetError,
            ForegroundUnavailable, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"made {summary['made']} of {summary['slots']} CDM pseudo anomalies from {summary['normals']} "
               f"normal images -> {out}")
    click.echo("skipped: " + (", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items())) or "none"))
    click.echo(f"method: {summary['method']}; masks: {summary['masks_note']}")
    fid = summary["mask_fidelity"]
    if fid["mean_iou_mask_vs_placed"] is not None:
        click.echo(f"mask fidelity: IoU(mask, placed) {fid['mean_iou_mask_vs_placed']:.3f}, "
                   f"visible share {fid['mean_visible_share']:.3f}")
    if summary.get("pushed_to"):
        click.echo(f"pushed: {summary['pushed_to']}")
