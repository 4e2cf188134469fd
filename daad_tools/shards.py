"""The parquet shards of a hub-ready DAAD folder: listing, reading and rewriting them in place.

A folder holds ``data/<split>-XXXXX-of-YYYYY.parquet``, rows of
:data:`daad_tools.records.DAAD_FEATURES` with the image and mask bytes embedded.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cai import atomic

from .curation import CurationError

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
ROW_GROUP = 100  # rows per row group, as `datasets` writes image columns


def list_shards(folder: Path) -> list[Path]:
    """The folder's shards, sorted; :class:`CurationError` when there are none."""
    data = folder / "data"
    shards = sorted(p for p in data.glob("*.parquet") if SHARD_RE.match(p.name)) if data.is_dir() else []
    if not shards:
        raise CurationError(f"{folder} has no data/<split>-XXXXX-of-YYYYY.parquet shards")
    return shards


def split_of(shard: Path) -> str:
    return SHARD_RE.match(shard.name).group("split")


def iter_rows(shard: Path, columns=None, batch_size: int = 64):
    """The rows of ``shard`` as dicts (``columns`` to read only some), checked to be DAAD rows."""
    pf = pq.ParquetFile(shard)
    missing = {"id", "image", "mask", "anomaly_class"} - set(pf.schema_arrow.names)
    if missing:
        raise CurationError(f"{shard} lacks DAAD columns {sorted(missing)}")
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


def embedded_bytes(value, what: str) -> bytes | None:
    """The bytes of a datasets ``Image`` value ``{"bytes", "path"}`` (None for None); ``what`` names
    it in the error when the bytes are not embedded."""
    if value is None:
        return None
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise CurationError(f"{what}: image bytes are not embedded")
    return data


def content_fingerprint(folder: Path) -> str:
    """sha256 over each row's id, class and content hash (cheap: three columns), in shard order."""
    h = hashlib.sha256()
    for shard in list_shards(folder):
        names = pq.ParquetFile(shard).schema_arrow.names
        cols = [c for c in ("id", "anomaly_class", "content_hash") if c in names]
        for row in iter_rows(shard, columns=cols, batch_size=4096):
            h.update(f"{row.get('id')}\t{row.get('anomaly_class')}\t{row.get('content_hash')}\n".encode())
    return h.hexdigest()


def write_shard(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically (a hidden temp file, fsynced and ``os.replace``-d)."""
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where links are not possible, e.g. across file systems)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def rewrite_shards(folder: Path, edit: Callable[[Path], pa.Table], changed, emptied) -> tuple[list, list]:
    """Rewrite the shards in ``changed`` as ``edit(shard)`` returns them; drop those in ``emptied``.

    Without emptied shards each changed shard is replaced in place (``os.replace``: a reader sees
    the old or the new file). A shard left without rows is dropped (``datasets`` cannot read an
    empty parquet file) and that split's shards renumbered ``-XXXXX-of-YYYYY``: the new ``data/``
    is staged beside the old one (unchanged shards hard-linked) and swapped in by two renames.

    Returns ``(rewritten, removed)``: ``data/...`` names written, and old names renumbered away.
    """
    changed, emptied = set(changed), set(emptied)
    rewritten, removed = [], []
    if not emptied:
        for shard in sorted(changed):
            write_shard(edit(shard), shard)
            rewritten.append(str(shard.relative_to(folder)))
        return rewritten, removed

    data = folder / "data"
    staging = folder / f".data.curate-{os.getpid()}"
    retired = folder / f".data.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        relayout = {split_of(s) for s in emptied}
        by_split: dict = {}
        for item in sorted(data.iterdir()):
            if SHARD_RE.match(item.name) and split_of(item) in relayout:
                by_split.setdefault(split_of(item), []).append(item)
            elif item in changed:
                write_shard(edit(item), staging / item.name)
                rewritten.append(f"data/{item.name}")
            elif item.is_file():
                link_or_copy(item, staging / item.name)
            else:
                shutil.copytree(item, staging / item.name)
        for split, shards in sorted(by_split.items()):
            survivors = [s for s in shards if s not in emptied]
            for i, shard in enumerate(survivors):
                target = staging / f"{split}-{i:05d}-of-{len(survivors):05d}.parquet"
                if shard in changed:
                    write_shard(edit(shard), target)
                    rewritten.append(f"data/{target.name}")
                else:
                    link_or_copy(shard, target)
            removed.extend(f"data/{s.name}" for s in shards)
        os.rename(data, retired)
        os.rename(staging, data)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    return rewritten, removed
