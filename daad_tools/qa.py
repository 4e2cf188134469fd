"""Mask QA for DAAD: per-row checks on a defect mask and set-wide duplicate detection.

Everything here is pure: arrays and plain values in, flags and counts out (no files, no hub).
The build (:mod:`daad_tools.build`) calls these on every decoded row and decides which rows are
published with :func:`decide`.

Flags
-----
Per row (:func:`row_flags`):

``empty``            no defect pixel (or no mask at all)
``trivial``          defect bounding box long side < ``min_long_side`` px or area < ``min_area`` px
``touches_border``   a defect pixel lies on the image border
``covers_most``      defect area > ``max_area_ratio`` of the image
``many_components``  more than ``max_components`` connected components
``soft_edges``       the source mask had intermediate values and was binarised (importer note)
``size_mismatch``    the source mask did not have the image's size (importer note, or found on decode)
``mask_unreadable``  the source mask could not be read (importer note)
``image_unreadable`` the image could not be decoded (found on decode)
``coarse_mask``      the mask is much wider than the visible defect inside it (:mod:`daad_tools.refine`)
``refined_mask``     the row carries a refined mask in ``mask_refined`` (:mod:`daad_tools.refine`)
``border_trimmed``   the source's border policy ``trim`` cut the mask back from the image border
``border_excluded``  the source's border policy ``exclude`` and the defect touches the border
                     (:mod:`daad_tools.border`; always rejects)

Across the set (:func:`find_duplicates`), per *origin* (one source image: ``source`` +
``original_file``; all rows cut from one image share it and are never duplicates of each other):

``exact_duplicate``  the decoded RGB pixels equal those of another origin (:func:`image_hash`)
``near_duplicate``   the 64-bit DCT perceptual hashes (:func:`phash`) of two origins whose
                     aspect ratios agree within 10 % differ in at most ``near_duplicate_distance``
                     bits (clusters are closed transitively)

Keep rule for a duplicate group (deterministic, independent of input order): keep the origin that
(1) has at least one row that passes the per-row checks, then (2) comes from the source with the
smallest priority (the recipe's source order), then (3) has the smallest origin key; flag all the
others, recording which origin they duplicate.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

ROW_FLAGS = ("empty", "trivial", "touches_border", "covers_most", "many_components", "soft_edges",
             "size_mismatch", "mask_unreadable", "image_unreadable",
             "coarse_mask", "refined_mask", "border_trimmed", "border_excluded")
SET_FLAGS = ("exact_duplicate", "near_duplicate")
FLAGS = ROW_FLAGS + SET_FLAGS
DEFAULT_REJECT = ("empty", "trivial", "size_mismatch", "mask_unreadable", "image_unreadable",
                  "exact_duplicate", "near_duplicate")
# rows with one of these have no usable (image, mask) pair: never published, even when overridden
UNPUBLISHABLE = ("image_unreadable",)

# importer notes (``RawAnomaly.notes``) that mean a QA flag; a note may carry a detail after ":" or "="
NOTE_FLAGS = {
    "soft_edges": "soft_edges",
    "mask_soft_binarized": "soft_edges",
    "mask_soft": "soft_edges",
    "mask_not_binary": "soft_edges",
    "mask_binarized": "soft_edges",
    "size_mismatch": "size_mismatch",
    "mask_size_mismatch": "size_mismatch",
    "mask_resized": "size_mismatch",
    "mask_unreadable": "mask_unreadable",
    "corrupt_mask": "mask_unreadable",
    "mask_missing": "mask_unreadable",
    "image_unreadable": "image_unreadable",
    "border_trimmed": "border_trimmed",
}


@dataclass(frozen=True)
class QAConfig:
    """Thresholds of the mask checks and which flags reject a row.

    Attributes
    ----------
    min_long_side : int
        A defect whose bounding-box long side is below this many pixels is ``trivial``.
    min_area : int
        A defect with fewer defect pixels than this is ``trivial``.
    max_area_ratio : float
        A defect covering more than this share of the image is ``covers_most``.
    max_components : int
        A mask with more connected components than this is ``many_components``.
    connectivity : int
        4 or 8, for counting connected components.
    near_duplicate_distance : int
        Largest Hamming distance (of 64 bits) between perceptual hashes of near duplicates; a
        negative value turns near-duplicate detection off.
    near_duplicate_min_mask_iou : float
        Near duplicates must also have alike defects: the IoU of their masks, both resized to
        64 x 64 (:func:`small_mask_iou`), at least this. 0 (default) compares images only. A low-detail
        image (e.g. a long polished spindle squeezed to 32 x 32) gives the same pHash for photos
        whose small defects differ.
    reject : tuple of str
        Flags that keep a row out of the published set.
    keep_ids : tuple of str
        Row ids published even when a rejecting flag is set (the flags stay in ``qa_flags``).
    drop_ids : tuple of str
        Row ids never published (reason ``manual``), e.g. from visual curation.
    """

    min_long_side: int = 8
    min_area: int = 16
    max_area_ratio: float = 0.5
    max_components: int = 10
    connectivity: int = 8
    near_duplicate_distance: int = 2
    near_duplicate_min_mask_iou: float = 0.0
    reject: tuple = DEFAULT_REJECT
    keep_ids: tuple = ()
    drop_ids: tuple = ()

    def __post_init__(self):
        unknown = sorted(set(self.reject) - set(FLAGS))
        if unknown:
            raise ValueError(f"qa.reject: unknown flag(s) {unknown}; known: {list(FLAGS)}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"qa.connectivity must be 4 or 8, got {self.connectivity}")
        if not 0 < self.max_area_ratio <= 1:
            raise ValueError(f"qa.max_area_ratio must be in (0, 1], got {self.max_area_ratio}")
        if self.min_long_side < 0 or self.min_area < 0 or self.max_components < 1:
            raise ValueError("qa.min_long_side and qa.min_area must be >= 0, qa.max_components >= 1")
        for name in ("reject", "keep_ids", "drop_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_dict(cls, values: dict | None) -> "QAConfig":
        """Build from a recipe's ``qa:`` mapping; unknown keys raise ValueError."""
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"qa: unknown setting(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class MaskStats:
    """Geometry of a binary defect mask (``bbox`` is (row0, col0, row1, col1), half-open; None when empty)."""

    area: int
    area_ratio: float
    bbox: tuple | None
    long_side: int
    components: int
    touches_border: bool


