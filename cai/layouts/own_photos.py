"""Own photographs, with or without masks yet.

Layout::

    ROOT/images/<stem>.<ext>     photos (phone JPEGs often carry an EXIF orientation tag)
    ROOT/masks/<stem>.<ext>      optional, same stem: a mask drawn for the photo
    ROOT/labels.csv              optional: stem,label

Every photo is yielded; one without a mask has ``mask=None`` and note ``mask_missing`` (it goes
to FiftyOne for annotation and is not published until it has a mask). ``original_label`` comes from
``labels.csv``, else from ``label``. ``mask_orientation`` says whether masks follow the stored
pixels (``"stored"``, default) or the EXIF-rotated view (``"display"``) when that is ambiguous.
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_from_items, relative,
                                          require_dirs)
from cai.layouts.pairs import read_labels_csv
from cai.layouts.record import RawAnomaly

SOURCE = "own_photos"
LICENSE = "unknown"  # the photographer's choice: pass license=...
SOURCE_DOMAIN = ""
SOURCE_KIND = "photograph"
LAYOUT = "ROOT/images/<stem>.<ext> [+ ROOT/masks/<stem>.<ext>] [+ ROOT/labels.csv: stem,label]"


def iter_anomalies(root, *, label: str = "unlabelled", source: str = SOURCE, license: str = LICENSE,
                   domain: str = SOURCE_DOMAIN, mask_orientation: str = "stored",
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield every photo in ``images/``, with its mask when ``masks/`` has one, sorted by name."""
    root = require_dirs(root, LAYOUT, "images")
    stats = new_stats(stats)
    labels = read_labels_csv(root / "labels.csv")
    masks = {}
    for path in list_images(root / "masks"):
        masks.setdefault(path.stem, path)
    items = [Item(relative(path, root), path, masks.get(path.stem), labels.get(path.stem, label), domain)
             for path in list_images(root / "images")]
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND,
                              mask_orientation=mask_orientation, stats=stats)
