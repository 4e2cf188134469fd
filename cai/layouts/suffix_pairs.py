"""Image and mask side by side in the same folder, told apart by a name suffix (e.g. the road-pothole
set of Passos et al.: ``Dataset/<id>/<id>_RAW.jpg`` + ``<id>_POTHOLE.png``).

Layout::

    ROOT/**/<stem><image_suffix>.<ext>    photos (searched recursively)
    ROOT/**/<stem><mask_suffix>.<ext>     the mask of that photo, same folder: {0,255}, {0,1} or class
                                          index, 1- or 3-channel (see ``_common`` for the rules)

Photos without a mask are counted in ``stats["skipped_no_mask"]``. ``original_label`` is ``label`` for
every pair. With ``empty_is_normal`` an all-background mask means a photo without the defect (counted
in ``stats["skipped_normal"]``); otherwise the record is yielded with note ``mask_empty``.
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (IMAGE_EXTENSIONS, Item, layout_error, new_stats, records_from_items,
                                          relative, require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "suffix_pairs"
LICENSE = "unknown"
SOURCE_DOMAIN = ""
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/**/<stem><image_suffix>.<ext> + <stem><mask_suffix>.<ext> in the same folder"


def iter_anomalies(root, *, image_suffix: str = "_RAW", mask_suffix: str = "_MASK", label: str = "anomaly",
                   source: str = SOURCE, license: str = LICENSE, domain: str = SOURCE_DOMAIN,
                   source_kind: str = SOURCE_KIND, empty_is_normal: bool = False,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per photo that has a same-folder mask, sorted by photo path.

    Raises :class:`~cai.layouts.LayoutError` when ROOT is missing, the suffixes are equal or
    empty, or no photo with ``image_suffix`` is found.
    """
    root = require_dirs(root, LAYOUT)
    if not image_suffix or not mask_suffix or image_suffix == mask_suffix:
        raise layout_error(root, LAYOUT, f"image_suffix {image_suffix!r} and mask_suffix {mask_suffix!r} "
                                         "must be different and non-empty")
    stats = new_stats(stats)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    masks = {}
    for path in files:
        if path.stem.endswith(mask_suffix):
            masks.setdefault((path.parent, path.stem[: -len(mask_suffix)]), path)
    photos = [p for p in files if p.stem.endswith(image_suffix)]
    if not photos:
        raise layout_error(root, LAYOUT, f"no photo named *{image_suffix}.<ext>")
    items = []
    for path in photos:
        mask = masks.get((path.parent, path.stem[: -len(image_suffix)]))
        if mask is None:
            stats["skipped_no_mask"] += 1
            continue
        items.append(Item(relative(path, root), path, mask, label, domain))
    return records_from_items(items, source=source, license=license, source_kind=source_kind, stats=stats,
                              empty_is_normal=empty_is_normal)
