"""`daad stats`: counts of a built DAAD folder and a thumbnail mosaic per class."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .folder import _class_name, read_columns
from .records import CLASSES

SCALE_BUCKETS = (32, 128)  # bbox long side in px: small < 32 <= medium < 128 <= large


def scale_bucket(long_side: int, buckets=SCALE_BUCKETS) -> str:
    """``"small"``, ``"medium"`` or ``"large"`` for a defect bounding-box long side in pixels.

    >>> [scale_bucket(n) for n in (5, 32, 400)]
    ['small', 'medium', 'large']
    """
    small, large = buckets
    return "small" if long_side < small else "medium" if long_side < large else "large"


def _thumbnail(image_bytes: bytes, mask_bytes: bytes, tile: int) -> np.ndarray:
    """(tile, tile, 3) uint8 RGB: the image letterboxed on grey with the mask outline in red."""
    image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    mask = (np.asarray(Image.open(io.BytesIO(mask_bytes)).convert("L")) > 127).astype(np.uint8)
    h, w = mask.shape
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    if not small_mask.any() and mask.any():  # a defect thinner than a thumbnail pixel
        small_mask = (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(small_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    small = np.ascontiguousarray(small)
    cv2.drawContours(small, contours, -1, (255, 0, 0), 1)
    out = np.full((tile, tile, 3), 96, np.uint8)
    r0, c0 = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[r0:r0 + size[1], c0:c0 + size[0]] = small
    return out


def _mosaic(tiles: list, columns: int, pad: int = 2) -> np.ndarray:
    rows = -(-len(tiles) // columns)
    tile = tiles[0].shape[0]
    sheet = np.full((rows * (tile + pad) + pad, columns * (tile + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[pad + r * (tile + pad):pad + r * (tile + pad) + tile, pad + c * (tile + pad):pad + c * (tile + pad) + tile] = t
    return sheet


def _take(folder, indices) -> dict:
    """Rows ``indices`` (global row numbers) of the image and mask columns, read shard by shard."""
    import pyarrow.parquet as pq

    wanted, rows, offset = sorted(indices), {}, 0
    for f in sorted((Path(folder) / "data").glob("train-*.parquet")):
        n = pq.ParquetFile(f).metadata.num_rows
        local = [i - offset for i in wanted if offset <= i < offset + n]
        if local:
            table = pq.read_table(f, columns=["image", "mask"]).take(local)
            rows.update(zip((offset + i for i in local), table.to_pylist()))
        offset += n
    return rows


def daad_stats(folder, out_dir, per_class: int = 24, columns: int = 6, tile: int = 128, echo=print,
               buckets=SCALE_BUCKETS) -> dict:
    """Count the rows of a built DAAD folder and write a mosaic per class.

    Parameters
    ----------
    folder : str or Path
        A built DAAD folder (``data/train-*.parquet``).
    out_dir : str or Path
        Gets ``stats.json`` and ``mosaic_<class>.png`` per class present (the first ``per_class`` rows
        of the class in row order, ``tile`` px thumbnails with the mask outline in red).
    echo : callable or None
        Where the printed summary goes (None: silent).
    buckets : (int, int)
        Bounding-box long side limits of the small / medium / large scale buckets, in px.

    Returns
    -------
    dict
        ``rows``, ``per_class`` (all classes), ``per_source``, ``per_scale``, ``per_class_scale``,
        ``per_license``, ``mosaics`` (class -> file).
    """
    out_dir = Path(out_dir)
    meta = read_columns(folder, ["anomaly_class", "source", "license", "bbox"])  # checks the folder first
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = [_class_name(c) for c in meta.column("anomaly_class").to_pylist()]
    sources = meta.column("source").to_pylist()
    scales = [scale_bucket(max(b[2] - b[0], b[3] - b[1]), buckets) for b in meta.column("bbox").to_pylist()]
    counts = Counter(classes)
    stats = {
        "rows": len(classes),
        "per_class": {c: counts.get(c, 0) for c in CLASSES},
        "per_source": dict(sorted(Counter(sources).items())),
        "per_scale": {s: scales.count(s) for s in ("small", "medium", "large")},
        "scale_buckets_px": {"small": f"< {buckets[0]}", "medium": f"{buckets[0]}-{buckets[1] - 1}",
                             "large": f">= {buckets[1]}"},
        "per_class_scale": {c: {s: sum(1 for cc, ss in zip(classes, scales) if cc == c and ss == s)
                                for s in ("small", "medium", "large")} for c in CLASSES if counts.get(c)},
        "per_source_class": {src: dict(sorted(Counter(c for c, s in zip(classes, sources) if s == src).items()))
                             for src in sorted(set(sources))},
        "per_license": dict(sorted(Counter(meta.column("license").to_pylist()).items())),
        "mosaics": {},
    }
    wanted = {c: [i for i, cc in enumerate(classes) if cc == c][:per_class] for c in CLASSES}
    picks = sorted(i for ids in wanted.values() for i in ids)
    if picks:
        rows = _take(folder, picks)
        for cls, ids in wanted.items():
            if not ids:
                continue
            tiles = [_thumbnail(rows[i]["image"]["bytes"], rows[i]["mask"]["bytes"], tile) for i in ids]
            path = out_dir / f"mosaic_{cls}.png"
            cv2.imwrite(str(path), cv2.cvtColor(_mosaic(tiles, min(columns, len(tiles))), cv2.COLOR_RGB2BGR))
            stats["mosaics"][cls] = str(path)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    if echo:
        echo(f"{stats['rows']} rows")
        for key, label in (("per_class", "class"), ("per_source", "source"), ("per_scale", "scale (bbox long side)"),
                           ("per_license", "licence")):
            echo(f"per {label}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
        echo(f"scale buckets: small < {buckets[0]} px <= medium < {buckets[1]} px <= large")
        echo(f"mosaics: {len(stats['mosaics'])} in {out_dir}")
    return stats


def write_mosaics(folder, out_dir, per_class: int = 12, columns: int = 6, tile: int = 96) -> dict:
    """One ``mosaic_<class>.png`` per class present in a built DAAD folder (the first ``per_class`` rows
    of the class in row order, mask outlined in red), for the card; returns class -> file name.
    Mosaics of classes no longer present are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = [_class_name(c) for c in read_columns(folder, ["anomaly_class"]).column("anomaly_class").to_pylist()]
    wanted = {c: [i for i, cc in enumerate(classes) if cc == c][:per_class] for c in CLASSES}
    picks = sorted(i for ids in wanted.values() for i in ids)
    rows = _take(folder, picks) if picks else {}
    written = {}
    for cls, ids in wanted.items():
        path = out_dir / f"mosaic_{cls}.png"
        if not ids:
            path.unlink(missing_ok=True)
            continue
        tiles = [_thumbnail(rows[i]["image"]["bytes"], rows[i]["mask"]["bytes"], tile) for i in ids]
        cv2.imwrite(str(path), cv2.cvtColor(_mosaic(tiles, min(columns, len(tiles))), cv2.COLOR_RGB2BGR))
        written[cls] = path.name
    return written
