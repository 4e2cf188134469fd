"""``daad sync``: bring the edits made in the FiftyOne App back into the DAAD folder.

What counts as an edit (:func:`sync_from_fiftyone`):

* tag ``reject``            -> the row is removed from the shards;
* tag ``reclass:<class>``   -> ``anomaly_class`` becomes ``<class>`` (one of ``CLASSES``);
* a changed mask            -> the row's mask is replaced (binarised ``> 0``, checked against the
  image size, must not be empty); a mask counts as changed when the mask file's sha256 differs
  from the one recorded at load, when ``ground_truth`` points to another ``mask_path``, or when it
  carries an in-database ``mask`` array; adding a mask to a ``no_mask`` row works the same way.

The decisions are applied to the shards by :func:`daad_tools.curation.apply_decisions`, as the
build applies ``curation.json``: ``bbox``, ``mask_area_ratio``, ``content_hash`` and the QA flags
of a new mask are recomputed with the thresholds of the folder's ``qa_report.json``; its
``mask_refined`` is cleared (the next build refines). A new mask that gets a rejecting flag stays
(the report's ``flags_changed`` lists it; the next build rejects it unless ``qa.keep_ids`` holds it).

Everything is validated first; on any problem a :class:`CurationError` lists them all and nothing
is written. Then the decisions are merged into ``<folder>/curation.json`` (the record a rebuild
honours, :mod:`daad_tools.curation`), the shards holding changed rows are rewritten in place
(:func:`daad_tools.shards.rewrite_shards`: ``load_dataset`` sees the edits at once; a shard left with
no rows is dropped and its split renumbered), and the FiftyOne dataset is updated to match the
folder (rejected samples deleted, ``reclass:`` tags consumed, mask hashes re-recorded): a second sync
with no new edits changes nothing. Last, ``qa_report.json``/``qa_report.md`` and the card are
recomputed for the new curation (:func:`daad_tools.build.refresh_report`, from the build's cached
first pass); where that cannot be done (no ``.daad/`` work folder, the recipe or code changed, the
source images gone) both reports get a ``stale`` note instead, which the next ``daad build`` clears.
Rejecting every row of a split is refused.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cai import atomic
from cai.imageio import load_rgb

from . import qa as qa_mod
from .curation import (CURATION_FILE, CurationError, Decision, RowFormat, apply_decisions, load_curation_doc,
                       read_mask, record_decision, write_curation_doc)
from .fiftyone_backend import (INFO_KEY, NO_MASK_TAG, QA_TAG_PREFIX, RECLASS_PREFIX, REJECT_TAG,
                               default_media_dir, file_sha256, image_size, import_fiftyone, mask_file,
                               save_qa_views)
from .mask_fields import MaskFields
from .records import CLASSES
from .shards import content_fingerprint, embedded_bytes, iter_rows, list_shards, rewrite_shards, split_of

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What :func:`sync_from_fiftyone` changed (counts) and where."""

    rejected: int = 0
    reclassed: int = 0
    masks_replaced: int = 0
    masks_added: int = 0
    unchanged: int = 0
    rows_before: int = 0
    rows_after: int = 0
    missing_ids: list = field(default_factory=list)  # samples whose daad_id is not in the folder
    flags_changed: dict = field(default_factory=dict)  # id -> {"before", "after"} QA flags of a new mask
    shards_rewritten: list = field(default_factory=list)  # data/... names after the sync
    shards_removed: list = field(default_factory=list)  # old names, when a shard emptied and a split was renumbered
    curation_file: str = ""
    qa_report: str = ""  # "refreshed", "stale: <why>", or "" when nothing was synced

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Edit:
    """A sample's edit: the decision, its sample, and ``"replaced"``/``"added"`` for a new mask."""

    decision: Decision
    sample_id: str
    mask_kind: str = ""


def _shard_mask_columns(fields: MaskFields) -> dict:
    return {"mask": {"bytes": fields.mask_png, "path": None},
            "mask_refined": None if fields.mask_refined_png is None else {"bytes": fields.mask_refined_png, "path": None},
            "bbox": fields.bbox, "mask_area_ratio": fields.mask_area_ratio, "content_hash": fields.content_hash,
            "qa_flags": fields.flags}


