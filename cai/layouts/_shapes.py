"""Vector annotations (polygons, boxes, circles, ellipses) and run-length masks rasterised to
(H, W) bool defect masks, for the annotation-tool importers (labelme, COCO, CVAT).

Coordinates are (x, y) = (col, row) pairs as annotation tools write them. Two conventions exist:

* ``"center"``: integer coordinates are pixel centres (labelme: it rasterises with Pillow's
  ``ImageDraw.polygon`` on the raw points);
* ``"edge"``: integer coordinates are pixel corners, pixel (r, c) covers [c, c+1) x [r, r+1)
  (COCO, CVAT); the points are shifted by -0.5 px before rasterising.

A pixel belongs to a polygon when its centre lies inside it (even-odd rule, scanlines through the
pixel centres); with the ``"center"`` convention the pixels its outline passes through are added, as
Pillow's ``ImageDraw.polygon`` (labelme) does, so a degenerate polygon still marks its pixels. A
pixel belongs to a circle or ellipse when its centre lies inside or on it (semi-axes under 0.5 px
count as 0.5, so a point-like ellipse keeps its centre pixel).

Run-length masks:

* COCO RLE (:func:`decode_coco_rle`): ``{"size": [h, w], "counts": ...}`` over the image in
  column-major (Fortran) order, runs alternating background / defect starting with background;
  ``counts`` is a list of ints (uncompressed) or pycocotools' compressed string (6-bit characters
  offset by 48, 5 value bits + a continuation bit, differences to the run two back from the third run on).
* CVAT RLE (:func:`decode_cvat_rle`): ``"n0, n1, ..."`` over a ``width`` x ``height`` box at
  (``left``, ``top``) in row-major order, starting with background.
"""
from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # cv2 fixed-point bits: 1/16 px
_SCALE = 1 << _SHIFT
CONVENTIONS = ("center", "edge")


def _points(points, name: str = "points") -> np.ndarray:
    """(N, 2) float64 array of (x, y) points; ValueError when malformed or not finite."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a list of (x, y) numbers, got {points!r:.80}") from exc
    if array.ndim == 1 and array.size % 2 == 0:
        array = array.reshape(-1, 2)  # COCO's flat [x1, y1, x2, y2, ...]
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be (x, y) pairs, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite coordinates")
    return array


def _fixed(points: np.ndarray, convention: str) -> np.ndarray:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "edge":
        points = points - 0.5
    return np.round(points * _SCALE).astype(np.int32)


def _check_shape(shape) -> tuple[int, int]:
    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"mask shape must be positive (rows, cols), got {tuple(shape)}")
    return rows, cols


def polygon_mask(points, shape, convention: str = "center") -> np.ndarray:
    """Fill one polygon.

    Parameters
    ----------
    points : sequence of (x, y) pairs, or a flat [x1, y1, x2, y2, ...] list (COCO)
        At least one point; 1 or 2 points give the pixels on that point/segment.
    shape : (rows, cols)
    convention : {"center", "edge"}
        See the module docstring.

    Returns
    -------
    (rows, cols) bool ndarray

    Examples
    --------
    >>> polygon_mask([(1, 1), (3, 1), (3, 2), (1, 2)], (4, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    rows, cols = _check_shape(shape)
    raw = _points(points)
    centres = raw - 0.5 if convention == "edge" else raw
    out = _fill_centres(centres, rows, cols)
    if convention == "center":
        pts = _fixed(raw, convention)
        canvas = np.zeros((rows, cols), np.uint8)
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], True, 1, lineType=cv2.LINE_8, shift=_SHIFT)
        out |= canvas.astype(bool)
    return out


