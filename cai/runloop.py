"""The one resumable run loop behind ``build-synthetic`` and ``cdm generate``.

A run writes a hub-ready folder::

    OUT/data/train-NNNNN-of-MMMMM.parquet   one shard of rows per group of normal images
    OUT/<work>/run.json                     the run's fingerprint (inputs and settings)
    OUT/<work>/shards/shard-NNNNN.json      marker + statistics of a finished shard
    OUT/summary.json, README.md (card), contact_sheet.png

Shards and markers are written atomically (:mod:`cai.atomic`), the parquet first: a shard counts as
done only when both exist, so an interrupted run resumes at the first unfinished shard. A folder
holding another run (different fingerprint) is refused unless ``overwrite``.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from . import atomic


def open_run(out, work_name: str, fingerprint: str, overwrite: bool, error: type[Exception]) -> Path:
    """Claim ``out`` for the run ``fingerprint``; return its work folder ``out/work_name``.

    Raises ``error`` when ``out`` holds another run and ``overwrite`` is False (with ``overwrite``
    the folder is deleted first).
    """
    out = Path(out)
    if overwrite and out.exists():
        shutil.rmtree(out)
    work = out / work_name
    work.mkdir(parents=True, exist_ok=True)
    run_file = work / "run.json"
    if run_file.is_file() and json.loads(run_file.read_text()).get("fingerprint") != fingerprint:
        raise error(f"{out} holds another run (different inputs or settings); pass --overwrite or choose another --out")
    atomic.write_json(run_file, {"fingerprint": fingerprint})
    return work


def run_shards(out, work: Path, n_shards: int, make_shard: Callable, total: int, desc: str,
               progress: bool = True, on_resumed: Callable | None = None) -> list[dict]:
    """Make the shards not done yet, in order; return every shard's statistics.

    ``make_shard(index, tick)`` returns ``(rows, stats)``: ``rows`` a ``datasets.Dataset`` in the
    output schema, ``stats`` a JSON-able dict with at least ``slots`` and ``made`` (``wall_s`` is
    added here); it may call ``tick()`` once per slot for the progress bar. ``on_resumed(stats)`` is
    called for each shard found finished.
    """
    from tqdm.auto import tqdm

    data_dir, shard_dir = Path(out) / "data", work / "shards"
    data_dir.mkdir(exist_ok=True)
    shard_dir.mkdir(exist_ok=True)
    bar = tqdm(total=total, desc=desc, unit="slot", disable=not progress)
    shard_stats = []
    try:
        for index in range(n_shards):
            parquet = data_dir / f"train-{index:05d}-of-{n_shards:05d}.parquet"
            marker = shard_dir / f"shard-{index:05d}.json"
            if parquet.is_file() and marker.is_file():
                stats = json.loads(marker.read_text())
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
    and for each ``key`` of ``means`` the mean over made rows of the shards' ``sum_<key>``."""
    made = sum(s["made"] for s in shard_stats)
    skipped, resamples = Counter(), Counter()
    for s in shard_stats:
        skipped.update(s.get("skipped", {}))
        resamples.update(s.get("resamples", {}))
    return {"made": made, "slots": sum(s["slots"] for s in shard_stats), "skipped": dict(skipped),
            "resamples": dict(resamples), "wall_s": sum(s["wall_s"] for s in shard_stats),
            "means": {key: sum(s[f"sum_{key}"] for s in shard_stats) / made if made else None for key in means}}


def finish_run(out, summary: dict, normals, size: int, render_card: Callable, push_to_hub: str | None = None,
               private: bool = False) -> dict:
    """Write ``summary.json``, the contact sheet and the card; push the folder when asked."""
    from .outputs import push_folder, write_contact_sheet

    out = Path(out)
    atomic.write_json(out / "summary.json", summary)
    write_contact_sheet(out, normals, size=size)
    render_card(out, summary)
    if push_to_hub:
        summary["pushed_to"] = push_folder(out, push_to_hub, private=private)
        atomic.write_json(out / "summary.json", summary)
    return summary
