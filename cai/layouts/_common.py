"""What every importer shares: listing files, reading a mask into (H, W) bool at the image's
size and orientation, and turning found (image, mask, label) items into sorted records.

Mask normalisation (all importers)
----------------------------------
A mask file is read as stored (no EXIF transpose of its own) and reduced to one 2-D label array:

* 1-channel (L, P, I;16, 1): the values as stored (a palette image gives its indices);
* 3/4-channel with equal colour channels: one channel (alpha is dropped);
* 3/4-channel whose channels differ (a colour-coded mask): 1 where any channel is non-zero,
  note ``mask_colour_coded``.

It is then binarised: background is 0 (or, when 0 is absent and there are two values, the lower
one, e.g. CrackForest-like {1, 2}: note ``mask_background_nonzero``); every other value is defect.
Several defect values (a class-index mask, KolektorSDD's stray 2) give note ``mask_multi_value``;
more than 16 distinct values mean a soft or lossy (JPEG) mask, thresholded half-way between
background and maximum, note ``mask_soft_binarized``. An all-background mask gives ``mask_empty``
(the record is still yielded unless the layout says empty = normal part).

EXIF orientation
----------------
Images are decoded later by :func:`cai.imageio.load_rgb`, which bakes the image's EXIF orientation
in; the mask must then be in that same display orientation. An importer therefore reads only the
image header (size and orientation tag, no pixel decode) and:

* no tag (or 1): the mask must have the stored image size;
* a tag 2-8 and the mask has the *stored* size: the mask follows the stored pixels (as a mask
  computed on the raw array does), so the same flip/rotation is applied to it (note
  ``mask_exif_transposed``). For a 90-degree tag on a non-square image this is unambiguous; for
  flips, 180 degrees or square images ``mask_orientation="display"`` tells the importer that the
  masks were drawn on the displayed image instead (an EXIF-aware annotation tool) and are kept;
* a 90-degree tag and the mask has the *displayed* size: it was drawn on the displayed image and
  is kept (note ``mask_display_orientation``);
* any other size: ``mask=None`` with note ``mask_size_mismatch`` (QA rejects the row).

A mask file that cannot be decoded gives ``mask=None`` with ``mask_unreadable``; an expected mask
file that does not exist gives ``mask=None`` with ``mask_missing``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from cai.imageio import IMAGE_EXTENSIONS, BadInput, list_images  # noqa: F401  (re-exported to the readers)
from cai.layouts.record import RawAnomaly

SOFT_MASK_MIN_VALUES = 17  # a mask with this many distinct values or more is soft/lossy
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)
log = logging.getLogger(__name__)


class LayoutError(ValueError):
    """The folder given to an importer does not have the layout that importer reads."""


def layout_error(root, layout: str, problem: str) -> LayoutError:
    """A :class:`LayoutError` naming the root, what is wrong and the expected layout."""
    return LayoutError(f"{root}: {problem}; expected layout: {layout}")


def require_dirs(root, layout: str, *subdirs) -> Path:
    """``root`` as an absolute Path; raises :class:`LayoutError` when it or a subdir is missing."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise layout_error(root, layout, "root folder does not exist")
    missing = [s for s in subdirs if not (root / s).is_dir()]
    if missing:
        raise layout_error(root, layout, f"missing folder(s) {', '.join(map(str, missing))}")
    return root


def select_subsets(root, layout: str, present: list, requested, problem: str, noun: str) -> list:
    """The subset folders to read: ``present`` when ``requested`` is None, else ``requested`` (a name
    or a list of names); raises :class:`LayoutError` ``"<problem> for <missing names or 'any <noun>'>"``
    when none is present or a requested one is not."""
    chosen = present if requested is None else [requested] if isinstance(requested, str) else list(requested)
    missing = sorted(set(chosen) - set(present))
    if not present or missing:
        raise layout_error(root, layout, f"{problem} for {missing or 'any ' + noun}")
    return chosen


def stem_index(folder: Path, extensions=IMAGE_EXTENSIONS) -> dict[str, Path]:
    """``{stem: path}`` of the image files in ``folder`` (the first by name when a stem repeats)."""
    index = {}
    for path in list_images(folder, extensions):
        index.setdefault(path.stem, path)
    return index


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the record's ``original_file``)."""
    return path.relative_to(root).as_posix()


