"""The `daad` command group: build, curate, sync, push and inspect DAAD (registered under `cai-hub`
through the ``cai_hub.commands`` entry point, so cai never imports daad_tools)."""
from __future__ import annotations

import re

import click

from cai.cli_options import csv_option as _csv

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _repo_id(ctx, param, value):
    if not _REPO_ID.match(value or "") or "--" in value or ".." in value:
        raise click.BadParameter(f"expected a hub repo id like ORG/daad, got {value!r}")
    return value


def _recipe(ctx, param, value):
    if not value.lower().endswith((".yaml", ".yml")):
        raise click.BadParameter(f"expected a YAML recipe (.yaml/.yml), got {value!r}")
    return value


@click.group()
def daad():
    """DAAD: the domain-agnostic anomaly dataset (real defects + masks from many sources, 8 classes)."""


@daad.command("build")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False), default="recipes/daad/daad.yaml",
              show_default=True, callback=_recipe, help="YAML recipe: sources, taxonomy, QA settings.")
@click.option("--out", type=click.Path(file_okay=False), default="daad", show_default=True,
              help="Output folder (hub-ready; an interrupted build resumes here).")
@click.option("--overwrite", is_flag=True, help="Replace an output folder holding another DAAD build.")
@click.option("--unmapped", type=click.Choice(["error", "skip"]), default=None,
              help="What to do with a source label the taxonomy does not know (default: the recipe's).")
@click.option("--exclude-license", "exclude_license", multiple=True, callback=_csv,
              help="Leave out rows under these licences (added to the recipe's exclude_licenses).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build_cmd(recipe, out, overwrite, unmapped, exclude_license, quiet):
    """Build the DAAD folder from a recipe (import, taxonomy, mask QA, parquet shards, card)."""
    from .build import BuildError, build_daad
    from .qa import FLAGS

    try:
        report = build_daad(recipe_path=recipe, out=out, overwrite=overwrite, unmapped=unmapped,
                            exclude_licenses=exclude_license, progress=not quiet)
    except (BuildError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{report['published']} of {report['rows']} rows published, {report['rejected']} rejected "
               f"-> {out} ({report['shards']} shard(s))")
    if report["rejected_by_reason"]:
        click.echo("rejected: " + ", ".join(f"{k} {v}" for k, v in report["rejected_by_reason"].items()))
    flagged = {k: v for k, v in report["flags"].items() if k in FLAGS and k not in report["rejected_by_reason"]}
    if flagged:
        click.echo("flagged only: " + ", ".join(f"{k} {v}" for k, v in flagged.items()))
    from .records import CLASSES
    click.echo("rows per class: " + ", ".join(f"{c} {report['per_class'].get(c, {}).get('published', 0)}"
                                              for c in CLASSES))
    click.echo("per source: " + ", ".join(f"{k} {v['published']}" for k, v in report["per_source"].items()))
    click.echo(f"QA report: {out}/qa_report.md")


@daad.command("push")
@click.option("--folder", type=click.Path(exists=True, file_okay=False), default="daad", show_default=True,
              help="A built DAAD folder.")
@click.option("--repo", required=True, callback=_repo_id, help="Hub dataset repo, ORG/NAME.")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--exclude-license", "exclude_license", multiple=True, callback=_csv,
              help="Push a copy without rows under these licences, e.g. CC-BY-NC-SA-4.0 (repeat or comma-separate).")
def push_cmd(folder, repo, private, exclude_license):
    """Upload a built DAAD folder (shards, card, QA report) to the hub."""
    from .publish import PublishError, push_daad

    try:
        result = push_daad(folder=folder, repo_id=repo, private=private, exclude_licenses=exclude_license)
    except (PublishError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"pushed {result['rows']} rows to {repo}: {result['commit']}")
    if result["removed"]:
        click.echo("left out: " + ", ".join(f"{k} {v}" for k, v in sorted(result["removed"].items())))


@daad.command("stats")
@click.option("--folder", type=click.Path(exists=True, file_okay=False), default="daad", show_default=True,
              help="A built DAAD folder.")
@click.option("--out", type=click.Path(file_okay=False), default="stats", show_default=True,
              help="Folder for stats.json and the per-class mosaics.")
@click.option("--per-class", type=click.IntRange(min=1), default=24, show_default=True,
              help="Thumbnails per class mosaic.")
def stats_cmd(folder, out, per_class):
    """Counts per class, source and scale, and a thumbnail mosaic per class."""
    from .build import BuildError
    from .stats import daad_stats

    try:
        daad_stats(folder, out, per_class=per_class, echo=click.echo)
    except (BuildError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    daad()


def _add_curation_commands() -> None:
    from .curate_cli import COMMANDS

    for command in COMMANDS:
        daad.add_command(command)


_add_curation_commands()
