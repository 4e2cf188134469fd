"""Magnetic Tile Defects (Huang et al.).

Layout::

    ROOT/MT_<Defect>/Imgs/<stem>.jpg     Defect: Blowhole, Break, Crack, Fray, Uneven
    ROOT/MT_<Defect>/Imgs/<stem>.png     the mask, same stem, same folder
    ROOT/MT_Free/Imgs/...                normal tiles: counted in stats["skipped_normal"]

``original_label`` is the defect name without ``MT_``. Empty masks in a defect folder are yielded.
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, layout_error, list_images, new_stats, records_from_items,
                                          relative, require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "magnetic_tile"
LICENSE = "unknown"  # released with the paper's repository without a stated licence
SOURCE_DOMAIN = "magnetic_tile"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/MT_<Defect>/Imgs/<stem>.jpg + ROOT/MT_<Defect>/Imgs/<stem>.png (MT_Free = normal)"
NORMAL = "Free"
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
MASK_EXTENSIONS = (".png",)


def iter_anomalies(root, *, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield every image of every ``MT_<Defect>`` folder except ``MT_Free``."""
    root = require_dirs(root, LAYOUT)
    folders = sorted(p for p in root.iterdir() if p.name.startswith("MT_") and (p / "Imgs").is_dir())
    if not folders:
        raise layout_error(root, LAYOUT, "no MT_<Defect>/Imgs folders")
    stats = new_stats(stats)
    items = []
    for folder in folders:
        defect = folder.name[3:]
        images = list_images(folder / "Imgs", IMAGE_EXTENSIONS)
        if defect == NORMAL:
            stats["skipped_normal"] += len(images)
            continue
        masks = {p.stem: p for p in list_images(folder / "Imgs", MASK_EXTENSIONS)}
        items += [Item(relative(path, root), path, masks.get(path.stem), defect, SOURCE_DOMAIN) for path in images]
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND, stats=stats)
