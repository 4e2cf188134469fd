"""KolektorSDD (electrical commutators with surface cracks).

Layout::

    ROOT/kosNN/PartK.jpg
    ROOT/kosNN/PartK_label.png     0/1 (one file has a stray 2: any non-zero is defect)

An all-zero label is a normal part: it is not an anomaly, so it is skipped and counted in
``stats["skipped_normal"]``. Pass the folder that holds the ``kosNN`` folders (``ksdd/data``).
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, layout_error, new_stats,
                                          records_from_items, relative, require_dirs,
                                          stem_index)
from cai.layouts.record import RawAnomaly

SOURCE = "kolektorsdd"
LICENSE = "CC-BY-NC-SA-4.0"  # as published by ViCoS/Kolektor for research use (non-commercial)
SOURCE_DOMAIN = "commutator"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/kosNN/PartK.jpg + ROOT/kosNN/PartK_label.png (all-zero label = normal part)"
LABEL = "defect"


def iter_anomalies(root, *, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield the defective parts (non-empty label), sorted by ``kosNN/PartK``."""
    root = require_dirs(root, LAYOUT)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("kos"))
    if not folders:
        raise layout_error(root, LAYOUT, "no kosNN folders")
    stats = new_stats(stats)
    items = []
    for folder in folders:
        files = stem_index(folder)
        items += [Item(relative(path, root), path, files.get(path.stem + "_label"), LABEL, SOURCE_DOMAIN)
                  for stem, path in sorted(files.items()) if not stem.endswith("_label")]
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND,
                              empty_is_normal=True, stats=stats)