# --------------------------------------------------------------------------- mask decoding
def read_label_array(path) -> tuple[np.ndarray, list[str]]:
    """Read a mask file as stored into a 2-D integer label array (rules in the module docstring).

    Raises
    ------
    BadInput
        ``corrupt_mask`` when the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput("corrupt_mask", f"cannot decode mask {str(path)!r}: {exc}") from exc
    notes = []
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        channels = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
        if all(np.array_equal(channels[..., 0], channels[..., k]) for k in range(1, channels.shape[2])):
            array = channels[..., 0]
        else:
            array = (channels != 0).any(axis=2).astype(np.uint8)
            notes.append("mask_colour_coded")
    if array.ndim != 2:
        raise BadInput("corrupt_mask", f"mask {str(path)!r} has unsupported shape {array.shape} (mode {mode})")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise BadInput("corrupt_mask", f"mask {str(path)!r} has NaN or inf values")
    return array, notes


def binarize(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(H, W) bool defect mask from a 2-D label array, with the notes the rule produced."""
    values = np.unique(labels)
    notes = []
    if values.size == 1:
        mask = np.full(labels.shape, bool(values[0] != 0))
    else:
        background = 0 if values[0] == 0 else values[0]
        if values[0] != 0:
            notes.append("mask_background_nonzero")
        if values.size >= SOFT_MASK_MIN_VALUES:
            mask = labels > (float(background) + float(values[-1])) / 2.0
            notes.append("mask_soft_binarized")
        else:
            mask = labels != background
            if values.size > 2:
                notes.append("mask_multi_value")
    if not mask.any():
        notes.append("mask_empty")
    return mask, notes


@dataclass(frozen=True)
class ImageHeader:
    """Stored size and EXIF orientation of an image, read without decoding its pixels."""
    stored_shape: tuple[int, int]   # (rows, cols) as stored in the file
    orientation: int                # EXIF orientation 1-8 (1 when absent or invalid)

    @property
    def display_shape(self) -> tuple[int, int]:
        """(rows, cols) after the EXIF orientation is applied (what ``load_rgb`` returns)."""
        rows, cols = self.stored_shape
        return (cols, rows) if self.orientation in _SWAPS_AXES else (rows, cols)