def _as_mask(mask, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {mask.shape}")
    if mask.dtype != bool:
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1), got values outside {{0, 1}}")
        mask = mask.astype(bool)
    return mask


def mask_stats(mask, connectivity: int = 8) -> MaskStats:
    """Area, bounding box, connected components and border contact of a defect mask.

    Parameters
    ----------
    mask : (H, W) bool ndarray (or 0/1 integers)
    connectivity : int
        4 or 8.

    Returns
    -------
    MaskStats

    Examples
    --------
    >>> m = np.zeros((10, 10), bool); m[2:4, 3:8] = True
    >>> s = mask_stats(m)
    >>> s.area, s.bbox, s.long_side, s.components, s.touches_border
    (10, (2, 3, 4, 8), 5, 1, False)
    """
    mask = _as_mask(mask)
    area = int(mask.sum())
    if area == 0:
        return MaskStats(0, 0.0, None, 0, 0, False)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    return MaskStats(area, area / mask.size, box, max(box[2] - box[0], box[3] - box[1]), int(n) - 1, border)


def note_flags(notes) -> list[str]:
    """QA flags implied by importer notes (see ``NOTE_FLAGS``); unknown notes are ignored.

    >>> note_flags(["mask_soft_binarized: 37 values", "other"])
    ['soft_edges']
    """
    found = set()
    for note in notes or ():
        key = str(note).split(":", 1)[0].split("=", 1)[0].strip()
        if key in NOTE_FLAGS:
            found.add(NOTE_FLAGS[key])
    return sorted(found, key=FLAGS.index)


def row_flags(mask, config: QAConfig = QAConfig(), notes=(), stats: MaskStats | None = None) -> list[str]:
    """Per-row QA flags of one defect mask, in ``FLAGS`` order.

    Parameters
    ----------
    mask : (H, W) bool ndarray or None
        None (no mask) gives ``empty`` unless a note already says the mask is unreadable.
    config : QAConfig
    notes : iterable of str
        Importer notes (``RawAnomaly.notes``), turned into flags by :func:`note_flags`.
    stats : MaskStats, optional
        Precomputed :func:`mask_stats` of ``mask``.

    Examples
    --------
    >>> m = np.zeros((20, 20), bool); m[0:3, 0:2] = True
    >>> row_flags(m)
    ['trivial', 'touches_border']
    """
    flags = set(note_flags(notes))
    if mask is None:
        if "mask_unreadable" not in flags:
            flags.add("empty")
        return sorted(flags, key=FLAGS.index)
    stats = stats or mask_stats(mask, config.connectivity)
    if stats.area == 0:
        flags.add("empty")
    else:
        if stats.long_side < config.min_long_side or stats.area < config.min_area:
            flags.add("trivial")
        if stats.touches_border:
            flags.add("touches_border")
        if stats.area_ratio > config.max_area_ratio:
            flags.add("covers_most")
        if stats.components > config.max_components:
            flags.add("many_components")
    return sorted(flags, key=FLAGS.index)


