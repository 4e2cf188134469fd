"""COCO instance-segmentation JSON (CVAT, Roboflow, Label Studio, detectron2 exports).

Layout::

    ROOT/<annotations>         {"images": [{"id", "file_name", "height", "width"}],
                                "annotations": [{"image_id", "category_id", "segmentation", "bbox", "iscrowd"}],
                                "categories": [{"id", "name"}]}
    ROOT/<images>/<file_name>  the photos (``file_name`` may hold sub-folders)

``annotations`` is a path relative to ROOT (default: the only ``*.json`` in ROOT, else in
``ROOT/annotations/``). ``images`` is a folder relative to ROOT (default: ROOT, then ``images/``, then
the JSON's folder — the first where ``file_name`` exists).

``segmentation`` may be polygons (a list of flat ``[x1, y1, x2, y2, ...]`` lists, pixel-edge
coordinates as in COCO), RLE with uncompressed ``counts`` (a list of ints) or compressed ``counts``
(pycocotools' string), decoded here in numpy (:mod:`._shapes`); an annotation without a segmentation
is filled from its ``bbox`` ``[x, y, w, h]`` (note ``bbox_only``). Crowd annotations are defect pixels
too (note ``crowd``). One record per (image, category) present, the union of its annotations
(``component`` 0 when the image has one category, else 1..n in sorted category-name order);
``original_label`` is the category name. Images without annotations are counted in
``stats["skipped_normal"]``; an image file that is missing is counted in ``stats["skipped_no_image"]``;
an annotation that cannot be decoded or whose size differs from its image gives a note
(``segmentation_invalid``) and is left out; one naming an unknown image or category is counted in
``stats["annotations_orphan"]``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import numpy as np

import cai.layouts._shapes as _shapes
from cai.layouts._common import (layout_error, new_stats, photo_in_folders, read_header, records_per_label,
                                 require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "coco"
LICENSE = "unknown"
SOURCE_DOMAIN = ""
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/<annotations>.json (COCO instances: images, annotations, categories) + ROOT/<images>/<file_name>"
log = logging.getLogger(__name__)


def find_annotation_file(root: Path, annotations: str | None) -> Path:
    """The COCO JSON of ``root`` (see the module docstring); :class:`LayoutError` when none or several."""
    if annotations:
        path = root / annotations
        if not path.is_file():
            raise layout_error(root, LAYOUT, f"annotation file {annotations} not found")
        return path
    for folder in (root, root / "annotations"):
        found = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise layout_error(root, LAYOUT, f"several JSON files in {folder}; pass annotations=<file>")
    raise layout_error(root, LAYOUT, "no COCO JSON file in ROOT or ROOT/annotations")


def annotation_mask(annotation: dict, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """One COCO annotation as a (rows, cols) bool mask, with notes (``bbox_only``, ``crowd``).

    Raises
    ------
    ValueError
        An undecodable segmentation, or an RLE whose ``size`` differs from ``size``.
    """
    notes = ["crowd"] if annotation.get("iscrowd") else []
    seg = annotation.get("segmentation")
    if isinstance(seg, dict):
        counts = seg.get("counts")
        if isinstance(counts, list) and seg.get("size") is None:
            raise ValueError("RLE without 'size'")
        mask = _shapes.decode_coco_rle(seg)
        if mask.shape != tuple(size):
            raise ValueError(f"RLE size {mask.shape} differs from the image's {tuple(size)}")
        return mask, notes
    if isinstance(seg, list) and seg:
        polygons = seg if isinstance(seg[0], (list, tuple)) else [seg]
        mask = np.zeros(size, bool)
        for polygon in polygons:
            if len(polygon) < 2:
                continue
            mask |= _shapes.polygon_mask(polygon, size, convention="edge")
        return mask, notes
    bbox = annotation.get("bbox")
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise ValueError(f"bbox {bbox} has no area")
        # the pixels whose centres lie in [x, x+w) x [y, y+h)
        mask = np.zeros(size, bool)
        c0, c1 = int(np.ceil(x - 0.5)), int(np.ceil(x + w - 0.5))
        r0, r1 = int(np.ceil(y - 0.5)), int(np.ceil(y + h - 0.5))
        mask[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
        return mask, notes + ["bbox_only"]
    raise ValueError("no segmentation and no bbox")


def iter_anomalies(root, *, annotations: str | None = None, images: str | None = None, source: str = SOURCE,
                   license: str = LICENSE, domain: str = SOURCE_DOMAIN, source_kind: str = SOURCE_KIND,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per (image, category present), sorted by image path then category.

    Raises :class:`~cai.layouts.LayoutError` when the root, the JSON or ``images`` is missing,
    or the JSON is not a COCO instances file.
    """
    root = require_dirs(root, LAYOUT, *([images] if images else []))
    path = find_annotation_file(root, annotations)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise layout_error(root, LAYOUT, f"{path.name} is not readable JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise layout_error(root, LAYOUT, f"{path.name} has no 'images' and 'annotations' lists")
    stats = new_stats(stats)
    stats.update(skipped_no_image=0, annotations_orphan=0)
    folders = [root / images] if images else [root, root / "images", path.parent]
    return _records(root, doc, folders, source, license, domain, source_kind, stats)


def _records(root, doc, folders, source, license, domain, source_kind, stats):
    categories = {c.get("id"): str(c.get("name", c.get("id"))) for c in doc.get("categories") or [] if isinstance(c, dict)}
    by_image = {}
    for ann in doc["annotations"]:
        if not isinstance(ann, dict):
            stats["annotations_orphan"] += 1
            continue
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    images = {}
    for info in doc["images"]:
        if isinstance(info, dict) and "id" in info and info.get("file_name"):
            images[info["id"]] = info
    stats["annotations_orphan"] += sum(len(v) for k, v in by_image.items() if k not in images)
    entries = []
    for image_id, info in images.items():
        found = photo_in_folders(str(info["file_name"]).replace("\\", "/"), folders, root)
        if found is None:
            stats["skipped_no_image"] += 1
            continue
        entries.append((*found, info, by_image.get(image_id, [])))
    for original, photo, info, anns in sorted(entries, key=lambda e: e[0]):
        stats["images"] += 1
        if not anns:
            stats["skipped_normal"] += 1
            continue
        size = (int(info.get("height") or 0), int(info.get("width") or 0))
        if size[0] < 1 or size[1] < 1:
            try:
                size = read_header(photo).display_shape
            except Exception:  # noqa: BLE001 - QA rejects the undecodable image later
                stats["skipped_no_image"] += 1
                continue
        masks, notes = {}, {}
        for ann in anns:
            if ann.get("category_id") not in categories:
                stats["annotations_orphan"] += 1
                continue
            label = categories[ann["category_id"]]
            try:
                mask, more = annotation_mask(ann, size)
            except (ValueError, TypeError) as exc:
                log.warning("%s: annotation %s skipped: %s", original, ann.get("id"), exc)
                notes.setdefault(label, []).append("segmentation_invalid")
                continue
            masks[label] = masks[label] | mask if label in masks else mask
            notes.setdefault(label, []).extend(n for n in more if n not in notes[label])
        yield from records_per_label({label: masks.get(label) for label in set(masks) | set(notes)},
                                     original_file=original, image_path=photo, source=source, license=license,
                                     domain=domain, source_kind=source_kind, stats=stats, label_notes=notes)
