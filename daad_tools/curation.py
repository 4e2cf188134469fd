"""The curation format, and the one way a curation decision is applied to rows.

``daad sync`` (:mod:`daad_tools.sync`) records the reviewer's decisions here and applies them to the
published shards; ``daad build`` (:mod:`daad_tools.build`) reads them back and applies them to its
first-pass manifest. Both go through :func:`apply_decisions`.

``FOLDER/curation.json`` (format ``cai-hub/daad-curation``, version 1)::

    {"format": "cai-hub/daad-curation", "version": 1, "updated": "<UTC ISO time>",
     "rejected": {"<row id>": {"reason": "curation", "source": ..., "original_file": ...,
                               "content_hash": ...}},
     "reclassed": {"<row id>": {"from": "<class>", "to": "<class>"}},
     "masks": {"<row id>": {"path": "curation_masks/<key>.png", "sha256": ..., "kind":
               "replaced" | "added"}}}

Edited masks are PNG files under ``FOLDER/curation_masks/`` (any non-zero value is anomaly).
Decisions accumulate; a later decision for the same id wins. ``daad push`` uploads neither file.

Applying a decision (:func:`apply_decisions`):

* reject  -> the row is dropped, or left for the caller to drop (``drop_rejected``);
* reclass -> ``anomaly_class`` becomes the new class;
* mask    -> read with :func:`read_mask` (any channel > 0 is anomaly), checked against the image
  size; the mask PNG, ``bbox``, ``mask_area_ratio``, ``content_hash`` and the QA flags are
  recomputed as for a source mask (:func:`daad_tools.mask_fields.mask_fields`, the caller's
  ``QAConfig``), see :func:`curated_mask_fields` for which flags carry over.

Applying never rejects a row for its new flags: the build's publish decision does that (a
curated mask with a rejecting flag is rejected unless ``qa.keep_ids`` holds it), while sync keeps
the row and reports the change.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cai import atomic
from cai.imageio import decode_mask, encode_png

from . import qa as qa_mod
from .mask_fields import MaskFields, mask_fields
from .records import CLASSES

CURATION_FILE = "curation.json"
CURATION_MASK_DIR = "curation_masks"
CURATION_FORMAT = "cai-hub/daad-curation"
# flags that are not the mask's own (set-wide, or the source's border policy): kept for a curated
# mask; the build recomputes them for the whole set anyway
KEPT_FLAGS = ("exact_duplicate", "near_duplicate", "border_excluded")
SOURCE_MASK_NOTE = "border_trimmed"  # said of the trimmed source mask, not of a curated one


class CurationError(Exception):
    """A DAAD folder, a FiftyOne dataset or an edit that curation cannot use (message says why)."""


# ----------------------------------------------------------------------------------------------
# the format


def load_curation_doc(folder: Path) -> dict:
    """``curation.json`` of ``folder`` as a dict with ``rejected``, ``reclassed`` and ``masks`` (empty
    when there is no file). Raises :class:`CurationError` for invalid JSON or another format."""
    path = Path(folder) / CURATION_FILE
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CurationError(f"{path} is not valid JSON: {e}") from e
        if doc.get("format") != CURATION_FORMAT:
            raise CurationError(f"{path} is not a {CURATION_FORMAT} file")
    else:
        doc = {"format": CURATION_FORMAT, "version": 1}
    for key in ("rejected", "reclassed", "masks"):
        doc.setdefault(key, {})
    return doc


def row_file_key(row_id: str) -> str:
    """A file-name-safe, collision-resistant name for a row id."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", row_id)[-60:].strip("._") or "row"
    return f"{hashlib.sha256(row_id.encode()).hexdigest()[:16]}_{slug}"


def read_mask(source) -> np.ndarray:
    """A curated mask as (H, W) bool: any channel > 0 is anomaly (an array, PNG bytes or a path)."""
    return decode_mask(source, threshold=0)


@dataclass(frozen=True)
class Decision:
    """One row's curation decision.

    Attributes
    ----------
    reject : bool
        Drop the row.
    new_class : str or None
        The row's new DAAD class (one of ``CLASSES``); None keeps it.
    mask : (H, W) array, or path of a mask PNG, or None
        The row's new mask, read with :func:`read_mask`; None keeps it.
    """

    reject: bool = False
    new_class: str | None = None
    mask: object = None


