"""A Supervisely project export with machine masks (e.g. the mixed pavement-crack set).

Layout::

    ROOT/meta.json                       {"classes": [{"title": ...}, ...]}
    ROOT/<dataset>/img/<name>            images
    ROOT/<dataset>/masks_machine/<stem>.png   class-index PNG, 3 equal channels (crack = 2)
    ROOT/obj_class_to_machine_color.json optional: {title: [v, v, v]}

One record per class index present (``component`` = index, ``original_label`` = class title). Class
titles come from ``class_titles`` ({index: title}), else ``obj_class_to_machine_color.json``, else
``meta.json`` in order (index k = k-th class, 1-based). An empty mask gives one record with an empty
mask, ``component`` 0, ``original_label`` "" and note ``mask_empty`` (QA rejects it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from cai.layouts._common import (Item, layout_error, list_images, new_stats, records_per_class,
                                          relative, require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "cracks_mixed"
LICENSE = "CC-BY-4.0"
SOURCE_DOMAIN = "pavement"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/meta.json + ROOT/<dataset>/img/<name> + ROOT/<dataset>/masks_machine/<stem>.png (class index)"


def read_class_titles(root: Path) -> dict[int, str]:
    """``{class index: title}`` from the export's colour map or ``meta.json`` (see module doc)."""
    colours = root / "obj_class_to_machine_color.json"
    if colours.is_file():
        mapping = json.loads(colours.read_text(encoding="utf-8"))
        return {int(rgb[0]): title for title, rgb in mapping.items() if len(set(rgb)) == 1}
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    return {k: c["title"] for k, c in enumerate(meta.get("classes", []), start=1)}


def iter_anomalies(root, *, class_titles: dict | None = None, source: str = SOURCE, license: str = LICENSE,
                   domain: str = SOURCE_DOMAIN, stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per (image, class index present), datasets and images sorted by path."""
    root = require_dirs(root, LAYOUT)
    datasets = sorted(p for p in root.iterdir() if (p / "img").is_dir() and (p / "masks_machine").is_dir())
    if not (root / "meta.json").is_file() or not datasets:
        raise layout_error(root, LAYOUT, "no meta.json or no <dataset>/img + masks_machine folders")
    titles = read_class_titles(root) if class_titles is None else dict(class_titles)
    stats = new_stats(stats)
    items = []
    for dataset in datasets:
        masks = {p.name: p for p in list_images(dataset / "masks_machine", (".png",))}
        for path in list_images(dataset / "img"):
            mask = masks.get(path.stem + ".png") or masks.get(path.name + ".png")
            if mask is None:
                stats["skipped_no_mask"] += 1
                continue
            items.append(Item(relative(path, root), path, mask, "", domain))
    return records_per_class(items, titles, source=source, license=license, source_kind=SOURCE_KIND,
                             stats=stats, yield_empty=True)
