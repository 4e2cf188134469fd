"""labelme JSON annotations (one ``.json`` per photo): polygons, rectangles, circles and masks.

Layout::

    ROOT/<labels>/**/<name>.json   labelme files: {"shapes": [{"label", "points", "shape_type", ...}],
                                   "imagePath", "imageData" (base64 or null), "imageHeight", "imageWidth"}
    the photo of each file:        its embedded ``imageData``, else the file ``imagePath`` names
                                   (relative to the JSON's folder, as labelme writes it), else the
                                   same name or the JSON's stem in ``<images>`` or beside the JSON

``labels`` and ``images`` are folders relative to ROOT (default: ROOT itself, searched recursively for
``*.json``). The photo is looked up in that order, so an export whose ``imageData`` was nulled to save
space (e.g. BSData: ``label/*.json`` + ``data/*.jpg``, ``images="data"``) and one that embeds the photo
both work. An embedded photo is written once, content-addressed, to ``cache_dir`` (default
``$CAI_HUB_CACHE/labelme`` or ``~/.cache/cai-hub/labelme``) so the build can read and embed it like any
file; ``original_file`` is then the JSON's path.

Shapes: ``polygon``, ``rectangle`` (two corners), ``circle`` (centre + a point on it) and ``mask`` (a
base64 PNG of the box between its two points, labelme >= 5.3) are filled; points are pixel centres
(labelme's own ``shape_to_mask``). ``line``, ``linestrip``, ``point`` and unknown shape types have no
area: they are left out and counted in ``stats["shapes_skipped"]`` by type. Every label of a file gives
one record: the union of its shapes (``component`` 0 when the file has one label, else 1..n in sorted
label order). A file with no fillable shape is an image without defect: counted in
``stats["skipped_normal"]``. The masks are drawn at ``imageHeight`` x ``imageWidth`` (the displayed,
EXIF-rotated image labelme shows), then checked against the photo (``mask_size_mismatch`` otherwise).

Bad files are counted, not fatal: invalid JSON or not a labelme file -> ``stats["skipped_bad_json"]``;
no photo found -> ``stats["skipped_no_image"]``; a shape with bad points -> note ``shape_invalid``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

import cai.layouts._shapes as _shapes
from cai.layouts._common import (IMAGE_EXTENSIONS, layout_error, new_stats, read_header, records_from_shapes,
                                 relative, require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "labelme"
LICENSE = "unknown"  # the annotator's/photographer's choice: pass license=...
SOURCE_DOMAIN = ""
SOURCE_KIND = "existing_dataset"
LAYOUT = ("ROOT/<labels>/**/<name>.json (labelme: shapes, imagePath, imageData base64 or null) "
          "+ the photo: embedded, at imagePath, or <images>/<name or stem>.<ext>")
FILLED = ("polygon", "rectangle", "circle", "mask")
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where embedded photos are written: ``$CAI_HUB_CACHE/labelme`` or ``~/.cache/cai-hub/labelme``."""
    base = os.environ.get("CAI_HUB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cai-hub"
    return Path(base) / "labelme"


def _embedded_photo(image_data: str, cache_dir: Path) -> Path:
    """Decode base64 ``imageData`` and write it (once) as ``<sha256>.<ext>``; ValueError when it is
    not a decodable image."""
    try:
        raw = base64.b64decode(image_data, validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            fmt = (image.format or "png").lower()
            image.verify()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"imageData is not a base64-encoded image ({exc})") from exc
    digest = hashlib.sha256(raw).hexdigest()
    path = cache_dir / digest[:2] / f"{digest}.{'jpg' if fmt == 'jpeg' else fmt}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)
    return path


def _find_photo(json_path: Path, doc: dict, images: Path | None) -> Path | None:
    """The photo file of a labelme document (see the module docstring for the order)."""
    named = str(doc.get("imagePath") or "").replace("\\", "/")
    candidates = []
    if named:
        candidates.append(json_path.parent / named)
        if images is not None:
            candidates.append(images / Path(named).name)
    for folder in ([images] if images is not None else []) + [json_path.parent]:
        candidates += [folder / f"{json_path.stem}{ext}" for ext in IMAGE_EXTENSIONS]
        candidates += [folder / f"{json_path.stem}{ext.upper()}" for ext in IMAGE_EXTENSIONS]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def _shape_mask(shape: dict, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool mask of one fillable labelme shape; ValueError when malformed."""
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    if kind == "polygon":
        return _shapes.polygon_mask(points, size)
    if kind == "rectangle":
        pts = np.asarray(points, dtype=float)
        if pts.shape != (2, 2):
            raise ValueError(f"rectangle needs 2 points, got {pts.shape}")
        return _shapes.rectangle_mask(pts[0], pts[1], size)
    if kind == "circle":
        pts = np.asarray(points, dtype=float)
        if pts.shape != (2, 2):
            raise ValueError(f"circle needs 2 points, got {pts.shape}")
        return _shapes.circle_mask(pts[0], pts[1], size)
    if kind == "mask":  # labelme >= 5.3: PNG of the box from points[0] to points[1]
        pts = np.asarray(points, dtype=float)
        if pts.shape != (2, 2) or not shape.get("mask"):
            raise ValueError("mask shape needs 2 points and a base64 'mask'")
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as png:
            crop = np.asarray(png.convert("L")) > 0
        (c0, r0) = np.round(pts.min(axis=0)).astype(int)
        out = np.zeros(size, bool)
        r1, c1 = min(r0 + crop.shape[0], size[0]), min(c0 + crop.shape[1], size[1])
        if r0 < 0 or c0 < 0 or r1 <= r0 or c1 <= c0:
            raise ValueError(f"mask box at row {r0}, col {c0} lies outside the image")
        out[r0:r1, c0:c1] = crop[:r1 - r0, :c1 - c0]
        return out
    raise KeyError(kind)


def label_masks(doc: dict, size: tuple[int, int]) -> tuple[dict, dict, list]:
    """Rasterise a labelme document's shapes.

    Parameters
    ----------
    doc : dict
        The parsed labelme JSON.
    size : (rows, cols)
        Mask size.

    Returns
    -------
    masks : dict
        label -> (rows, cols) bool ndarray, the union of that label's fillable shapes.
    skipped : dict
        shape type -> count of shapes without area (line, point, ...) or of an unknown type.
    notes : list of str
        ``shape_invalid:<label>`` for each malformed shape (left out).
    """
    masks, skipped, notes = {}, {}, []
    for shape in doc.get("shapes") or []:
        if not isinstance(shape, dict):
            notes.append("shape_invalid:not_a_mapping")
            continue
        kind = shape.get("shape_type") or "polygon"
        label = str(shape.get("label", ""))
        if kind not in FILLED:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        try:
            mask = _shape_mask(shape, size)
        except (ValueError, TypeError, binascii.Error, UnidentifiedImageError, OSError) as exc:
            log.warning("labelme shape %r (%s) skipped: %s", label, kind, exc)
            notes.append(f"shape_invalid:{label}")
            continue
        masks[label] = masks[label] | mask if label in masks else mask
    return masks, skipped, notes


def iter_anomalies(root, *, labels: str = ".", images: str | None = None, cache_dir=None,
                   source: str = SOURCE, license: str = LICENSE, domain: str = SOURCE_DOMAIN,
                   source_kind: str = SOURCE_KIND, stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per (labelme file, label), files sorted by path.

    Raises :class:`~cai.layouts.LayoutError` when ROOT, ``labels`` or ``images`` is missing.
    """
    root = require_dirs(root, LAYOUT, labels, *([images] if images else []))
    stats = new_stats(stats)
    stats.update(skipped_bad_json=0, skipped_no_image=0, shapes_skipped={})
    files = sorted((root / labels).rglob("*.json"))
    if not files:
        raise layout_error(root, LAYOUT, f"no .json file under {labels}")
    return _records(root, files, (root / images) if images else None,
                    Path(cache_dir) if cache_dir else default_cache_dir(), source, license, domain, source_kind, stats)


def _records(root, files, images, cache_dir, source, license, domain, source_kind, stats):
    found = []
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("%s: not readable JSON (%s)", path, exc)
            stats["skipped_bad_json"] += 1
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            stats["skipped_bad_json"] += 1
            continue
        notes = []
        if doc.get("imageData"):
            try:
                photo = _embedded_photo(doc["imageData"], cache_dir)
                original = relative(path, root)
            except ValueError as exc:
                log.warning("%s: %s", path, exc)
                photo, notes = None, ["image_data_invalid"]
        else:
            photo = None
        if photo is None:
            photo = _find_photo(path, doc, images)
            original = relative(photo, root) if photo is not None and photo.is_relative_to(root) else None
            if photo is not None and original is None:
                original = relative(path, root)
        if photo is None:
            stats["skipped_no_image"] += 1
            continue
        found.append((original, path, photo, doc, notes))
    for original, path, photo, doc, notes in sorted(found, key=lambda f: f[0]):
        stats["images"] += 1
        try:
            display = read_header(photo).display_shape
        except Exception:  # noqa: BLE001 - the build finds the undecodable image again and QA rejects it
            display = None
        size = (int(doc.get("imageHeight") or 0), int(doc.get("imageWidth") or 0))
        if size[0] < 1 or size[1] < 1:
            if display is None:
                stats["skipped_no_image"] += 1
                continue
            size = display
        yield from records_from_shapes(*label_masks(doc, size), original_file=original, image_path=photo,
                                       source=source, license=license, domain=domain, source_kind=source_kind,
                                       stats=stats, image_notes=notes)
