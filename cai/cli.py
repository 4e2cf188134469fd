"""The `cai-hub` command line."""
from __future__ import annotations

import json

import click

from .config import MODES, CAIConfig


def _csv(ctx, param, value):
    if value is None:
        return ()
    items = tuple(v.strip() for part in value for v in part.split(",") if v.strip())
    return items


def _quota(ctx, param, value):
    try:
        parts = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three integers, e.g. 4,3,3") from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) == 0:
        raise click.BadParameter("expected three non-negative integers (large,medium,small) with a positive sum")
    return parts


@click.group()
@click.version_option(package_name="cai-hub")
def main():
    """cai-hub: pseudo-anomaly training data from real defects of other domains."""


@main.command("build-synthetic")
@click.option("--target", type=click.Choice(["mvtec", "folder", "hf"]), default=None,
              help="Target layout of the normal images; omit (with --daad) for the embedded default sample.")
@click.option("--root", type=str, default=None, help="Target root folder (or dataset folder / hub id for --target hf).")
@click.option("--category", type=str, default=None, help="MVTec AD category, e.g. grid.")
@click.option("--daad", type=str, default=None,
              help="Anomaly set: a folder (saved dataset, hub-ready parquet folder or images/+masks/ pairs) or a hub id.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (hub-ready dataset).")
@click.option("--mode", type=click.Choice(MODES), default=CAIConfig.mode, show_default=True)
@click.option("--quota", default="4,3,3", show_default=True, callback=_quota, help="large,medium,small per normal image.")
@click.option("--size", type=click.IntRange(min=0), default=256, show_default=True,
              help="Normal images are resized to SIZE x SIZE (0 keeps their size).")
@click.option("--num-proc", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threshold", type=click.IntRange(0, 254), default=CAIConfig.threshold, show_default=True,
              help="Pseudo-mask threshold in grey levels.")
@click.option("--classes", multiple=True, callback=_csv, help="Only these anomaly classes, e.g. crack,scratch.")
@click.option("--exclude-source", multiple=True, callback=_csv, help="Never inject defects from these sources.")
@click.option("--foreground", type=click.Choice(["auto", "rembg", "threshold", "all"]), default="auto", show_default=True)
@click.option("--rembg-model", default="u2net", show_default=True, help="rembg model name (file <name>.onnx).")
@click.option("--rembg-model-dir", default=None, help="Folder holding the rembg .onnx file (default: $U2NET_HOME).")
@click.option("--shard-size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Normal images per parquet shard (a finished shard survives an interruption).")
@click.option("--overwrite", is_flag=True, help="Delete an existing output folder first.")
@click.option("--push-to-hub", "push_to_hub", default=None, help="Also push the folder to this hub dataset repo.")
@click.option("--private", is_flag=True, help="Create the hub repo private.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_synthetic_cmd(target, root, category, daad, out, mode, quota, size, num_proc, seed, threshold, classes,
                        exclude_source, foreground, rembg_model, rembg_model_dir, shard_size, overwrite, push_to_hub,
                        private, quiet):
    """Inject real defects from an anomaly set into a target's normal images.

    With neither --target nor --daad it runs on the embedded default sample (real cracks and fabric
    stains injected into real fabric and pavement images).
    """
    from .anomaly_set import AnomalySetError
    from .build import BuildError, BuildOptions, build_synthetic
    from .foreground import ForegroundUnavailable
    from .imageio import BadInput
    from .targets import TargetError

    if target is None and (root or category):
        raise click.UsageError("--root/--category need --target")
    try:
        options = BuildOptions(
            out=out, target=target or "default", root=root, category=category, daad=daad,
            config=CAIConfig(quota=quota, mode=mode, threshold=threshold), size=size, seed=seed, num_proc=num_proc,
            classes=classes, exclude_sources=exclude_source, foreground=foreground, rembg_model=rembg_model,
            rembg_model_dir=rembg_model_dir, shard_size=shard_size, overwrite=overwrite, push_to_hub=push_to_hub,
            private=private)
        summary = build_synthetic(options, progress=not quiet)
    except (AnomalySetError, BuildError, TargetError, ForegroundUnavailable, BadInput, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_summary(summary, out)


def _print_summary(summary: dict, out: str) -> None:
    fid = summary["mask_fidelity"]
    click.echo(f"made {summary['made']} of {summary['slots']} pseudo anomalies from {summary['normals']} normal images "
               f"-> {out}")
    if summary["skipped"]:
        click.echo("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items())))
    else:
        click.echo("skipped: none")
    click.echo("resampled: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["resamples"].items())))
    if summary["ms_per_pseudo_anomaly"] is not None:
        click.echo(f"time: {summary['ms_per_pseudo_anomaly']:.1f} ms per pseudo anomaly "
                   f"(wall, num_proc={summary['num_proc']})")
    if fid["mean_iou_mask_vs_placed"] is not None:
        click.echo(f"mask fidelity: IoU(mask, placed) {fid['mean_iou_mask_vs_placed']:.3f}, "
                   f"visible share {fid['mean_visible_share']:.3f}, changed outside mask {fid['mean_changed_outside_share']:.3f}")
    fg = summary["foreground"]
    click.echo(f"foreground: {fg['used']}" + (f" ({fg['note']})" if fg.get("note") else ""))
    guard = summary["leakage_guard"]
    if guard["excluded_sources"]:
        why = " (target's own dataset, leakage guard)" if guard["target_in_anomaly_set"] else ""
        click.echo(f"excluded sources: {', '.join(guard['excluded_sources'])}{why}")
    skipped_patterns = summary["patterns"].get("skipped")
    if skipped_patterns:
        click.echo("anomaly rows skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped_patterns.items())))
    if summary.get("pushed_to"):
        click.echo(f"pushed: {summary['pushed_to']}")


def _register_daad() -> None:
    from daad_tools.cli import daad
    from daad_tools.curate_cli import COMMANDS as CURATE_COMMANDS

    for command in CURATE_COMMANDS:
        daad.add_command(command)
    main.add_command(daad)


_register_daad()

if __name__ == "__main__":
    main()
