"""VisA (Visual Anomaly, Amazon).

Layout::

    ROOT/<object>/Data/Images/Anomaly/<stem>.JPG
    ROOT/<object>/Data/Masks/Anomaly/<stem>.png
    ROOT/<object>/Data/Images/Normal/...          normal: counted in stats["skipped_normal"]
    ROOT/split_csv/1cls.csv                       optional: object,split,label,image,mask
    ROOT/<object>/image_anno.csv                  optional: image,label,mask (defect description)

When the split CSV is present it decides which images are anomalies (``label`` = ``anomaly``) and
where their masks are; otherwise the ``Anomaly`` folders are listed and masks matched by stem.
``original_label`` is the defect description from ``image_anno.csv`` (e.g. ``scratch``, or
``"melt, scratch"`` for several) or ``anomaly`` when that file is absent; ``source_domain`` is the
object.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from cai.layouts._common import (Item, layout_error, list_images, new_stats, records_from_items, relative,
                                 require_dirs, select_subsets, stem_index)
from cai.layouts.record import RawAnomaly

SOURCE = "visa"
LICENSE = "CC-BY-4.0"
SOURCE_DOMAIN = ""  # per record: the object
SOURCE_KIND = "existing_dataset"
LAYOUT = ("ROOT/<object>/Data/Images/Anomaly/<stem>.JPG + ROOT/<object>/Data/Masks/Anomaly/<stem>.png "
          "[+ ROOT/split_csv/1cls.csv: object,split,label,image,mask] [+ ROOT/<object>/image_anno.csv]")
SPLIT_CSV = "split_csv/1cls.csv"
LABEL = "anomaly"


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _defect_labels(root: Path, obj: str) -> dict[str, str]:
    """``{image path relative to root: defect description}`` from ``<object>/image_anno.csv``."""
    path = root / obj / "image_anno.csv"
    if not path.is_file():
        return {}
    return {row["image"]: row["label"] for row in _read_csv(path) if row.get("image") and row.get("label")}


def iter_anomalies(root, *, objects=None, split_csv: str | None = SPLIT_CSV, source: str = SOURCE,
                   license: str = LICENSE, stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield the anomalous images of ``objects`` (default: all), from the split CSV when present."""
    root = require_dirs(root, LAYOUT)
    csv_path = root / split_csv if split_csv else None
    if csv_path is not None and csv_path.is_file():
        rows = _read_csv(csv_path)
        if rows and not {"object", "label", "image", "mask"} <= set(rows[0]):
            raise layout_error(root, LAYOUT, f"{split_csv} lacks columns object,label,image,mask")
        present = sorted({row["object"] for row in rows})
    else:
        rows = None
        present = sorted(p.name for p in root.iterdir() if (p / "Data" / "Images" / "Anomaly").is_dir())
    objects = select_subsets(root, LAYOUT, present, objects, "no anomaly images", "object")
    stats = new_stats(stats)
    labels = {obj: _defect_labels(root, obj) for obj in objects}
    items = []
    if rows is not None:
        for row in rows:
            if row["object"] not in labels:
                continue
            if row["label"].lower() != "anomaly":
                stats["skipped_normal"] += 1
                continue
            path = root / row["image"]
            mask = root / row["mask"] if row["mask"] else None
            items.append(Item(relative(path, root), path, mask, labels[row["object"]].get(row["image"], LABEL),
                              row["object"]))
    else:
        for obj in sorted(objects):
            stats["skipped_normal"] += len(list_images(root / obj / "Data" / "Images" / "Normal"))
            masks = stem_index(root / obj / "Data" / "Masks" / "Anomaly")
            for path in list_images(root / obj / "Data" / "Images" / "Anomaly"):
                rel = relative(path, root)
                items.append(Item(rel, path, masks.get(path.stem),
                                  labels[obj].get(rel, LABEL), obj))
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND, stats=stats)
