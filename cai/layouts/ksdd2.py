"""KolektorSDD2.

Layout::

    ROOT/train|test/<id>.png
    ROOT/train|test/<id>_GT.png     all-zero ground truth = normal item (skipped, counted)

``original_label`` is ``defect``: the layout names no defect types (map with per-row overrides or
a taxonomy row).
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, layout_error, new_stats,
                                          records_from_items, relative, require_dirs,
                                          stem_index)
from cai.layouts.record import RawAnomaly

SOURCE = "kolektorsdd2"
LICENSE = "CC-BY-NC-SA-4.0"  # as published by ViCoS/Kolektor (non-commercial)
SOURCE_DOMAIN = "industrial_surface"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/train|test/<id>.png + ROOT/train|test/<id>_GT.png (all-zero GT = normal)"
SPLITS = ("train", "test")
LABEL = "defect"


def iter_anomalies(root, *, splits=SPLITS, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield the items whose ``_GT`` mask is not empty, from the ``splits`` present."""
    root = require_dirs(root, LAYOUT)
    present = [s for s in splits if (root / s).is_dir()]
    if not present:
        raise layout_error(root, LAYOUT, f"none of the split folders {list(splits)}")
    stats = new_stats(stats)
    items = []
    for split in present:
        files = stem_index(root / split)
        items += [Item(relative(path, root), path, files.get(stem + "_GT"), LABEL, SOURCE_DOMAIN)
                  for stem, path in sorted(files.items()) if not stem.endswith("_GT")]
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND,
                              empty_is_normal=True, stats=stats)