# a published shard's rows (DAAD_FEATURES): class index, embedded image bytes
SHARD_ROWS = RowFormat(flags="qa_flags", notes=None, class_value=CLASSES.index,
                       image=lambda row: load_rgb(row["image"]["bytes"])[0], mask_columns=_shard_mask_columns)


def _qa_config(folder: Path) -> qa_mod.QAConfig:
    """The QA thresholds the folder was built with (its ``qa_report.json``), else the defaults."""
    path = folder / "qa_report.json"
    if path.is_file():
        try:
            return qa_mod.QAConfig.from_dict(json.loads(path.read_text()).get("config"))
        except (ValueError, TypeError, AttributeError) as e:
            logger.warning("ignoring the QA config of %s (%s); using the defaults", path, e)
    return qa_mod.QAConfig()


def _folder_index(folder: Path) -> dict:
    """id -> (shard, anomaly_class index, (H, W) or None, mask PNG bytes or None), decoding no pixels."""
    index = {}
    for shard in list_shards(folder):
        names = pq.ParquetFile(shard).schema_arrow.names
        cols = ["id", "anomaly_class", "mask"] + [c for c in ("width", "height") if c in names]
        for row in iter_rows(shard, columns=cols):
            if row["id"] in index:
                raise CurationError(f"duplicate row id {row['id']!r} in {folder}")
            size = (row["height"], row["width"]) if row.get("width") and row.get("height") else None
            mask_bytes = (row["mask"] or {}).get("bytes") or None
            index[row["id"]] = (shard, row["anomaly_class"], size, mask_bytes)
    return index


def _row_image_size(shard: Path, row_id: str) -> tuple[int, int]:
    """(H, W) of a row's image, for a shard without width/height columns."""
    for row in iter_rows(shard, columns=["id", "image"]):
        if row["id"] == row_id:
            w, h = image_size(embedded_bytes(row["image"], f"row {row_id!r}"))
            return h, w
    raise CurationError(f"row {row_id!r} vanished from {shard}")


def _sample_edit(sample, entry, errors: list) -> _Edit | None:
    """The edit a sample asks for, or None; problems are appended to ``errors``."""
    row_id = sample["daad_id"]
    shard, class_index, size, old_mask = entry
    has_mask = old_mask is not None
    tags = set(sample.tags)
    if REJECT_TAG in tags:
        return _Edit(Decision(reject=True), sample.id)

    new_class = None
    reclass = sorted(t[len(RECLASS_PREFIX):].strip() for t in tags if t.startswith(RECLASS_PREFIX))
    if len(reclass) > 1:
        errors.append(f"{row_id}: several reclass tags {reclass}")
    elif reclass:
        if reclass[0] not in CLASSES:
            errors.append(f"{row_id}: reclass:{reclass[0]} is not a DAAD class {list(CLASSES)}")
        elif class_index is None or CLASSES[class_index] != reclass[0]:
            new_class = reclass[0]

    gt = sample["ground_truth"] if sample.has_field("ground_truth") else None
    loaded_hash = sample["mask_sha256"] if sample.has_field("mask_sha256") else None
    source, new_mask = None, None
    if gt is None:
        if has_mask:
            errors.append(f"{row_id}: ground_truth was removed; tag the sample {REJECT_TAG!r} to drop the row")
    elif getattr(gt, "mask", None) is not None:
        source = np.asarray(gt.mask)
    elif gt.mask_path:
        if not os.path.isfile(gt.mask_path):
            errors.append(f"{row_id}: mask file {gt.mask_path} is missing")
        elif not has_mask or file_sha256(gt.mask_path) != loaded_hash:
            source = gt.mask_path
    elif has_mask:
        errors.append(f"{row_id}: ground_truth has neither mask nor mask_path")
    if source is not None:
        try:
            mask = read_mask(source)
        except (OSError, ValueError) as e:
            errors.append(f"{row_id}: unreadable mask ({e})")
            mask = None
        if mask is not None:
            expected = size or _row_image_size(shard, row_id)
            if mask.shape != tuple(expected):
                errors.append(f"{row_id}: mask is {mask.shape[1]}x{mask.shape[0]}, image is "
                              f"{expected[1]}x{expected[0]} (W x H)")
            elif not mask.any():
                errors.append(f"{row_id}: edited mask is empty; tag the sample {REJECT_TAG!r} to drop the row")
            elif not (has_mask and np.array_equal(mask, read_mask(old_mask))):  # else re-saved, same pixels
                new_mask = mask
    if new_class is None and new_mask is None:
        return None
    return _Edit(Decision(new_class=new_class, mask=new_mask), sample.id,
                 "" if new_mask is None else "replaced" if has_mask else "added")