def read_header(image_path) -> ImageHeader:
    """Image size and orientation from the file header; raises :class:`BadInput` ``corrupt_image``."""
    try:
        with Image.open(image_path) as image:
            cols, rows = image.size
            try:
                orientation = int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
            except Exception:  # a broken EXIF block: Pillow's exif_transpose would ignore it too
                orientation = 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput("corrupt_image", f"cannot read image header {str(image_path)!r}: {exc}") from exc
    return ImageHeader((rows, cols), orientation if 1 <= orientation <= 8 else 1)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (H, W[, C]) flipped/rotated as ``PIL.ImageOps.exif_transpose`` does for the tag.

    Orientation 1 (or anything outside 2-8) returns ``array`` unchanged; the result is a copy
    otherwise (never a view).
    """
    if orientation == 2:
        out = array[:, ::-1]
    elif orientation == 3:
        out = array[::-1, ::-1]
    elif orientation == 4:
        out = array[::-1, :]
    elif orientation == 5:
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:
        out = np.rot90(array, k=-1)
    elif orientation == 7:
        out = np.swapaxes(array[::-1, ::-1], 0, 1)
    elif orientation == 8:
        out = np.rot90(array, k=1)
    else:
        return array
    return np.ascontiguousarray(out)


def fit_to_image(array: np.ndarray, image_path, mask_orientation: str = "stored"
                 ) -> tuple[np.ndarray | None, list[str]]:
    """Bring a 2-D mask/label array to the displayed image's size and orientation.

    Returns ``(array or None, notes)``: None with ``mask_size_mismatch`` when the sizes cannot be
    reconciled; the array unchanged with ``image_unreadable`` when the image header cannot be read
    (the build finds the undecodable image again and QA rejects it).
    """
    if mask_orientation not in ("stored", "display"):
        raise ValueError(f"mask_orientation must be 'stored' or 'display', got {mask_orientation!r}")
    try:
        header = read_header(image_path)
    except BadInput:
        return array, ["image_unreadable"]
    shape = tuple(array.shape[:2])
    if header.orientation == 1:
        if shape == header.stored_shape:
            return array, []
    elif shape == header.stored_shape and (mask_orientation == "stored"
                                           or header.stored_shape != header.display_shape):
        return apply_orientation(array, header.orientation), [f"mask_exif_transposed:{header.orientation}"]
    elif shape == header.display_shape:
        return array, ([] if header.stored_shape == header.display_shape else ["mask_display_orientation"])
    return None, [f"mask_size_mismatch:{shape[0]}x{shape[1]}!={header.display_shape[0]}x{header.display_shape[1]}"]


def read_mask(mask_path, image_path, mask_orientation: str = "stored"
              ) -> tuple[np.ndarray | None, list[str]]:
    """Read, binarise and orient one mask file for ``image_path``: ``(mask or None, notes)``."""
    labels, notes = read_labels_for(mask_path, image_path, mask_orientation)
    if labels is None:
        return None, notes
    mask, more = binarize(labels)
    return mask, notes + more


def read_labels_for(mask_path, image_path, mask_orientation: str = "stored"
                    ) -> tuple[np.ndarray | None, list[str]]:
    """The 2-D label array of ``mask_path`` at the displayed size of ``image_path`` (or None +
    ``mask_missing`` / ``mask_unreadable`` / ``mask_size_mismatch``), with notes."""
    if mask_path is None or not Path(mask_path).is_file():
        return None, ["mask_missing"]
    try:
        labels, notes = read_label_array(mask_path)
    except BadInput as exc:
        log.warning("%s", exc)
        return None, ["mask_unreadable"]
    labels, more = fit_to_image(labels, image_path, mask_orientation)
    return labels, notes + more


# --------------------------------------------------------------------------- records
@dataclass
class Item:
    """One anomaly candidate a layout found: its image, its mask file and its label."""
    original_file: str
    image_path: Path
    mask_path: Path | None
    label: str
    domain: str = ""
    notes: list = field(default_factory=list)


def new_stats(stats: dict | None) -> dict:
    """The caller's stats dict (reset to zero counts) or a fresh one."""
    stats = {} if stats is None else stats
    stats.clear()
    stats.update(images=0, yielded=0, skipped_normal=0, skipped_no_mask=0, notes={})
    return stats


def count(stats: dict, record: RawAnomaly) -> RawAnomaly:
    """Add ``record`` to the yielded count and its notes (keys before any ':') to ``stats``."""
    stats["yielded"] += 1
    for note in record.notes:
        key = note.split(":", 1)[0]
        stats["notes"][key] = stats["notes"].get(key, 0) + 1
    return record


def records_from_items(items: Iterable[Item], *, source: str, license: str, source_kind: str,
                       stats: dict, empty_is_normal: bool = False, mask_orientation: str = "stored"
                       ) -> Iterator[RawAnomaly]:
    """Records for ``items`` sorted by ``original_file``; one mask file per item.

    ``stats`` comes from :func:`new_stats` and is filled while the records are consumed. With
    ``empty_is_normal`` an all-background mask means a normal part: it is counted in
    ``stats["skipped_normal"]`` and not yielded.
    """
    for item in sorted(items, key=lambda it: it.original_file):
        stats["images"] += 1
        mask, notes = read_mask(item.mask_path, item.image_path, mask_orientation)
        if empty_is_normal and "mask_empty" in notes:
            stats["skipped_normal"] += 1
            continue
        yield count(stats, RawAnomaly(
            source=source, original_file=item.original_file, image_path=item.image_path, mask=mask,
            original_label=item.label, source_kind=source_kind, source_domain=item.domain,
            license=license, component=0, notes=list(item.notes) + notes))


