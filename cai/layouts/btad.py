"""BTAD (beanTech Anomaly Detection).

Layout::

    ROOT/<NN>/test/ko/<stem>.bmp|png         anomalous images of product NN
    ROOT/<NN>/ground_truth/ko/<stem>.png     masks
    ROOT/<NN>/test/ok/...                    normal: counted in stats["skipped_normal"]

The layout names no defect types: ``original_label`` is ``ko`` and ``source_domain`` the product
folder (``01``, ``02``, ``03``), so the taxonomy needs per-row overrides for BTAD.
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_from_items, relative, require_dirs,
                                 select_subsets, stem_index)
from cai.layouts.record import RawAnomaly

SOURCE = "btad"
LICENSE = "unknown"  # check the publisher's terms before publishing
SOURCE_DOMAIN = ""  # per record: the product folder
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/<NN>/test/ko/<stem>.bmp|png + ROOT/<NN>/ground_truth/ko/<stem>.png (test/ok = normal)"
LABEL = "ko"


def iter_anomalies(root, *, products=None, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield every ``test/ko`` image of ``products`` (default: every folder with ``test/ko``)."""
    root = require_dirs(root, LAYOUT)
    present = sorted(p.name for p in root.iterdir() if (p / "test" / "ko").is_dir())
    products = select_subsets(root, LAYOUT, present, products, "no <NN>/test/ko folder", "product")
    stats = new_stats(stats)
    items = []
    for product in sorted(products):
        stats["skipped_normal"] += len(list_images(root / product / "test" / "ok"))
        masks = stem_index(root / product / "ground_truth" / "ko")
        items += [Item(relative(path, root), path, masks.get(path.stem), LABEL, product)
                  for path in list_images(root / product / "test" / "ko")]
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND, stats=stats)
