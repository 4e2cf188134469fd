"""CVAT "for images 1.1" XML (CVAT's own export: ``annotations.xml`` + ``images/``).

Layout::

    ROOT/<annotations>         <annotations><version>1.1</version><meta>...</meta>
                                 <image id="0" name="a/b.jpg" width="W" height="H">
                                   <polygon label="dent" points="x1,y1;x2,y2;..." occluded="0" .../>
                                   <box label="dent" xtl="" ytl="" xbr="" ybr="" rotation="0" .../>
                                   <ellipse label="dent" cx="" cy="" rx="" ry="" rotation="0" .../>
                                   <mask label="dent" rle="n0, n1, ..." left="" top="" width="" height="" .../>
                                   <polyline/> <points/> <tag/> ...
                                 </image> ...
                               </annotations>
    ROOT/<images>/<name>       the photos

``annotations`` is relative to ROOT (default ``annotations.xml``); ``images`` a folder relative to ROOT
(default: ``images/``, then ROOT). Coordinates are pixel-edge based (a box from 0 to 2 covers
pixels 0 and 1). ``polygon``, ``box`` (with its ``rotation`` in degrees, clockwise about its centre),
``ellipse`` and ``mask`` (row-major RLE over its box, starting with background, see
:func:`~cai.layouts._shapes.decode_cvat_rle`) are filled; ``polyline``, ``points``,
``cuboid``, ``skeleton`` and ``tag`` have no area and are counted in ``stats["shapes_skipped"]``. One
record per (image, label) present, the union of its shapes (``component`` 0 when the image has one
label, else 1..n in sorted label order). Images without a fillable shape are counted in
``stats["skipped_normal"]``, missing photos in ``stats["skipped_no_image"]``; a malformed shape gives
note ``shape_invalid`` and is left out.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Iterator

import numpy as np

import cai.layouts._shapes as _shapes
from cai.layouts._common import (layout_error, new_stats, photo_in_folders, read_header, records_from_shapes,
                                 require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "cvat"
LICENSE = "unknown"
SOURCE_DOMAIN = ""
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/annotations.xml (CVAT for images 1.1: <image name width height> with polygon/box/ellipse/mask) + ROOT/images/<name>"
FILLED = ("polygon", "box", "ellipse", "mask")
log = logging.getLogger(__name__)


def _float(element, name: str) -> float:
    value = element.get(name)
    if value is None:
        raise ValueError(f"<{element.tag}> has no '{name}'")
    return float(value)


def shape_mask(element, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool mask of one fillable CVAT shape element; ValueError when malformed."""
    tag = element.tag
    if tag == "polygon":
        text = element.get("points") or ""
        points = [tuple(float(v) for v in p.split(",")) for p in text.split(";") if p.strip()]
        return _shapes.polygon_mask(points, size, convention="edge")
    if tag == "box":
        x0, y0, x1, y1 = (_float(element, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        angle = float(element.get("rotation") or 0.0)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        if angle:
            centre = corners.mean(axis=0)
            t = np.deg2rad(angle)
            rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # clockwise on screen (y down)
            corners = (corners - centre) @ rot.T + centre
        # pixel-edge box [x0, x1) x [y0, y1): the pixels whose centres lie inside
        return _shapes.polygon_mask(corners, size, convention="edge") if angle else _edge_box(x0, y0, x1, y1, size)
    if tag == "ellipse":
        cx, cy, rx, ry = (_float(element, k) for k in ("cx", "cy", "rx", "ry"))
        return _shapes.ellipse_mask((cx, cy), (rx, ry), size, float(element.get("rotation") or 0.0), convention="edge")
    if tag == "mask":
        return _shapes.decode_cvat_rle(element.get("rle") or "", _float(element, "left"), _float(element, "top"),
                                       _float(element, "width"), _float(element, "height"), size)
    raise KeyError(tag)


def _edge_box(x0, y0, x1, y1, size):
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box ({x0}, {y0}) - ({x1}, {y1}) has no area")
    mask = np.zeros(size, bool)
    c0, c1 = int(np.ceil(x0 - 0.5)), int(np.ceil(x1 - 0.5))
    r0, r1 = int(np.ceil(y0 - 0.5)), int(np.ceil(y1 - 0.5))
    mask[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
    return mask


def image_masks(element, size: tuple[int, int]) -> tuple[dict, dict, list]:
    """Rasterise the shapes of one ``<image>`` element: ``(label -> mask, skipped type -> count,
    notes)``, like :func:`cai.layouts.labelme.label_masks`."""
    masks, skipped, notes = {}, {}, []
    for child in element:
        if child.tag not in FILLED:
            skipped[child.tag] = skipped.get(child.tag, 0) + 1
            continue
        label = str(child.get("label", ""))
        try:
            mask = shape_mask(child, size)
        except (ValueError, TypeError) as exc:
            log.warning("CVAT <%s label=%r> skipped: %s", child.tag, label, exc)
            notes.append(f"shape_invalid:{label}")
            continue
        masks[label] = masks[label] | mask if label in masks else mask
    return masks, skipped, notes


def iter_anomalies(root, *, annotations: str = "annotations.xml", images: str | None = None, source: str = SOURCE,
                   license: str = LICENSE, domain: str = SOURCE_DOMAIN, source_kind: str = SOURCE_KIND,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per (image, label present), sorted by image path then label.

    Raises :class:`~cai.layouts.LayoutError` when ROOT or the XML is missing or not CVAT XML.
    """
    root = require_dirs(root, LAYOUT, *([images] if images else []))
    path = root / annotations
    if not path.is_file():
        raise layout_error(root, LAYOUT, f"annotation file {annotations} not found")
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise layout_error(root, LAYOUT, f"{annotations} is not readable XML ({exc})") from exc
    if tree.getroot().tag != "annotations":
        raise layout_error(root, LAYOUT, f"{annotations}: root element <{tree.getroot().tag}>, not <annotations>")
    stats = new_stats(stats)
    stats.update(skipped_no_image=0, shapes_skipped={})
    folders = [root / images] if images else [root / "images", root]
    return _records(root, tree.getroot().findall("image"), folders, source, license, domain, source_kind, stats)


def _records(root, elements, folders, source, license, domain, source_kind, stats):
    entries = []
    for element in elements:
        found = photo_in_folders(str(element.get("name") or "").replace("\\", "/"), folders, root)
        if found is None:
            stats["skipped_no_image"] += 1
            continue
        entries.append((*found, element))
    for original, photo, element in sorted(entries, key=lambda e: e[0]):
        stats["images"] += 1
        try:
            size = (int(element.get("height")), int(element.get("width")))
        except (TypeError, ValueError):
            size = read_header(photo).display_shape
        yield from records_from_shapes(*image_masks(element, size), original_file=original, image_path=photo,
                                       source=source, license=license, domain=domain, source_kind=source_kind,
                                       stats=stats)