def _refresh_qa_report(folder: Path) -> str:
    """Recompute the folder's QA report and card for its curation; failing that, mark the reports stale."""
    from .build import BuildError, refresh_report

    try:
        refresh_report(folder)
        return "refreshed"
    except (BuildError, OSError, ValueError) as e:
        why = str(e)
    note = (f"stale: curation.json changed ({_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}) "
            f"and this report could not be recomputed ({why}); the next `daad build` into this folder refreshes it")
    json_path, md_path = folder / "qa_report.json", folder / "qa_report.md"
    if json_path.is_file():
        doc = json.loads(json_path.read_text())
        doc["stale"] = note
        atomic.write_json(json_path, doc, sort_keys=False, default=str)
    if md_path.is_file():
        text = md_path.read_text()
        if text.startswith("> **stale:"):  # an earlier sync's note
            text = text.split("\n\n", 1)[-1]
        atomic.write_text(md_path, f"> **{note}**\n\n{text}")
    logger.warning("%s: QA report %s", folder, note)
    return f"stale: {why}"


def _find_edits(dataset, index: dict, report: SyncReport) -> tuple[dict, set]:
    """(id -> :class:`_Edit` of every edited sample, the shards every row of which is rejected);
    :class:`CurationError` listing every invalid edit."""
    errors, edits = [], {}
    for sample in dataset.iter_samples():
        row_id = sample["daad_id"]
        if row_id not in index:
            report.missing_ids.append(row_id)
            continue
        edit = _sample_edit(sample, index[row_id], errors)
        if edit is None:
            report.unchanged += 1
        else:
            edits[row_id] = edit
    rows_per_shard: dict = {}
    for shard, *_ in index.values():
        rows_per_shard[shard] = rows_per_shard.get(shard, 0) + 1
    rejects_per_shard: dict = {}
    for row_id, edit in edits.items():
        if edit.decision.reject:
            rejects_per_shard[index[row_id][0]] = rejects_per_shard.get(index[row_id][0], 0) + 1
    emptied = {shard for shard, n in rejects_per_shard.items() if n == rows_per_shard[shard]}
    for split in sorted({split_of(s) for s in emptied}):
        if all(s in emptied for s in rows_per_shard if split_of(s) == split):
            errors.append(f"every row of split {split!r} is tagged {REJECT_TAG!r}; the folder would be empty")
    if errors:
        raise CurationError(f"{len(errors)} invalid edit(s) in {dataset.name!r}, nothing written:\n  "
                            + "\n  ".join(errors))
    return edits, emptied


def _record(folder: Path, edits: dict, index: dict) -> None:
    """Merge the edits into ``curation.json``; a rejected row also records its source, original file
    and content hash, so a rebuild can match it even if its id scheme changes."""
    doc = load_curation_doc(folder)  # an unreadable curation.json stops the sync here
    if not edits:
        return
    for row_id, edit in sorted(edits.items()):
        class_index = index[row_id][1]
        record_decision(doc, folder, row_id, edit.decision,
                        old_class=CLASSES[class_index] if class_index is not None else None,
                        mask_kind=edit.mask_kind or "replaced")
    rejected = {r for r, e in edits.items() if e.decision.reject}
    for shard in sorted({index[r][0] for r in rejected}):
        for row in iter_rows(shard, columns=["id", "source", "original_file", "content_hash"]):
            if row["id"] in rejected:
                doc["rejected"][row["id"]].update({k: row[k] for k in ("source", "original_file", "content_hash")})
    write_curation_doc(folder, doc)


