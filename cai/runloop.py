"""The one resumable run loop behind ``build-synthetic`` and ``cdm generate``.

A run writes a hub-ready folder::

    OUT/data/train-NNNNN-of-MMMMM.parquet   one shard of rows per group of normal images
    OUT/<work>/run.json                     the run's fingerprint (inputs and settings)
    OUT/<work>/shards/shard-NNNNN.json      marker + statistics of a finished shard
    OUT/summary.json, README.md (card), contact_sheet.png

Shards and markers are written atomically (:mod:`cai.atomic`), the parquet first: a shard counts as
done only when both exist, so an interrupted run resumes at the first unfinished shard. The folder is
claimed through :mod:`cai.output_folder` (someone's folder, the current folder or an input is refused;
every file written here is listed in the manifest first); a folder holding another run of ours
(different fingerprint) is refused unless ``--overwrite``, which removes only the manifest's files.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from . import atomic


OUTPUT_NAMES = ("data", "README.md", "summary.json", "contact_sheet.png")


def claim_output(out, kind: str, work_name: str, inputs=(), overwrite: bool = False, nested_ok=()):
    """Claim ``out`` for a run loop command (see :func:`cai.output_folder.claim`); a folder written
    before manifests existed is adopted when it holds ``work_name/run.json`` and only our names."""
    from .output_folder import claim
    return claim(out, kind, inputs=inputs, overwrite=overwrite, nested_ok=nested_ok,
                 legacy_marker=f"{work_name}/run.json", legacy_names=OUTPUT_NAMES + (work_name,))


def open_run(folder, work_name: str, fingerprint: str, error: type[Exception], hints: dict | None = None) -> Path:
    """Start or resume the run ``fingerprint`` in the claimed ``folder``
    (:class:`cai.output_folder.OutputFolder`); return its work folder ``folder.root / work_name``.

    Raises ``error`` when the folder holds another run (nothing is changed then). ``hints`` maps the
    fingerprints of known other runs (e.g. the same inputs with an option an earlier version fixed) to
    the advice the message then gives, such as the option that resumes it.
    """
    work = folder.root / work_name
    run_file = work / "run.json"
    held = json.loads(run_file.read_text()).get("fingerprint") if run_file.is_file() else fingerprint
    if held != fingerprint:
        hint = (hints or {}).get(held)
        what = (f"a run of the same inputs with other settings: {hint}" if hint
                else "another run (different inputs or settings)")
        raise error(f"--out {folder.root} holds {what}; choose another --out, "
                    "or pass --overwrite to replace it (it removes only the files cai-hub wrote there)")
    work.mkdir(parents=True, exist_ok=True)
    folder.add(run_file)
    atomic.write_json(run_file, {"fingerprint": fingerprint})
    return work


def run_shards(folder, work: Path, n_shards: int, make_shard: Callable, total: int, desc: str,
               progress: bool = True, on_resumed: Callable | None = None, echo: Callable | None = None) -> list[dict]:
    """Make the shards not done yet, in order; return every shard's statistics.

    ``folder`` is the claimed :class:`cai.output_folder.OutputFolder`: each shard and marker is listed
    in its manifest before it is written. ``echo(line)`` is told "resuming at shard k of n" or
    "already complete" when finished shards are found.

    ``make_shard(index, tick)`` returns ``(rows, stats)``: ``rows`` a ``datasets.Dataset`` in the
    output schema, ``stats`` a JSON-able dict with at least ``slots`` and ``made`` (``wall_s`` is
    added here); it may call ``tick()`` once per slot for the progress bar. ``on_resumed(stats)`` is
    called for each shard found finished.
    """
    from tqdm.auto import tqdm

    data_dir, shard_dir = folder.root / "data", work / "shards"
    data_dir.mkdir(exist_ok=True)
    shard_dir.mkdir(exist_ok=True)
    bar = tqdm(total=total, desc=desc, unit="slot", disable=not progress)
    shard_stats = []
    names = [(data_dir / f"train-{i:05d}-of-{n_shards:05d}.parquet", shard_dir / f"shard-{i:05d}.json")
             for i in range(n_shards)]
    done = [parquet.is_file() and marker.is_file() for parquet, marker in names]
    if echo is not None and any(done):
        first = done.index(False) if not all(done) else None
        echo(f"already complete: all {n_shards} shard(s) were made by an earlier run; nothing to do"
             if first is None else f"resuming at shard {first + 1} of {n_shards} ({sum(done)} finished earlier)")
    try:
        for index in range(n_shards):
            parquet, marker = names[index]
            if done[index]:
                stats = {**json.loads(marker.read_text()), "resumed": True}
                shard_stats.append(stats)
                bar.update(stats["slots"])
                if on_resumed is not None:
                    on_resumed(stats)
                continue
            ticked = [0]

            def tick():
                ticked[0] += 1
                bar.update(1)

            start = time.perf_counter()
            rows, stats = make_shard(index, tick)
            stats["wall_s"] = time.perf_counter() - start
            folder.add(parquet, marker)
            with atomic.atomic_path(parquet) as tmp:
                rows.to_parquet(str(tmp))
            atomic.write_json(marker, stats)
            shard_stats.append(stats)
            bar.update(max(0, stats["slots"] - ticked[0]))
    finally:
        bar.close()
    return shard_stats


def totals(shard_stats: list[dict], means: tuple[str, ...]) -> dict:
    """Run totals: ``made``, ``slots``, ``skipped`` and ``resamples`` (reason -> count), ``wall_s``,
    ``shards`` and ``resumed_shards`` (found finished, made by an earlier run), ``this_run`` (shards,
    made and wall_s of the shards made now),
    and for each ``key`` of ``means`` the mean over made rows of the shards' ``sum_<key>``."""
    made = sum(s["made"] for s in shard_stats)
    skipped, resamples = Counter(), Counter()
    for s in shard_stats:
        skipped.update(s.get("skipped", {}))
        resamples.update(s.get("resamples", {}))
    return {"made": made, "slots": sum(s["slots"] for s in shard_stats), "skipped": dict(skipped),
            "shards": len(shard_stats), "resumed_shards": sum(1 for s in shard_stats if s.get("resumed")),
            "resamples": dict(resamples), "wall_s": sum(s["wall_s"] for s in shard_stats),
            "this_run": {"shards": sum(1 for s in shard_stats if not s.get("resumed")),
                         "made": sum(s["made"] for s in shard_stats if not s.get("resumed")),
                         "wall_s": sum(s["wall_s"] for s in shard_stats if not s.get("resumed"))},
            "means": {key: sum(s[f"sum_{key}"] for s in shard_stats) / made if made else None for key in means}}


def finish_run(folder, summary: dict, normals, size: int, render_card: Callable, push_to_hub: str | None = None,
               private: bool = False) -> dict:
    """Write ``summary.json``, the contact sheet and the card (each listed in the manifest first);
    push exactly the manifest's published files when asked."""
    from .outputs import PUBLISHED, push_folder, write_contact_sheet

    out = folder.root
    folder.add(out / "summary.json", out / "contact_sheet.png", out / "README.md")
    atomic.write_json(out / "summary.json", summary)
    write_contact_sheet(out, normals, size=size)
    render_card(out, summary)
    if push_to_hub:
        summary["pushed_to"] = push_folder(out, push_to_hub, private=private, files=folder.publishable(PUBLISHED))
        atomic.write_json(out / "summary.json", summary)
    return summary