def small_mask_iou(a, b, size: int = 64) -> float:
    """IoU of two binary masks of any sizes after both are resized to ``size`` x ``size`` (a cell is
    defect when any of its pixels is): how alike the defects of two near-duplicate images are.

    >>> m = np.zeros((40, 80), bool); m[10:20, 10:30] = True
    >>> small_mask_iou(m, m), small_mask_iou(m, m[:, ::-1])
    (1.0, 0.0)
    """
    def small(m):
        m = _as_mask(m).astype(np.float32)
        return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) > 0

    a, b = small(a), small(b)
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def image_hash(image) -> str:
    """sha256 (hex) of a decoded image's shape and pixels: equal for byte-different files that
    decode to the same pixels (e.g. PNG re-saved at another compression level)."""
    image = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{image.shape}|{image.dtype}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def content_hash(image, mask) -> str:
    """sha256 (hex) of the decoded (H, W, 3) uint8 RGB pixels plus the (H, W) binary mask — the
    ``content_hash`` column of a DAAD row."""
    image = np.ascontiguousarray(image)
    mask = _as_mask(mask)
    h = hashlib.sha256(f"{image.shape}|{image.dtype}|".encode())
    h.update(image.tobytes())
    h.update(f"|mask{mask.shape}|".encode())
    h.update(np.packbits(mask, axis=None).tobytes())
    return h.hexdigest()