@dataclass
class Curation:
    """The decisions recorded in a folder's ``curation.json``.

    Attributes
    ----------
    rejected : frozenset of str
        Row ids never published.
    reclassed : dict
        Row id -> class name (the ``to`` of each entry).
    masks : dict
        Row id -> Path of the curated mask PNG.
    digest : str
        sha256 over the decisions and the mask files' bytes (not the timestamps or notes).
    """

    rejected: frozenset = frozenset()
    reclassed: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    digest: str = ""

    def ids(self) -> set:
        return set(self.rejected) | set(self.reclassed) | set(self.masks)

    def decisions(self) -> dict:
        """Row id -> :class:`Decision` (a mask as its file's path)."""
        return {rid: Decision(reject=rid in self.rejected, new_class=self.reclassed.get(rid),
                              mask=self.masks.get(rid)) for rid in self.ids()}


def load_curation(folder) -> Curation:
    """The curation recorded in ``folder`` (none when it has no ``curation.json``).

    Raises
    ------
    CurationError
        Unreadable ``curation.json``, a class that is not a DAAD class, a missing mask file.
    """
    folder = Path(folder)
    doc = load_curation_doc(folder)
    try:
        reclassed = {rid: entry["to"] for rid, entry in doc["reclassed"].items()}
        masks = {rid: folder / entry["path"] for rid, entry in doc["masks"].items()}
    except (TypeError, KeyError, AttributeError) as exc:
        raise CurationError(f"{folder / CURATION_FILE}: malformed entry ({exc!r})") from exc
    bad = sorted(f"{rid} -> {cls!r}" for rid, cls in reclassed.items() if cls not in CLASSES)
    if bad:
        raise CurationError(f"{folder / CURATION_FILE}: reclassed to no DAAD class {CLASSES}: {bad[:5]}")
    missing = sorted(str(path) for path in masks.values() if not path.is_file())
    if missing:
        raise CurationError(f"{folder / CURATION_FILE}: curated mask file(s) missing: {missing[:5]}")
    decisions = {"rejected": sorted(doc["rejected"]), "reclassed": reclassed,
                 "masks": {rid: hashlib.sha256(path.read_bytes()).hexdigest() for rid, path in masks.items()}}
    return Curation(frozenset(doc["rejected"]), reclassed, masks,
                    hashlib.sha256(json.dumps(decisions, sort_keys=True).encode()).hexdigest())


def record_decision(doc: dict, folder: Path, row_id: str, decision: Decision, old_class: str | None,
                    mask_kind: str = "replaced") -> None:
    """Merge ``decision`` into ``doc`` (a :func:`load_curation_doc` dict); a new mask's PNG is
    written under ``folder/curation_masks/``, a rejected row's is deleted. ``old_class`` is the
    row's class before this decision; ``mask_kind`` ``"replaced"`` or ``"added"`` (the first
    recorded kind stays)."""
    if decision.reject:
        doc["rejected"][row_id] = {"reason": "curation"}
        doc["reclassed"].pop(row_id, None)
        old_mask = doc["masks"].pop(row_id, None)
        if old_mask:
            (folder / old_mask["path"]).unlink(missing_ok=True)
        return
    if decision.new_class is not None:
        first = doc["reclassed"].get(row_id, {}).get("from", old_class)
        if first == decision.new_class:
            doc["reclassed"].pop(row_id, None)
        else:
            doc["reclassed"][row_id] = {"from": first, "to": decision.new_class}
    if decision.mask is not None:
        (folder / CURATION_MASK_DIR).mkdir(exist_ok=True)
        png = encode_png(read_mask(decision.mask))["bytes"]
        rel = f"{CURATION_MASK_DIR}/{row_file_key(row_id)}.png"
        atomic.write_bytes(folder / rel, png)
        kind = doc["masks"].get(row_id, {}).get("kind", mask_kind)
        doc["masks"][row_id] = {"path": rel, "sha256": hashlib.sha256(png).hexdigest(), "kind": kind}