def records_per_class(items: Iterable[Item], class_names: dict, *, source: str, license: str,
                      source_kind: str, stats: dict, yield_empty: bool,
                      mask_orientation: str = "stored") -> Iterator[RawAnomaly]:
    """Records for class-index masks: one per class index present in an item's mask.

    ``component`` is the class index and ``original_label`` ``class_names[k]`` (``class_<k>``
    when unnamed). A mask with no class present gives one empty row (``component`` 0, label
    ``item.label``, note ``mask_empty``) when ``yield_empty``, else it is counted in
    ``stats["skipped_empty"]``. A missing, unreadable or mis-sized mask gives one row with
    ``mask=None``, ``component`` 0 and ``item.label``.
    """
    stats.setdefault("skipped_empty", 0)
    for item in sorted(items, key=lambda it: it.original_file):
        stats["images"] += 1
        labels, notes = read_labels_for(item.mask_path, item.image_path, mask_orientation)

        def record(mask, label, component, extra=()):
            return count(stats, RawAnomaly(
                source=source, original_file=item.original_file, image_path=item.image_path, mask=mask,
                original_label=label, source_kind=source_kind, source_domain=item.domain, license=license,
                component=component, notes=list(item.notes) + notes + list(extra)))

        if labels is None:
            yield record(None, item.label, 0)
            continue
        present = [int(v) for v in np.unique(labels) if v != 0]
        if not present:
            if yield_empty:
                yield record(np.zeros(labels.shape, bool), item.label, 0, ["mask_empty"])
            else:
                stats["skipped_empty"] += 1
            continue
        for k in present:
            yield record(labels == k, str(class_names.get(k, f"class_{k}")), k)


def photo_in_folders(name: str, folders, root: Path) -> tuple[str, Path] | None:
    """``(original_file, absolute path)`` of the first ``folder / name`` that is a file (None when
    none is); ``original_file`` is the path relative to ``root``, else ``name`` itself."""
    photo = next((f / name for f in folders if name and (f / name).is_file()), None)
    if photo is None:
        return None
    photo = photo.resolve()
    return (relative(photo, root) if photo.is_relative_to(root) else name), photo


def records_per_label(masks: dict, *, original_file: str, image_path: Path, source: str, license: str,
                      domain: str, source_kind: str, stats: dict, notes=(), label_notes: dict | None = None
                      ) -> Iterator[RawAnomaly]:
    """One record per label of ``masks`` ({label: (rows, cols) bool mask drawn on the displayed image,
    or None}), in sorted label order.

    Each mask is fitted to the displayed image (:func:`fit_to_image`, ``mask_orientation="display"``);
    a None mask gives ``mask=None`` with note ``mask_unreadable``, an all-false one note ``mask_empty``.
    ``component`` is 0 when there is one label, else 1..n. Notes: ``notes``, then
    ``label_notes[label]``, then those of the fit.
    """
    label_notes = label_notes or {}
    names = sorted(masks)
    for k, label in enumerate(names, start=1):
        mask, fit_notes = (fit_to_image(masks[label], image_path, mask_orientation="display")
                           if masks[label] is not None else (None, ["mask_unreadable"]))
        extra = [] if mask is None or mask.any() else ["mask_empty"]
        yield count(stats, RawAnomaly(
            source=source, original_file=original_file, image_path=image_path, mask=mask, original_label=label,
            source_kind=source_kind, source_domain=domain, license=license,
            component=0 if len(names) == 1 else k,
            notes=list(notes) + label_notes.get(label, []) + fit_notes + extra))


def records_from_shapes(masks: dict, skipped: dict, shape_notes: list, *, original_file: str, image_path: Path,
                        source: str, license: str, domain: str, source_kind: str, stats: dict,
                        image_notes=()) -> Iterator[RawAnomaly]:
    """Records of one annotated image from its rasterised shapes (labelme, CVAT).

    ``masks`` is {label: (rows, cols) bool union of its shapes}, ``skipped`` {shape type: count}
    (added to ``stats["shapes_skipped"]``), ``shape_notes`` the ``shape_invalid:<label>`` notes.
    Only malformed shapes: one ``mask=None`` record labelled by the first of them (QA rejects it);
    no shape at all: a normal image, counted in ``stats["skipped_normal"]``; else
    :func:`records_per_label`. Every record's notes start with ``image_notes`` + ``shape_notes``.
    """
    for kind, n in skipped.items():
        stats["shapes_skipped"][kind] = stats["shapes_skipped"].get(kind, 0) + n
    notes = list(image_notes) + list(shape_notes)
    if not masks and shape_notes:
        yield count(stats, RawAnomaly(
            source=source, original_file=original_file, image_path=image_path, mask=None,
            original_label=shape_notes[0].split(":", 1)[1], source_kind=source_kind, source_domain=domain,
            license=license, component=0, notes=notes))
    elif not masks:
        stats["skipped_normal"] += 1
    else:
        yield from records_per_label(masks, original_file=original_file, image_path=image_path, source=source,
                                     license=license, domain=domain, source_kind=source_kind, stats=stats,
                                     notes=notes)