def phash(image) -> int:
    """64-bit DCT perceptual hash of an image (grey or RGB uint8), as a signed int64-safe Python int.

    The grey image is resized to 32 x 32 (area interpolation), its 2-D DCT taken, and each of the
    8 x 8 lowest-frequency coefficients compared with the median of the 63 AC ones (bit set when
    above). A uniform brightness shift changes only the DC term; a JPEG re-encode barely moves the
    low frequencies.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        grey = cv2.cvtColor(np.ascontiguousarray(image[..., :3]).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    elif image.ndim == 2:
        grey = image.astype(np.uint8)
    else:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << 64) if value >= 1 << 63 else value  # fits an int64 column


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes (as returned by :func:`phash`)."""
    return bin((a ^ b) & 0xFFFFFFFFFFFFFFFF).count("1")


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _pairwise_hamming(hashes: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """(N, M) uint8 Hamming distances between N and M 64-bit hashes (int64 arrays; ``others``
    defaults to ``hashes``), via a byte popcount table."""
    a = np.ascontiguousarray(hashes, np.int64).view(np.uint8).reshape(-1, 8)
    b = a if others is None else np.ascontiguousarray(others, np.int64).view(np.uint8).reshape(-1, 8)
    dist = np.zeros((len(a), len(b)), np.uint8)
    for k in range(8):
        dist += _POPCOUNT[a[:, k][:, None] ^ b[:, k][None, :]]
    return dist


def _close_pairs(hashes: np.ndarray, aspect: np.ndarray, near: int, tolerance: float, block: int = 1024):
    """Index pairs (i < j) within ``near`` bits whose aspect ratios agree within ``tolerance``
    (relative), computed in row blocks so memory stays O(block x N)."""
    for start in range(0, len(hashes), block):
        rows = slice(start, min(start + block, len(hashes)))
        close = _pairwise_hamming(hashes[rows], hashes) <= near
        a, b = aspect[rows][:, None], aspect[None, :]
        close &= np.abs(a - b) <= tolerance * np.maximum(a, b)
        for i, j in zip(*np.nonzero(close)):
            if start + i < j:
                yield start + int(i), int(j)


@dataclass(frozen=True)
class Origin:
    """One source image, for duplicate detection.

    ``key`` is unique per image (``"<source>/<original_file>"``); ``priority`` is the source's rank
    (lower is preferred); ``passes`` says whether at least one of its rows passes the per-row checks.
    """

    key: str
    image_hash: str
    phash: int
    shape: tuple
    priority: int = 0
    passes: bool = True


def _rank(origin: Origin):
    return (not origin.passes, origin.priority, origin.key)


def find_duplicates(origins, near_distance: int = 2, aspect_tolerance: float = 0.1) -> dict:
    """Flag duplicate source images, keeping one per group (see the module docstring for the rule).

    Parameters
    ----------
    origins : sequence of Origin
        Keys must be unique.
    near_distance : int
        Largest pHash Hamming distance of near duplicates; negative turns the check off.
    aspect_tolerance : float
        Near duplicates must have width/height ratios within this relative difference.

    Returns
    -------
    dict
        ``key -> (flag, kept_key)`` for every flagged origin, flag ``"exact_duplicate"`` or
        ``"near_duplicate"``; origins not in the dict are kept.
    """
    origins = list(origins)
    keys = [o.key for o in origins]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
        raise ValueError(f"origin keys must be unique, repeated: {dup}")
    flagged = {}
    groups = {}
    for o in origins:
        groups.setdefault(o.image_hash, []).append(o)
    representatives = []
    for members in groups.values():
        members.sort(key=_rank)
        representatives.append(members[0])
        for o in members[1:]:
            flagged[o.key] = ("exact_duplicate", members[0].key)
    if near_distance < 0 or len(representatives) < 2:
        return flagged
    representatives.sort(key=_rank)
    hashes = np.array([o.phash for o in representatives], np.int64)
    aspect = np.array([o.shape[1] / max(o.shape[0], 1) for o in representatives])
    # union-find over close pairs; the root of each cluster is its best-ranked member (index order)
    parent = list(range(len(representatives)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _close_pairs(hashes, aspect, near_distance, aspect_tolerance):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    for i, o in enumerate(representatives):
        r = root(i)
        if r != i:
            flagged[o.key] = ("near_duplicate", representatives[r].key)
    # exact duplicates of a near duplicate point at the origin actually kept
    for key, (flag, kept) in list(flagged.items()):
        if flag == "exact_duplicate" and kept in flagged:
            flagged[key] = (flag, flagged[kept][1])
    return flagged


@dataclass
class RowQA:
    """QA input for one candidate row (what :func:`decide` needs).

    ``usable`` is False when the row has no (image, mask) pair to publish (undecodable image, no
    mask, mask of another size): it is never published, even when its id is in ``keep_ids``.
    """

    id: str
    origin: str
    source: str
    anomaly_class: str
    flags: list = field(default_factory=list)
    duplicate_of: str | None = None
    usable: bool = True


def decide(rows, config: QAConfig = QAConfig()) -> tuple[list[bool], dict]:
    """Which rows are published, and the QA report.

    Parameters
    ----------
    rows : sequence of RowQA
        With all their flags (per row and duplicate flags).
    config : QAConfig
        ``reject`` flags keep a row out unless its id is in ``keep_ids``; ``drop_ids`` always
        keep it out; ``UNPUBLISHABLE`` flags win over ``keep_ids``.

    Returns
    -------
    keep : list of bool
        One per row, in input order.
    report : dict
        ``rows``, ``published``, ``rejected`` (counts); ``flags`` (flag -> rows carrying it);
        ``rejected_by_reason`` (reason -> rejected rows carrying it); ``per_source`` and
        ``per_class`` (name -> {rows, published, rejected, flags}); ``rejected_rows`` (every
        rejected row: id, source, anomaly_class, reasons, flags, duplicate_of); ``overridden``
        (ids kept despite a rejecting flag); ``unknown_override_ids`` (keep/drop ids matching no row);
        ``config``.
    """
    reject, keep_ids, drop_ids = set(config.reject), set(config.keep_ids), set(config.drop_ids)
    keep, rejected_rows, overridden = [], [], []
    flag_counts, reason_counts = Counter(), Counter()
    per = {"per_source": {}, "per_class": {}}
    for row in rows:
        flags = list(row.flags)
        reasons = [f for f in flags if f in reject]
        if row.id in drop_ids:
            reasons.append("manual")
        unpublishable = not row.usable or any(f in UNPUBLISHABLE for f in flags)
        if reasons and row.id in keep_ids and "manual" not in reasons and not unpublishable:
            overridden.append(row.id)
            reasons = []
        elif unpublishable and not reasons:
            reasons = [f for f in flags if f in UNPUBLISHABLE] or ["unusable"]
        ok = not reasons
        keep.append(ok)
        flag_counts.update(flags)
        if not ok:
            reason_counts.update(reasons)
            rejected_rows.append({"id": row.id, "source": row.source, "anomaly_class": row.anomaly_class,
                                  "reasons": reasons, "flags": flags, "duplicate_of": row.duplicate_of})
        for table, name in (("per_source", row.source), ("per_class", row.anomaly_class)):
            entry = per[table].setdefault(name, {"rows": 0, "published": 0, "rejected": 0, "flags": Counter()})
            entry["rows"] += 1
            entry["published" if ok else "rejected"] += 1
            entry["flags"].update(flags)
    ids = {row.id for row in rows}
    report = {
        "rows": len(keep), "published": sum(keep), "rejected": len(keep) - sum(keep),
        "flags": {f: flag_counts[f] for f in FLAGS if flag_counts[f]},
        "rejected_by_reason": {r: reason_counts[r] for r in (*FLAGS, "manual", "unusable") if reason_counts[r]},
        **{table: {name: {**entry, "flags": {f: entry["flags"][f] for f in FLAGS if entry["flags"][f]}}
                   for name, entry in sorted(per[table].items())} for table in per},
        "rejected_rows": rejected_rows,
        "overridden": overridden,
        "unknown_override_ids": sorted((keep_ids | drop_ids) - ids),
        "config": config.to_dict(),
    }
    return keep, report


def _table(header, lines) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines]
    return "\n".join(out)


def report_markdown(report: dict, title: str = "DAAD mask QA") -> str:
    """A readable markdown version of a :func:`decide` report (extra top-level keys the build adds,
    like ``excluded_license``, are listed when present)."""
    parts = [f"# {title}", "",
             f"{report['rows']} candidate rows: **{report['published']} published**, "
             f"**{report['rejected']} rejected**.", ""]
    cfg = report.get("config", {})
    if cfg:
        parts += [f"Rejecting flags: {', '.join(f'`{f}`' for f in cfg.get('reject', [])) or 'none'}. "
                  f"Thresholds: long side < {cfg.get('min_long_side')} px or area < {cfg.get('min_area')} px "
                  f"is trivial; area > {cfg.get('max_area_ratio')} of the image is covers_most; "
                  f"> {cfg.get('max_components')} components is many_components; near duplicates at pHash "
                  f"distance <= {cfg.get('near_duplicate_distance')}.", ""]
    names = list(report["flags"]) + [r for r in report["rejected_by_reason"] if r not in report["flags"]]
    parts += ["## Flags", "", _table(["flag", "rows with it", "rejected for it"],
                                     [(f, report["flags"].get(f, 0), report["rejected_by_reason"].get(f, 0))
                                      for f in names]) if names else "no flag set", ""]
    for table, label in (("per_source", "source"), ("per_class", "class")):
        parts += [f"## Per {label}", "", _table(
            [label, "rows", "published", "rejected", "flags"],
            [(name, e["rows"], e["published"], e["rejected"], ", ".join(f"{f} {n}" for f, n in e["flags"].items()))
             for name, e in report[table].items()]), ""]
    for key, label in (("excluded_license", "Excluded by licence filter (not QA'd)"),
                       ("unmapped", "Skipped: label not in the taxonomy"),
                       ("taxonomy_excluded", "Left out by the taxonomy (class `exclude`)"),
                       ("components_dropped", "Connected components below the minimum area (dropped)")):
        if report.get(key):
            parts += [f"## {label}", "", _table(["source", "rows"], sorted(report[key].items())), ""]
    if report["overridden"]:
        parts += ["## Kept by override", "", ", ".join(f"`{i}`" for i in report["overridden"]), ""]
    if report.get("unknown_override_ids"):
        parts += ["## Override ids matching no row", "", ", ".join(f"`{i}`" for i in report["unknown_override_ids"]), ""]
    parts += ["## Rejected rows", ""]
    if report["rejected_rows"]:
        parts.append(_table(["id", "source", "class", "reasons", "all flags", "duplicate of (kept image)"],
                            [(f"`{r['id']}`", r["source"], r["anomaly_class"], ", ".join(r["reasons"]),
                              ", ".join(r["flags"]), f"`{r['duplicate_of']}`" if r["duplicate_of"] else "")
                             for r in report["rejected_rows"]]))
    else:
        parts.append("none")
    return "\n".join(parts) + "\n"
