"""MVTec AD (and MVTec-layout sets such as the partial copies in ../shared/data/mvtec_ad).

Layout::

    ROOT/<category>/test/<defect>/<stem>.png|jpg
    ROOT/<category>/ground_truth/<defect>/<stem>_mask.png
    ROOT/<category>/test/good/...        normal: counted in stats["skipped_normal"], not yielded

``original_label`` is the defect folder name, ``source_domain`` the category. A defect image whose
mask file is absent is yielded with ``mask=None`` and note ``mask_missing``.
"""
from __future__ import annotations

from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_from_items, relative, require_dirs,
                                 select_subsets, stem_index)
from cai.layouts.record import RawAnomaly

SOURCE = "mvtec_ad"
LICENSE = "CC-BY-NC-SA-4.0"
SOURCE_DOMAIN = ""  # per record: the category
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/<category>/test/<defect>/<stem>.png|jpg + ROOT/<category>/ground_truth/<defect>/<stem>_mask.png"
NORMAL = "good"


def iter_anomalies(root, *, categories=None, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield every defect image of ``categories`` (default: every folder with a ``test/``)."""
    root = require_dirs(root, LAYOUT)
    present = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    categories = select_subsets(root, LAYOUT, present, categories, "no <category>/test folder", "category")
    stats = new_stats(stats)
    items = []
    for category in sorted(categories):
        for defect_dir in sorted(p for p in (root / category / "test").iterdir() if p.is_dir()):
            images = list_images(defect_dir)
            if defect_dir.name == NORMAL:
                stats["skipped_normal"] += len(images)
                continue
            masks = stem_index(root / category / "ground_truth" / defect_dir.name)
            for path in images:
                items.append(Item(relative(path, root), path, masks.get(path.stem + "_mask"),
                                  defect_dir.name, category))
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND, stats=stats)