def _update_samples(fo, dataset, edits: dict, changes: dict, media: Path, report: SyncReport) -> None:
    """Make the FiftyOne dataset mirror the folder again and count the edits into ``report``."""
    new_flags = set()
    for row_id, edit in edits.items():
        decision = edit.decision
        if decision.reject:
            report.rejected += 1
            continue
        sample = dataset[edit.sample_id]
        if decision.new_class is not None:
            report.reclassed += 1
            sample["anomaly_class"] = fo.Classification(label=decision.new_class)
            sample.tags = [t for t in sample.tags if not t.startswith(RECLASS_PREFIX)]
        if decision.mask is not None:
            if edit.mask_kind == "added":
                report.masks_added += 1
                sample.tags = [t for t in sample.tags if t != NO_MASK_TAG]
            else:
                report.masks_replaced += 1
            change = changes[row_id]
            path = mask_file(media, row_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(path, change.fields.mask_png)
            sample["ground_truth"] = fo.Segmentation(mask_path=str(path))
            sample["mask_sha256"] = file_sha256(path)
            for key, value in (("bbox", change.fields.bbox), ("mask_area_ratio", change.fields.mask_area_ratio),
                               ("content_hash", change.fields.content_hash), ("qa_flags", change.fields.flags)):
                sample[key] = value
            sample.tags = [t for t in sample.tags if not t.startswith(QA_TAG_PREFIX)] + [
                f"{QA_TAG_PREFIX}{f}" for f in change.fields.flags]
            if change.fields.flags != change.flags_before:
                report.flags_changed[row_id] = {"before": change.flags_before, "after": change.fields.flags}
                new_flags.update(change.fields.flags)
        sample.save()
    rejected = [e.sample_id for e in edits.values() if e.decision.reject]
    if rejected:
        dataset.delete_samples(rejected)
    save_qa_views(dataset, new_flags)


def sync_from_fiftyone(name: str, daad_folder) -> SyncReport:
    """Write the curation edits of FiftyOne dataset ``name`` back into ``daad_folder``.

    See the module docstring for what counts as an edit and the order of writes. Raises
    :class:`CurationError` (nothing written) when an edit is invalid.
    """
    fo = import_fiftyone()
    folder = Path(daad_folder).resolve()
    if not fo.dataset_exists(name):
        raise CurationError(f"no FiftyOne dataset {name!r}")
    dataset = fo.load_dataset(name)
    info = dataset.info.get(INFO_KEY) or {}
    if not info:
        raise CurationError(f"FiftyOne dataset {name!r} was not made by cai-hub curation")
    if not dataset.has_sample_field("daad_id"):
        raise CurationError(f"FiftyOne dataset {name!r} has no daad_id field")

    index = _folder_index(folder)
    report = SyncReport(rows_before=len(index), curation_file=str(folder / CURATION_FILE))
    edits, emptied = _find_edits(dataset, index, report)

    # 1. the durable record
    _record(folder, edits, index)

    # 2. the shards
    by_shard: dict = {}
    for row_id, edit in edits.items():
        by_shard.setdefault(index[row_id][0], {})[row_id] = edit.decision
    config, changes = _qa_config(folder), {}

    def edited(shard: Path) -> pa.Table:
        table = pq.read_table(shard)
        rows, shard_changes = apply_decisions(table.to_pylist(), by_shard[shard], SHARD_ROWS, config,
                                              drop_rejected=True)
        changes.update(shard_changes)
        return pa.Table.from_pylist(rows, schema=table.schema)

    report.shards_rewritten, report.shards_removed = rewrite_shards(folder, edited, by_shard, emptied)

    # 3. the FiftyOne dataset mirrors the folder again
    media = Path(info.get("media_dir") or default_media_dir(fo, name))
    _update_samples(fo, dataset, edits, changes, media, report)
    report.rows_after = report.rows_before - report.rejected
    info["fingerprint"] = content_fingerprint(folder)
    info["folder"] = str(folder)
    dataset.info[INFO_KEY] = info
    dataset.save()

    # 4. the QA report and the card
    if edits:
        report.qa_report = _refresh_qa_report(folder)
    logger.info("synced %r into %s: %s", name, folder, report.to_dict())
    return report