def write_curation_doc(folder: Path, doc: dict) -> None:
    """Write ``doc`` to ``folder/curation.json`` atomically, stamped ``updated`` now (UTC)."""
    doc["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    atomic.write_text(folder / CURATION_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------
# applying decisions to rows


@dataclass(frozen=True)
class RowFormat:
    """Where a kind of row dict (the build's manifest, a published shard) keeps what curation sets.

    Attributes
    ----------
    flags : str
        Column of the QA flags (list of str).
    notes : str or None
        Column of the importer notes (list of str); None: the row's flags stand in for them.
    class_value : callable
        DAAD class name -> the value stored in ``anomaly_class``.
    image : callable
        Row -> its decoded image, (H, W, 3) uint8 RGB.
    mask_columns : callable
        :class:`~daad_tools.mask_fields.MaskFields` -> the row's columns to overwrite.
    """

    flags: str
    notes: str | None
    class_value: Callable[[str], object]
    image: Callable[[dict], np.ndarray]
    mask_columns: Callable[[MaskFields], dict]


@dataclass(frozen=True)
class MaskChange:
    """A row whose mask a decision replaced or added: its QA flags before, the recomputed fields."""

    flags_before: list
    fields: MaskFields


def curated_mask_fields(rgb: np.ndarray, mask: np.ndarray, flags_before, config: qa_mod.QAConfig,
                        notes=None, refine=None) -> MaskFields:
    """The fields of a row whose mask curation replaced or added.

    ``rgb`` (H, W, 3) uint8, ``mask`` (H, W) bool. The flags are those of a source mask
    (:func:`~daad_tools.mask_fields.mask_fields`: geometry with ``config``'s thresholds, note flags,
    refinement) with the row's ``notes`` (None: ``flags_before`` stand in, so earlier note flags such
    as ``soft_edges`` stay) minus ``border_trimmed``, plus the ``KEPT_FLAGS`` of ``flags_before``.
    ``refine`` None: no refinement (the refined mask and its flags are dropped).
    """
    carried = [n for n in (flags_before if notes is None else notes) if n != SOURCE_MASK_NOTE]
    fields = mask_fields(rgb, mask, config, carried, refine)
    kept = {f for f in flags_before or () if f in KEPT_FLAGS}
    if not kept:
        return fields
    return replace(fields, flags=sorted(set(fields.flags) | kept, key=qa_mod.FLAGS.index))


def apply_decisions(rows: list, decisions: dict, fmt: RowFormat, config: qa_mod.QAConfig, *,
                    drop_rejected: bool, refine=None) -> tuple[list, dict]:
    """Apply ``decisions`` (row id -> :class:`Decision`) to ``rows`` (dicts with ``id``, laid out as
    ``fmt`` says), changing them in place.

    Parameters
    ----------
    drop_rejected : bool
        True: a rejected row is left out of the result (sync rewrites the shards without it).
        False: it stays unchanged (the build's publish decision drops it with reason
        ``curated_reject``, so the QA report lists it).
    refine : RefineConfig or None
        Refinement of a curated mask (the build: the recipe's); None: none (sync: the next build
        refines).

    Returns
    -------
    rows : list of dict
    mask_changes : dict
        Row id -> :class:`MaskChange` for each row whose mask was replaced or added.

    Raises
    ------
    CurationError
        A curated mask that cannot be read or does not have its image's size.
    """
    out, changes = [], {}
    for row in rows:
        decision = decisions.get(row["id"])
        if decision is None or (decision.reject and not drop_rejected):
            out.append(row)
            continue
        if decision.reject:
            continue
        if decision.new_class is not None:
            row["anomaly_class"] = fmt.class_value(decision.new_class)
        if decision.mask is not None:
            rgb = fmt.image(row)
            mask = _checked_mask(row["id"], decision.mask, rgb.shape[:2])
            before = list(row.get(fmt.flags) or [])
            fields = curated_mask_fields(rgb, mask, before, config, row[fmt.notes] if fmt.notes else None, refine)
            row.update(fmt.mask_columns(fields))
            changes[row["id"]] = MaskChange(before, fields)
        out.append(row)
    return out, changes


def _checked_mask(row_id: str, source, shape: tuple) -> np.ndarray:
    where = "" if isinstance(source, np.ndarray) else f" ({source})"
    try:
        mask = read_mask(source)
    except (OSError, ValueError) as exc:
        raise CurationError(f"curated mask of {row_id!r}{where}: {exc}") from exc
    if mask.shape != tuple(shape):
        raise CurationError(f"curated mask of {row_id!r}{where} is {mask.shape[1]}x{mask.shape[0]}, "
                            f"the image {shape[1]}x{shape[0]} (W x H)")
    return mask
