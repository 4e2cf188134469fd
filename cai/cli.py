"""The `cai-hub` command line."""
from __future__ import annotations


import click

from .cli_options import csv_option as _csv
from .cli_options import mode_option as _mode
from .cli_options import quota_option as _quota
from .cli_options import require_extra
from .cli_options import weights_option as _weights
from .engine.config import BORDER_POLICIES, DRAWS, MASK_RULES, MODES, SCALE_REFERENCES, CAIConfig

MIN_SIZE = 32  # = cai.build.MIN_SIZE (not imported here: the CLI module stays light)


def _min_size(ctx, param, value):
    if value and value < MIN_SIZE:
        raise click.BadParameter(f"{value} is below the minimum {MIN_SIZE} (defects no longer fit); use "
                                 f"{MIN_SIZE} or more, or 0 to keep the images' own size")
    return value


def _hub_id(ctx, param, value):
    from .output_folder import looks_like_hub_id
    if value is not None and not looks_like_hub_id(value):
        raise click.BadParameter(f"expected a hub repo id like ORG/NAME, got {value!r}")
    return value


class _Main(click.Group):
    """The top-level group: a mistake the commands did not foresee is one line (exit 1) with the
    exception's type and first line; ``cai-hub --debug ...`` shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            if ctx.meta.get("cai_hub.debug"):
                raise
            text = str(exc).strip().splitlines()
            first = text[0][:300] if text else ""
            raise click.ClickException(f"{type(exc).__name__}: {first} (run `cai-hub --debug ...` for the "
                                       "traceback)") from None


@click.group(cls=_Main)
@click.version_option(package_name="cai-hub")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """cai-hub: pseudo-anomaly training data from real defects of other domains."""
    ctx.meta["cai_hub.debug"] = debug


@main.command("build-synthetic")
@click.option("--target", type=click.Choice(["mvtec", "folder", "hf"]), default=None,
              help="Target layout of the normal images; omit (with --daad) for the embedded default sample.")
@click.option("--root", type=str, default=None, help="Target root folder (or dataset folder / hub id for --target hf).")
@click.option("--category", type=str, default=None, help="MVTec AD category, e.g. grid.")
@click.option("--daad", type=str, default=None,
              help="Anomaly set: a folder (saved dataset, hub-ready parquet folder, images/+masks/ pairs or flat "
                   "same-stem pairs x.jpg + x.png / x_mask.png) or a hub id org/name.")
@click.option("--anomaly-class", default=None,
              help="Class of every pair of a --daad pairs folder without metadata.csv, e.g. crack.")
@click.option("--source", default=None,
              help="Source name of every pair of a --daad pairs folder without metadata.csv, e.g. my_photos.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: new, empty, or an earlier cai-hub output (resumed).")
@click.option("--synth", "synthesizer", default="cai", show_default=True,
              help="CAI synthesizer by name (cai.baselines.make_synthesizer): cai (the options below), "
                   "cai+<modifiers> (e.g. cai+paste), cai-<variant> (e.g. cai-n, the paper's settings), or a "
                   "mixture with in-domain NSA slots last, e.g. cai+nsanv25 or cai+nsands25 (the candidates "
                   "recipes/evaluate/choose_with_few_defects.py compares). A name's own settings replace "
                   "the options below.")
@click.option("--mode", default=CAIConfig.mode, show_default=True, callback=_mode,
              help=f"Injection: {', '.join(MODES)}, or several joined by '+' (one drawn per pseudo anomaly). "
                   "The paper: normal. Default: normal or paste, paste three times in four (chosen by "
                   "measurement, see recipes/evaluate/README.md).")
@click.option("--mode-weights", default=None, callback=_weights,
              help="Relative weights of the modes of --mode, in its order, e.g. --mode normal+paste --mode-weights "
                   "1,1 draws each mode half of the time. Default: 1,3 for normal+paste (paste three times in "
                   "four, chosen by measurement), uniform for other mixtures.")
@click.option("--refine-mask/--no-refine-mask", default=CAIConfig.refine_mask, show_default=True,
              help="Shrink each source mask to its visibly defective pixels first (the paper: no).")
@click.option("--augment/--no-augment", default=CAIConfig.augment, show_default=True,
              help="Random rotation by 90-degree steps and flips of each pattern (the paper: no).")
@click.option("--mask-rule", type=click.Choice(MASK_RULES), default=CAIConfig.mask_rule, show_default=True,
              help="Pseudo mask from the largest per-channel change (the paper's |I'-I|) or from luma.")
@click.option("--median-ksize", type=click.IntRange(min=1), default=CAIConfig.median_ksize, show_default=True,
              help="Median filter of the pseudo mask (odd; the paper: 7).")
@click.option("--border", type=click.Choice(BORDER_POLICIES), default=CAIConfig.border, show_default=True,
              help="Patterns cut by their source image's border: keep them or never draw them.")
@click.option("--draw", type=click.Choice(DRAWS), default=CAIConfig.draw, show_default=True,
              help="Draw each slot's pattern uniformly over the patterns that fit it, or first a class "
                   "uniformly, then one of its patterns (classes equally often, whatever their row counts).")
@click.option("--scale-reference", type=click.Choice(SCALE_REFERENCES), default=CAIConfig.scale_reference,
              show_default=True,
              help="Foreground size a pattern's scale is matched to: the long side of its bounding box (the "
                   "paper's Eq. 1), or its extent along the placed defect's long axis (the same on a square "
                   "foreground).")
@click.option("--quota", default="4,3,3", show_default=True, callback=_quota, help="large,medium,small per normal image.")
@click.option("--size", type=click.IntRange(min=0), default=256, show_default=True, callback=_min_size,
              help=f"Normal images are resized to a short side of SIZE px (see --resize), at least {MIN_SIZE} "
                   "(0 keeps their size).")
# --resize choices = cai.build.RESIZE_RULES (not imported here: the CLI module stays light)
@click.option("--resize", type=click.Choice(["short", "square"]), default="short", show_default=True,
              help="'short': short side SIZE, aspect kept (as every evaluation ran); 'square': SIZE x SIZE, "
                   "squashing non-square images (the only rule of earlier versions).")
@click.option("--num-proc", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--threshold", type=click.IntRange(0, 254), default=CAIConfig.threshold, show_default=True,
              help="Pseudo-mask threshold in grey levels.")
@click.option("--classes", multiple=True, callback=_csv, help="Only these anomaly classes, e.g. crack,scratch.")
@click.option("--exclude-source", multiple=True, callback=_csv, help="Never inject defects from these sources.")
@click.option("--foreground", type=click.Choice(["auto", "rembg", "threshold", "all"]), default="auto", show_default=True)
@click.option("--rembg-model", default="u2net", show_default=True, help="rembg model name (file <name>.onnx).")
@click.option("--rembg-model-dir", default=None, help="Folder holding the rembg .onnx file (default: $U2NET_HOME).")
@click.option("--shard-size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Normal images per parquet shard (a finished shard survives an interruption).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where synthesis runs: this machine (--num-proc workers) or a Ray cluster (Ray Data; "
                   "the same bytes; needs pip install 'cai-hub[ray]').")
@click.option("--ray-address", default=None, help="Ray cluster address for --engine ray (default: $RAY_ADDRESS, "
                                                   "else a local Ray).")
@click.option("--png-level", type=click.IntRange(0, 9), default=1, show_default=True,
              help="zlib level of the output PNGs: every level decodes to the same pixels; 1 encodes faster, "
                   "files are larger.")
@click.option("--png-filters", type=click.Choice(["fast", "libpng"]), default="fast", show_default=True,
              help="PNG row filters: 'fast' (Sub, None for masks, run-length strategy) or 'libpng' (libpng's "
                   "per-row choice, the bytes of earlier versions). Both lossless: the same pixels.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier cai-hub output in --out: removes only the files it lists as its own.")
@click.option("--push-to-hub", "push_to_hub", default=None, callback=_hub_id,
              help="Also push the run's own files (data, card, summary, contact sheet) to this hub dataset repo.")
@click.option("--private", is_flag=True, help="Create the hub repo private.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_synthetic_cmd(target, root, category, daad, anomaly_class, source, out, synthesizer, mode, mode_weights, refine_mask, augment,
                        mask_rule, median_ksize, border, draw, scale_reference, quota, size, resize, num_proc, seed, threshold,
                        classes, exclude_source, foreground, rembg_model, rembg_model_dir, shard_size, engine, ray_address,
                        png_level, png_filters, overwrite, push_to_hub, private, quiet):
    """Inject real defects from an anomaly set into a target's normal images.

    With neither --target nor --daad it runs on the embedded default sample (real cracks and fabric
    stains injected into real fabric and pavement images). The defaults differ from the paper by
    measurement (see the README); the paper's behaviour: --mode normal --no-refine-mask
    --scale-reference long --median-ksize 7.
    """
    from .anomaly_set import AnomalySetError
    from .build import BuildError, BuildOptions, build_synthetic
    from .foreground import ForegroundUnavailable
    from .imageio import BadInput
    from .targets import TargetError

    if target is None and (root or category):
        raise click.UsageError("--root/--category need --target (e.g. --target folder --root my_images)")
    if (anomaly_class or source) and not daad:
        raise click.UsageError("--anomaly-class/--source describe a --daad pairs folder; give --daad too")
    try:
        options = BuildOptions(
            out=out, target=target or "default", root=root, category=category, daad=daad,
            config=CAIConfig(quota=quota, mode=mode, threshold=threshold, refine_mask=refine_mask, augment=augment,
                             mask_rule=mask_rule, median_ksize=median_ksize, border=border, draw=draw,
                             scale_reference=scale_reference, mode_weights=mode_weights), size=size, resize=resize, seed=seed,
            num_proc=num_proc, classes=classes, exclude_sources=exclude_source, foreground=foreground, rembg_model=rembg_model,
            rembg_model_dir=rembg_model_dir, shard_size=shard_size, overwrite=overwrite, push_to_hub=push_to_hub,
            private=private, anomaly_class=anomaly_class, source=source, png_level=png_level,
            png_filters=png_filters, engine=engine, ray_address=ray_address, synthesizer=synthesizer)
        summary = build_synthetic(options, progress=not quiet, echo=lambda line: click.echo(line, err=True))
    except (AnomalySetError, BuildError, TargetError, ForegroundUnavailable, BadInput, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_summary(summary, out)


def _print_summary(summary: dict, out: str) -> None:
    fid = summary["mask_fidelity"]
    click.echo(f"made {summary['made']} of {summary['slots']} pseudo anomalies from {summary['normals']} normal images "
               f"-> {out}")
    if not summary["made"]:
        click.echo("warning: no pseudo anomaly was made (see skipped below); check --size, --quota and the inputs",
                   err=True)
    if summary["skipped"]:
        click.echo("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items())))
    else:
        click.echo("skipped: none")
    click.echo("resampled: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["resamples"].items())))
    now = summary.get("this_run") or {}
    if now.get("made"):
        earlier = summary.get("resumed_shards", 0)
        click.echo(f"time: {1000 * now['wall_s'] / now['made']:.1f} ms per pseudo anomaly "
                   f"(wall, num_proc={summary['num_proc']}"
                   + (f"; this run's {now['shards']} shard(s), {earlier} made earlier)" if earlier else ")"))
    elif summary.get("resumed_shards"):
        click.echo("time: nothing made in this run (every shard was made by an earlier run)")
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


def _seeds(ctx, param, value):
    try:
        parts = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("expected a count (e.g. 3) or a comma-separated list of seeds (e.g. 0,1,2)") from None
    if not parts:
        raise click.BadParameter("no seed given")
    if "," not in str(value):
        if parts[0] < 1:
            raise click.BadParameter("the seed count must be >= 1")
        return tuple(range(parts[0]))
    return tuple(parts)


@main.command("evaluate")
@click.option("--target", type=click.Choice(["mvtec", "ksdd", "mtd", "folder"]), required=True,
              help="Target layout (see cai.eval.targets).")
@click.option("--root", required=True, help="Target root folder (mvtec: the MVTec AD root; folder: the training normals).")
@click.option("--category", default=None, help="MVTec AD category, e.g. grid.")
@click.option("--test-root", default=None, help="--target folder: a folder with images/ and masks/ of the test set.")
@click.option("--daad", default=None, help="Anomaly set for the cai-* synthesizers (folder or hub id).")
@click.option("--synth", "synths", default="cai,cutpaste,nsa-n,nsa-m,draem,glass-las", show_default=True,
              help="Comma-separated synthesizer names (cai.baselines.SYNTHESIZERS); cai* names take "
                   "+modifiers (cai.baselines.CAI_MODIFIERS, e.g. cai+paste50) and a last +nsan<P> / +nsam<P> "
                   "that makes P% of the slots by NSA Normal / Mixed (cai+nsan25).")
@click.option("--profile", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
              help="Detector profile: cpu (frozen EfficientNet-Lite0 + head) or paper (DRAEM UNet, for a GPU).")
@click.option("--seeds", default="3", show_default=True, callback=_seeds,
              help="A count n (seeds 0..n-1) or a comma-separated list of seeds.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--inception", default=None, type=click.Path(dir_okay=False),
              help="Local TorchScript Inception-v3 file for FID (never downloaded).")
@click.option("--texture-dir", default=None, help="Extra texture folder for the draem synthesizer (e.g. DTD).")
@click.option("--foreground", type=click.Choice(["auto", "rembg", "threshold", "all"]), default="auto", show_default=True)
@click.option("--synth-size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Short side the normal images are resized to before synthesis.")
@click.option("--per-image", type=click.IntRange(min=1), default=10, show_default=True,
              help="Pseudo anomalies per normal image.")
@click.option("--max-normals", type=click.IntRange(min=1), default=None, help="Train on at most this many normals.")
@click.option("--exclude-source", multiple=True, callback=_csv, help="Also leave these anomaly-set sources out.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the profile's epochs.")
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="Override the profile's input short side (multiple of 32).")
@click.option("--width", type=click.IntRange(min=1), default=None,
              help="Override the profile's network width (paper: the UNet's base width, 64; cpu: the head's "
                   "channels, 32).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads [default: the cores this process may use]. Results are identical for the "
                   "same seeds and thread count; another count changes them in the last digits (~1e-7).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes, each making whole (synthesizer, seed) runs with threads // jobs torch threads "
                   "(memory: each holds its own copy of the inputs). The numbers depend on the threads per "
                   "process only: --jobs 2 --threads 2 gives those of --threads 1.")
@click.option("--device", default="auto", show_default=True, help="torch device: auto (CUDA if available), cpu, cuda.")
@click.option("--on-the-fly", is_flag=True,
              help="Fresh pseudo anomalies every training epoch instead of one fixed split (cpu profile: the "
                   "backbone features are recomputed every epoch, about epochs x the synthesis + feature time).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate_cmd(target, root, category, test_root, daad, synths, profile, seeds, out, inception, texture_dir,
                 foreground, synth_size, per_image, max_normals, exclude_source, epochs, size, width, threads, jobs,
                 device, on_the_fly, quiet):
    """Train a detector on each synthesizer's pseudo anomalies and score it on the target's real test set.

    Each (synthesizer, seed) run is kept in OUT/.cache/units as it finishes: after an interruption the same
    command resumes with the runs not yet made. Writes results.md / results.json / results.csv, PR and PRO curves and example anomaly maps to OUT.
    """
    from .anomaly_set import AnomalySetError
    from pathlib import Path

    require_extra("eval", "cai-hub evaluate")
    from .eval.evaluate import EvalOptions, EvaluationError, run_evaluation
    from .eval.targets import EvalTargetError
    from .foreground import ForegroundUnavailable

    names = tuple(s.strip() for s in synths.split(",") if s.strip())
    if not names:
        raise click.BadParameter("no synthesizer given", param_hint="--synth")
    cai_names = [n for n in names if n.startswith("cai")]
    if cai_names and not daad:
        # a clear message rather than a silent default: the tables depend on the anomaly set, and the
        # embedded sample (18 defects) would make them look like a real comparison
        from .targets import DEFAULT_SAMPLE
        others = ",".join(n for n in names if not n.startswith("cai")) or "nsa-n,cutpaste"
        raise click.UsageError(f"--synth {','.join(cai_names)} need an anomaly set: pass --daad FOLDER or org/name "
                               f"(e.g. the embedded sample: --daad {DEFAULT_SAMPLE / 'anomalies'}), or leave them out: "
                               f"--synth {others}")
    if size is not None and size % 32:
        raise click.BadParameter("must be a multiple of 32", param_hint="--size")
    try:
        run_evaluation(EvalOptions(
            target=target, root=root, out=out, category=category, daad=daad, synths=names, profile=profile,
            seeds=seeds, test_root=test_root, inception=inception, texture_dir=texture_dir, foreground=foreground,
            synth_size=synth_size, per_image=per_image, max_normals=max_normals, exclude_sources=exclude_source,
            detector={"epochs": epochs, "size": size, "width": width}, threads=threads, jobs=jobs, device=device,
            progress=not quiet, on_the_fly=on_the_fly,
            command=_evaluate_command(click.get_current_context())))
    except (AnomalySetError, EvaluationError, EvalTargetError, ForegroundUnavailable, FileNotFoundError,
            ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"-> {out}/results.md, results.json, results.csv, curves_pr.png, curves_pro.png, anomaly_maps.png")


def _evaluate_command(ctx) -> str:
    """The evaluate command line as given (non-default options), for the results' provenance."""
    import shlex

    parts = ["cai-hub", "evaluate"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name == "DEFAULT" or not param.opts:
            continue
        raw = value
        if param.name == "seeds":
            raw = str(len(value)) if value == tuple(range(len(value))) else ",".join(map(str, value))
        elif isinstance(value, tuple):
            raw = ",".join(value)
        if isinstance(value, bool):
            if value:
                parts.append(param.opts[0])
            continue
        parts += [param.opts[0], shlex.quote(str(raw))]
    return " ".join(parts)


def _register_plugins() -> None:
    """Command groups of packages built on cai (e.g. ``daad`` from daad_tools), found by their
    ``cai_hub.commands`` entry points: cai never imports them by name."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="cai_hub.commands"), key=lambda e: e.name):
        main.add_command(ep.load(), ep.name)


_register_plugins()


def _register_cdm() -> None:
    from .cdm.cli import cdm

    main.add_command(cdm)


_register_cdm()

if __name__ == "__main__":
    main()