def _fill_centres(pts: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) bool: pixels whose centre (col, row) lies inside the polygon ``pts`` ((N, 2) float
    (x, y) in pixel-centre coordinates), even-odd rule; edges are half-open in y so a shared vertex
    is counted once."""
    out = np.zeros((rows, cols), bool)
    if len(pts) < 3:
        return out
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    r_lo, r_hi = max(int(np.ceil(y0.min())), 0), min(int(np.floor(y0.max())), rows - 1)
    for r in range(r_lo, r_hi + 1):
        crossing = ((y0 <= r) & (y1 > r)) | ((y1 <= r) & (y0 > r))
        if not crossing.any():
            continue
        xs = np.sort(x0[crossing] + (r - y0[crossing]) * (x1[crossing] - x0[crossing]) / (y1[crossing] - y0[crossing]))
        for a, b in zip(xs[0::2], xs[1::2]):
            c0, c1 = max(int(np.ceil(a)), 0), min(int(np.floor(b)), cols - 1)
            if c1 >= c0:
                out[r, c0:c1 + 1] = True
    return out


def rectangle_mask(corner_a, corner_b, shape, convention: str = "center") -> np.ndarray:
    """Fill the axis-aligned rectangle with opposite corners ``corner_a`` and ``corner_b`` (x, y),
    in either order. Returns a (rows, cols) bool ndarray."""
    (x0, y0), (x1, y1) = _points([corner_a, corner_b], "rectangle corners")
    return polygon_mask([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], shape, convention)


def ellipse_mask(center, radii, shape, angle: float = 0.0, convention: str = "center") -> np.ndarray:
    """Fill an ellipse of centre (x, y), semi-axes (rx, ry) >= 0 and rotation ``angle`` in degrees
    (clockwise in image coordinates, as CVAT and OpenCV count it). Returns a (rows, cols) bool ndarray."""
    rows, cols = _check_shape(shape)
    (cx, cy), (rx, ry) = _points([center, radii], "ellipse centre/radii")
    if rx < 0 or ry < 0:
        raise ValueError(f"ellipse radii must be >= 0, got {(rx, ry)}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "edge":
        cx, cy = cx - 0.5, cy - 0.5
    rx, ry = max(rx, 0.5), max(ry, 0.5)
    out = np.zeros((rows, cols), bool)
    reach = max(rx, ry)
    r0, r1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)), rows - 1)
    c0, c1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)), cols - 1)
    if r1 < r0 or c1 < c0:
        return out
    yy, xx = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(np.float64)
    t = np.deg2rad(float(angle))
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(t) + dy * np.sin(t)      # along the rx axis, rotated clockwise on screen (rows down)
    v = -dx * np.sin(t) + dy * np.cos(t)
    out[r0:r1 + 1, c0:c1 + 1] = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0 + 1e-9
    return out


def circle_mask(center, point_on_circle, shape, convention: str = "center") -> np.ndarray:
    """Fill the circle through ``point_on_circle`` around ``center`` (labelme's two-point circle)."""
    (cx, cy), (px, py) = _points([center, point_on_circle], "circle points")
    radius = float(np.hypot(px - cx, py - cy))
    return ellipse_mask((cx, cy), (radius, radius), shape, 0.0, convention)


def _coco_counts_from_string(text: str) -> list[int]:
    """Run lengths of pycocotools' compressed RLE string (``rleFrString`` of its maskApi)."""
    counts, p = [], 0
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("truncated COCO RLE string")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {chr(data[p])!r} in COCO RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _runs_to_flat(counts, total: int, what: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"{what}: run lengths must be non-negative integers")
    if int(counts.sum()) != total:
        raise ValueError(f"{what}: run lengths sum to {int(counts.sum())}, expected {total} pixels")
    values = np.zeros(counts.size, bool)
    values[1::2] = True
    return np.repeat(values, counts)


def decode_coco_rle(segmentation: dict) -> np.ndarray:
    """Decode a COCO RLE segmentation (compressed string or uncompressed list of counts).

    Parameters
    ----------
    segmentation : dict
        ``{"size": [rows, cols], "counts": str | bytes | list of int}``.

    Returns
    -------
    (rows, cols) bool ndarray

    Raises
    ------
    ValueError
        Missing keys, a bad character, or counts that do not cover rows x cols pixels.

    Examples
    --------
    >>> decode_coco_rle({"size": [2, 3], "counts": [1, 2, 3]}).astype(int)
    array([[0, 1, 0],
           [1, 0, 0]])
    """
    try:
        rows, cols = (int(v) for v in segmentation["size"])
        counts = segmentation["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"COCO RLE needs 'size': [rows, cols] and 'counts', got {segmentation!r:.80}") from exc
    if isinstance(counts, (str, bytes)):
        counts = _coco_counts_from_string(counts)
    flat = _runs_to_flat(counts, rows * cols, "COCO RLE")
    return flat.reshape(cols, rows).T.copy()


def decode_cvat_rle(rle, left: int, top: int, width: int, height: int, shape) -> np.ndarray:
    """Decode a CVAT "for images 1.1" ``<mask>`` into a whole-image mask.

    Parameters
    ----------
    rle : str or sequence of int
        ``"n0, n1, ..."``: run lengths over the ``height`` x ``width`` box in row-major order,
        alternating background / defect, starting with background.
    left, top, width, height : int
        The box (columns from ``left``, rows from ``top``).
    shape : (rows, cols)
        The image size; the box must lie inside it.

    Returns
    -------
    (rows, cols) bool ndarray
    """
    rows, cols = _check_shape(shape)
    left, top, width, height = (int(round(float(v))) for v in (left, top, width, height))
    if width < 1 or height < 1 or left < 0 or top < 0 or left + width > cols or top + height > rows:
        raise ValueError(f"CVAT mask box left={left} top={top} width={width} height={height} "
                         f"is not inside the {cols}x{rows} image")
    if isinstance(rle, str):
        try:
            rle = [int(v) for v in rle.replace(" ", "").split(",") if v != ""]
        except ValueError as exc:
            raise ValueError(f"CVAT mask rle must be comma-separated integers, got {rle[:40]!r}") from exc
    out = np.zeros((rows, cols), bool)
    out[top:top + height, left:left + width] = _runs_to_flat(rle, width * height, "CVAT mask rle").reshape(height, width)
    return out
