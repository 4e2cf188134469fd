"""`daad build`: turn a recipe (sources + taxonomy + QA settings) into the hub-ready DAAD folder.

Steps: import each source (:mod:`cai.layouts`) → class by the taxonomy
(:mod:`daad_tools.taxonomy`) → decode + per-row QA (:mod:`daad_tools.qa`) → set-wide duplicate
detection and the publish decision → parquet shards with embedded image bytes → card + QA report.

Output folder::

    OUT/data/train-XXXXX-of-YYYYY.parquet   rows of ``DAAD_FEATURES`` (image + mask bytes embedded)
    OUT/README.md                           card rendered from ``cards/daad_dataset.md``
    OUT/qa_report.json, OUT/qa_report.md    every rejected row with its reasons, counts per flag/source/class
    OUT/.daad/                              work dir: run fingerprint, first-pass manifests, shard markers
    OUT/curation.json, OUT/curation_masks/  the reviewer's decisions (``daad sync`` writes them; see Curation)

Resume. Duplicate detection is global (across sources), so the build runs in two passes. The first
pass decodes every row once and stores a small per-source manifest (hashes, flags, geometry, the mask
as PNG, the image file's sha256; no image bytes) under ``.daad/pass1/``; a finished source is never
redone. The publish decision and the row → shard plan are then computed from all manifests (cheap
and deterministic). The second pass writes one shard at a time to ``.daad/tmp`` and renames it into
``data/`` (atomic), then writes its marker. An interrupted build rerun with the same recipe and code
(same fingerprint) keeps the finished sources and shards and writes only what is missing; a different
fingerprint is refused unless ``overwrite=True``.

Curation. The reviewer's decisions that ``daad sync`` (:mod:`daad_tools.sync`) records in
``OUT/curation.json`` (mask PNGs under ``OUT/curation_masks/``) are applied to the first-pass manifest
before the publish decision: a rejected id is never published (reason ``curated_reject``, which wins
over ``qa.keep_ids``), a reclassed id gets its new class (over the taxonomy and its overrides), an
edited mask replaces the source mask and goes through the same per-row code as any mask (bbox, area
ratio, content hash, QA flags; a curated mask that gets a rejecting flag is rejected like any row
unless its id is in ``qa.keep_ids``). The first pass does not depend on the curation; every shard
marker records the digest of the curation it was written with, so after a change of the decisions
(or of a mask file) the next build rewrites every shard. ``overwrite=True`` never deletes
``curation.json`` or ``curation_masks/``, and a folder holding nothing else counts as empty.
:func:`refresh_report` recomputes the QA report and the card of a built folder for its current
curation without writing shards (``daad sync`` calls it).

Image bytes. A source image whose file is JPEG or PNG, 8-bit RGB or grey (L), without an EXIF
rotation is embedded byte for byte (no recompression; a grey source therefore decodes to mode L,
use ``.convert("RGB")``); anything else is re-encoded as lossless PNG of the decoded pixels (grey
as L, colour as RGB). Masks are always lossless single-channel PNG, 0/255.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from cai import atomic

from . import border as border_mod
from . import curation as curation_mod
from . import qa as qa_mod
from . import refine as refine_mod
from .card import render_card
from .curation import CURATION_FILE, CURATION_MASK_DIR, Curation, CurationError, RowFormat, apply_decisions
from .folder import card_counts, read_columns  # noqa: F401  (re-exported)
from .mask_fields import MaskFields, mask_fields
from .recipe import BuildError, Recipe, SourceSpec, load_recipe
from .records import CLASSES, DAAD_FEATURES, RawAnomaly

BUILD_VERSION = 1
WORK = ".daad"
CHUNK = 64  # records per taxonomy call (bounds the masks held in memory)
_CODE_FILES = ("daad_tools/records.py", "daad_tools/qa.py", "daad_tools/build.py", "daad_tools/recipe.py",
               "daad_tools/taxonomy.py", "daad_tools/curation.py", "daad_tools/mask_fields.py", "cai/imageio.py",
               "daad_tools/refine.py", "daad_tools/border.py", "cai/engine/refine.py", "cai/engine/poisson.py")
_OUTPUT_NAMES = {"README.md", "data", "qa_report.json", "qa_report.md", WORK, "mosaics"}
CURATED_REJECT = "curated_reject"  # QA report reason of a row rejected in curation.json


def _fingerprint(recipe: Recipe) -> str:
    settings = {
        "sources": [{k: v for k, v in vars(s).items() if k != "root"} for s in recipe.sources],
        "name": recipe.name, "shard_size": recipe.shard_size, "split_components": recipe.split_components,
        "min_component_area": recipe.min_component_area, "unmapped": recipe.unmapped,
        "exclude_licenses": sorted(_norm_license(x) for x in recipe.exclude_licenses),
        "taxonomy": recipe.taxonomy, "qa": recipe.qa.to_dict(),
        "border": recipe.border, "border_trim": recipe.border_trim, "refine": recipe.refine.to_dict(),
    }
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(code_version().encode())
    return h.hexdigest()


def code_version() -> str:
    """sha256 over the code a DAAD build depends on (records, QA, build, taxonomy and its data files,
    importers, curation reading, image decoding) plus ``BUILD_VERSION``: a change invalidates an
    unfinished build."""
    repo = Path(__file__).resolve().parents[1]
    files = [repo / f for f in _CODE_FILES]
    package = repo / "daad_tools"
    files += sorted((repo / "cai" / "layouts").rglob("*.py"))
    files += sorted(p for ext in ("*.yaml", "*.yml", "*.json", "*.csv") for p in package.rglob(ext))
    h = hashlib.sha256(f"daad-build-{BUILD_VERSION}".encode())
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(repo)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _norm_license(value) -> str:
    return str(value).strip().casefold()


# ---------------------------------------------------------------------------------------------
# curation (the decisions `daad sync` records in the output folder)


def load_curation(folder) -> Curation:
    """The curation recorded in ``folder`` (:func:`daad_tools.curation.load_curation`); BuildError
    for an unreadable ``curation.json``, a class that is not a DAAD class, a missing mask file."""
    try:
        return curation_mod.load_curation(folder)
    except CurationError as exc:
        raise BuildError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# seams to the importers and the taxonomy (tests replace these)


def _iter_source(layout: str, root: str, options: dict, stats: dict):
    """The importer's records; ``stats`` is handed to importers that fill one (their common option)."""
    import inspect

    from cai.layouts import get_importer, iter_source
    try:
        accepts = "stats" in inspect.signature(get_importer(layout).iter_anomalies).parameters
    except ValueError as exc:  # unknown layout
        raise BuildError(str(exc)) from exc
    return iter_source(layout, root, **options, **({"stats": stats} if accepts and "stats" not in options else {}))


def _taxonomy_module():
    from daad_tools import taxonomy
    return taxonomy


# ---------------------------------------------------------------------------------------------
# first pass: import, classify, decode, per-row QA → per-source manifest


def _manifest_schema():
    import pyarrow as pa
    return pa.schema([
        ("id", pa.string()), ("origin", pa.string()), ("order", pa.int64()), ("source", pa.string()),
        ("original_file", pa.string()), ("original_label", pa.string()), ("source_kind", pa.string()),
        ("source_domain", pa.string()), ("license", pa.string()), ("anomaly_class", pa.string()),
        ("importer_component", pa.int64()), ("component", pa.int64()), ("image_path", pa.string()),
        ("file_sha256", pa.string()), ("image_storage", pa.string()), ("width", pa.int64()),
        ("height", pa.int64()), ("image_hash", pa.string()), ("phash", pa.int64()), ("mask_png", pa.binary()),
        ("bbox", pa.list_(pa.int64())), ("mask_area_ratio", pa.float64()), ("content_hash", pa.string()),
        ("flags", pa.list_(pa.string())), ("notes", pa.list_(pa.string())), ("usable", pa.bool_()),
        ("mask_refined_png", pa.binary()), ("visible_share", pa.float64()),
    ])


def _image_storage(raw: bytes) -> str:
    """``"original"`` when the file's bytes can be embedded as they are, else ``"png"``."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(raw)) as im:
            orientation = im.getexif().get(0x0112, 1)
            if im.format in ("JPEG", "PNG") and im.mode in ("RGB", "L") and orientation in (0, 1):
                return "original"
    except Exception:  # undecodable here means load_rgb failed already; re-encoding path reports it
        pass
    return "png"


def _encode_image(raw: bytes, storage: str) -> bytes:
    from cai.imageio import encode_png, load_rgb
    if storage == "original":
        return raw
    rgb, is_grey = load_rgb(raw)
    return encode_png(rgb[..., 0] if is_grey else rgb)["bytes"]


def _check_class(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= int(value) < len(CLASSES):
            raise BuildError(f"taxonomy returned class index {value}, outside 0..{len(CLASSES) - 1}")
        return CLASSES[int(value)]
    if str(value) not in CLASSES:
        raise BuildError(f"taxonomy returned class {value!r}, not one of {CLASSES}")
    return str(value)


def _components(mask: np.ndarray, connectivity: int, min_area: int):
    """Connected components of ``mask`` numbered 1.. in raster order of their first pixel (cv2's
    labelling order), kept when at least ``min_area`` px: list of (k, component mask), dropped count."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    kept, dropped = [], 0
    for k in range(1, n):
        if stats[k, cv2.CC_STAT_AREA] >= min_area:
            kept.append((k, labels == k))
        else:
            dropped += 1
    return kept, dropped


def _record_rows(record: RawAnomaly, cls: str, order: int, split: bool, recipe: Recipe,
                 border: str = "keep") -> tuple[list, int]:
    """Decode one record and return its manifest rows (one, or one per kept component) and the
    number of components dropped as too small. With ``border="trim"`` a mask touching the image
    border is cut back by ``recipe.border_trim`` px first (note ``border_trimmed``)."""
    from cai.imageio import BadInput, load_rgb

    cfg = recipe.qa
    notes = [str(n) for n in (record.notes or [])]
    origin = f"{record.source}/{record.original_file}"
    base = {"origin": origin, "order": order, "source": record.source, "original_file": record.original_file,
            "original_label": str(record.original_label), "source_kind": record.source_kind,
            "source_domain": record.source_domain, "license": record.license, "anomaly_class": cls,
            "importer_component": int(record.component), "component": 0, "image_path": str(record.image_path),
            "notes": notes, "file_sha256": None, "image_storage": None, "width": 0, "height": 0,
            "image_hash": None, "phash": 0, "mask_png": None, "bbox": [0, 0, 0, 0], "mask_area_ratio": 0.0,
            "content_hash": None, "usable": False, "mask_refined_png": None, "visible_share": None}
    try:
        raw = Path(record.image_path).read_bytes()
        rgb, _ = load_rgb(raw)
    except (OSError, BadInput):
        flags = sorted(set(qa_mod.note_flags(notes)) | {"image_unreadable"}, key=qa_mod.FLAGS.index)
        return [{**base, "flags": flags}], 0
    height, width = rgb.shape[:2]
    base.update(file_sha256=hashlib.sha256(raw).hexdigest(), image_storage=_image_storage(raw), width=width,
                height=height, image_hash=qa_mod.image_hash(rgb), phash=qa_mod.phash(rgb))
    mask = record.mask
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape != (height, width):
            flags = sorted(set(qa_mod.note_flags(notes)) | {"size_mismatch"}, key=qa_mod.FLAGS.index)
            return [{**base, "flags": flags}], 0
        mask = mask.astype(bool) if mask.dtype != bool else mask
        if border == "trim" and border_mod.touches_border(mask):
            mask = border_mod.trim_border(mask, recipe.border_trim)
            notes = notes + ["border_trimmed"]
            base["notes"] = notes
    if mask is None:
        return [{**base, "flags": qa_mod.row_flags(None, cfg, notes)}], 0
    pieces, dropped = [(0, mask)], 0
    if split and mask.any():
        kept, dropped = _components(mask, cfg.connectivity, recipe.min_component_area)
        if kept:
            pieces = kept
    return [{**base, "component": k, **_manifest_mask_columns(mask_fields(rgb, part, cfg, notes, recipe.refine))}
            for k, part in pieces], dropped


def _manifest_mask_columns(fields: MaskFields) -> dict:
    """The manifest columns of a row's :class:`~daad_tools.mask_fields.MaskFields` (source or curated mask)."""
    return {"mask_png": fields.mask_png, "bbox": fields.bbox, "mask_area_ratio": fields.mask_area_ratio,
            "content_hash": fields.content_hash, "usable": True, "flags": fields.flags,
            "visible_share": fields.visible_share, "mask_refined_png": fields.mask_refined_png}


def _manifest_rgb(row: dict) -> np.ndarray:
    """(H, W, 3) uint8 of a manifest row's source image (checked against the first pass)."""
    from cai.imageio import load_rgb

    if row["file_sha256"] is None:
        raise BuildError(f"curation.json has a mask for {row['id']!r}, whose image is unreadable")
    return load_rgb(_source_bytes(row))[0]


# the first-pass manifest's rows: class names, the image read from its source file
MANIFEST_ROWS = RowFormat(flags="flags", notes="notes", class_value=str, image=_manifest_rgb,
                          mask_columns=_manifest_mask_columns)


def _assign_ids(rows: list) -> None:
    """``<source>/<original_file>[#<label>][@<component>]``: ``#label`` when the importer split a file by
    class (component >= 1) or two records of the source share a file; ``@k`` for a connected component."""
    def make(row, with_label):
        rid = row["origin"]
        if with_label:
            rid += f"#{row['original_label']}"
        if row["component"]:
            rid += f"@{row['component']}"
        return rid

    records = Counter((r["origin"], r["order"]) for r in rows)  # rows of one record share (origin, order)
    per_origin = Counter(origin for origin, _ in records)
    for row in rows:
        row["id"] = make(row, row["importer_component"] >= 1 or per_origin[row["origin"]] > 1)
    seen = Counter(r["id"] for r in rows)
    clash = sorted(i for i, n in seen.items() if n > 1)
    if clash:
        raise BuildError(f"the importer yielded several records with the same id, e.g. {clash[:3]} "
                         "(same file and label): fix the importer or its options")


def _run_source(index: int, spec: SourceSpec, recipe: Recipe, taxonomy, tax_mod, progress: bool) -> tuple[list, dict]:
    """First pass over one source: manifest rows and the source's bookkeeping."""
    info = {"index": index, "layout": spec.layout, "root": spec.root, "records": 0, "unmapped": 0,
            "taxonomy_excluded": 0, "excluded_license": 0, "components_dropped": 0, "taxonomy_report": None, "sources": [],
            "licenses": [], "missing": False}
    if not Path(spec.resolved_root).exists():
        if spec.optional:
            info["missing"] = True
            return [], info
        raise BuildError(f"sources[{index}] ({spec.layout}): root {spec.resolved_root} does not exist "
                         "(set optional: true to skip a missing source)")
    excluded = {_norm_license(x) for x in recipe.exclude_licenses}
    split = recipe.split_components if spec.split_components is None else bool(spec.split_components)
    overrides = {k: getattr(spec, k) for k in ("source", "license", "source_kind", "source_domain")
                 if getattr(spec, k) is not None}
    rows, reports, order, import_stats, seen, unmapped_pairs = [], [], 0, {}, set(), {}
    bar = tqdm(desc=f"[{index}] {spec.source or spec.layout}", unit="record", disable=not progress)

    def flush(chunk):
        nonlocal order
        if not chunk:
            return
        # always "skip" here: with unmapped="error" every unknown label of the source is collected
        # first, so the error lists them all at once
        mapped, report = tax_mod.map_records(chunk, taxonomy, unmapped="skip")
        mapped = list(mapped)
        reports.append(report)
        missing = report.get("unmapped") if isinstance(report, dict) else None
        if isinstance(missing, dict):
            for pair, n in missing.items():
                unmapped_pairs[pair] = unmapped_pairs.get(pair, 0) + int(n)
            n_missing = sum(int(n) for n in missing.values())
        else:  # a report without the breakdown: everything not mapped counts as unmapped
            n_missing = len(chunk) - len(mapped)
        info["unmapped"] += n_missing
        info["taxonomy_excluded"] += len(chunk) - len(mapped) - n_missing
        bar.update(len(chunk))
        if unmapped_pairs and recipe.unmapped == "error":
            return  # keep reading (to list every unknown label), decode nothing more
        for record, cls in mapped:
            cls = _check_class(cls)
            new, dropped = _record_rows(record, cls, order, split, recipe, spec.border or recipe.border)
            order += 1
            info["components_dropped"] += dropped
            rows.extend(new)

    def records():
        try:
            yield from _iter_source(spec.layout, spec.resolved_root, spec.options, import_stats)
        except (ValueError, TypeError) as exc:  # LayoutError (a ValueError), unknown layout or option
            raise BuildError(f"sources[{index}] ({spec.layout}, {spec.resolved_root}): {exc}") from exc

    chunk = []
    try:
        for record in records():
            for key, value in overrides.items():
                setattr(record, key, value)
            info["records"] += 1
            seen.add(record.source)
            if _norm_license(record.license) in excluded:
                info["excluded_license"] += 1
                continue
            chunk.append(record)
            if len(chunk) >= CHUNK:
                flush(chunk)
                chunk = []
        flush(chunk)
    finally:
        bar.close()
    if unmapped_pairs and recipe.unmapped == "error":
        listed = ", ".join(f"{_pair_name(p)} ({n})" for p, n in sorted(unmapped_pairs.items(), key=str))
        raise BuildError(f"sources[{index}] ({spec.layout}): labels the taxonomy does not map: {listed}; add them "
                         "to the taxonomy (recipe taxonomy.path / taxonomy.overrides) or build with unmapped: skip")
    _assign_ids(rows)
    info["taxonomy_report"] = _merge_reports(reports)
    info["import_stats"] = _jsonable(import_stats)
    info["sources"] = sorted(seen)
    info["licenses"] = sorted({r["license"] for r in rows})
    return rows, info


def _merge_reports(reports: list):
    """Merge the taxonomy's per-chunk reports: numbers add, dicts merge, lists concatenate."""
    def merge(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(out[k], v) if k in out else v
            return out
        if isinstance(a, bool) or isinstance(b, bool):
            return b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a + b
        if isinstance(a, list) and isinstance(b, list):
            return a + b
        return b

    merged = None
    for r in reports:
        r = _jsonable(r)
        merged = r if merged is None else merge(merged, r)
    return merged


def _pair_name(key) -> str:
    if isinstance(key, tuple):
        return "/".join(map(str, key)) if all(str(k) for k in key) else "/".join(repr(str(k)) for k in key)
    return str(key)


def _jsonable(value):
    """A JSON-safe copy: tuple keys (the taxonomy's (source, label) pairs) become "source/label"."""
    if isinstance(value, dict):
        return {_pair_name(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return _jsonable(vars(value)) if hasattr(value, "__dict__") else str(value)


def _write_json(path: Path, value, sort_keys: bool = True) -> None:
    atomic.write_json(path, value, sort_keys=sort_keys, default=str)


_write_text = atomic.write_text


def _record_nothing(*paths) -> None:
    """Default ``record`` hook: no output manifest to update (e.g. ``refresh_report``)."""


def _first_pass(recipe: Recipe, work: Path, progress: bool, record=_record_nothing):
    """Run (or reuse) the first pass of every source; returns the manifest (a pyarrow table over all
    sources, in source then record order) and the per-source bookkeeping. ``record(*paths)`` lists
    each file in the output folder's manifest before it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pass_dir = work / "pass1"
    pass_dir.mkdir(parents=True, exist_ok=True)
    taxonomy = tax_mod = None
    tables, infos = [], []
    for index, spec in enumerate(recipe.sources):
        parquet, marker = pass_dir / f"source-{index:03d}.parquet", pass_dir / f"source-{index:03d}.json"
        if parquet.is_file() and marker.is_file():
            tables.append(pq.read_table(parquet))
            infos.append(json.loads(marker.read_text()))
            continue
        if tax_mod is None:
            tax_mod = _taxonomy_module()
            overrides = {(key.split("/", 1)[0], key): cls for key, cls in recipe.taxonomy.get("overrides", {}).items()}
            try:
                taxonomy = tax_mod.load_taxonomy(recipe.taxonomy.get("path"), overrides=overrides or None)
            except (ValueError, OSError) as exc:  # TaxonomyError is a ValueError
                raise BuildError(f"taxonomy: {exc}") from exc
        rows, info = _run_source(index, spec, recipe, taxonomy, tax_mod, progress)
        table = pa.Table.from_pylist(rows, schema=_manifest_schema())
        info["rows"] = table.num_rows
        record(parquet, marker)
        with atomic.atomic_path(parquet) as tmp:
            pq.write_table(table, tmp)
        _write_json(marker, info)
        tables.append(table)
        infos.append(info)
    manifest = pa.concat_tables(tables) if tables else pa.Table.from_pylist([], schema=_manifest_schema())
    return manifest, infos


# ---------------------------------------------------------------------------------------------
# decision and plan


def _apply_curation(manifest, recipe: Recipe, curation: Curation):
    """The manifest with the curated classes and masks applied (:func:`daad_tools.curation.apply_decisions`;
    a rejected row stays: the decision drops it as ``curated_reject``); returns it and the curation
    ids that match no row."""
    import pyarrow as pa

    unknown = sorted(curation.ids() - set(manifest.column("id").to_pylist()))
    if not curation.reclassed and not curation.masks:
        return manifest, unknown
    try:
        rows, _ = apply_decisions(manifest.to_pylist(), curation.decisions(), MANIFEST_ROWS, recipe.qa,
                                  drop_rejected=False, refine=recipe.refine)
    except CurationError as exc:
        raise BuildError(str(exc)) from exc
    return pa.Table.from_pylist(rows, schema=_manifest_schema()), unknown


def _decide(manifest, infos, recipe: Recipe, curation: Curation):
    """Curation, duplicate flags, publish decision and QA report over the whole manifest; returns the
    curated manifest, the rows' QA, the decision and the report."""
    manifest, unknown = _apply_curation(manifest, recipe, curation)
    cfg = recipe.qa
    cols = manifest.select(["id", "origin", "source", "anomaly_class", "flags", "usable", "image_hash", "phash",
                            "width", "height"]).to_pylist()
    priority = []
    for i, info in enumerate(infos):
        priority += [i] * info["rows"]
    ids = [c["id"] for c in cols]
    if len(set(ids)) != len(ids):
        clash = sorted(i for i, n in Counter(ids).items() if n > 1)[:3]
        raise BuildError(f"two sources produce the same row ids, e.g. {clash}: give one a different "
                         "`source:` name in the recipe")
    row_reject = set(cfg.reject) & set(qa_mod.ROW_FLAGS)
    keep_ids = set(cfg.keep_ids)
    origins = {}
    for c, prio in zip(cols, priority):
        if c["image_hash"] is None:
            continue
        passes = c["usable"] and (not (set(c["flags"]) & row_reject) or c["id"] in keep_ids)
        o = origins.get(c["origin"])
        if o is None:
            origins[c["origin"]] = qa_mod.Origin(c["origin"], c["image_hash"], c["phash"], (c["height"], c["width"]),
                                                 prio, passes)
        elif passes and not o.passes:
            origins[c["origin"]] = qa_mod.Origin(o.key, o.image_hash, o.phash, o.shape, o.priority, True)
    dups = qa_mod.find_duplicates(origins.values(), near_distance=cfg.near_duplicate_distance)
    if cfg.near_duplicate_min_mask_iou > 0:
        dups = _near_duplicates_with_alike_masks(manifest, cols, dups, cfg.near_duplicate_min_mask_iou)
    border_policies = {}
    for i, info in enumerate(infos):
        for name in info["sources"]:
            border_policies[name] = recipe.sources[i].border or recipe.border
    rows = []
    for c in cols:
        flags, dup_of = list(c["flags"]), None
        if c["origin"] in dups:
            flag, dup_of = dups[c["origin"]]
            flags = sorted(set(flags) | {flag}, key=qa_mod.FLAGS.index)
        if "touches_border" in flags and border_policies.get(c["source"], recipe.border) == "exclude":
            flags = sorted(set(flags) | {"border_excluded"}, key=qa_mod.FLAGS.index)
        rows.append(qa_mod.RowQA(c["id"], c["origin"], c["source"], c["anomaly_class"], flags, dup_of, c["usable"]))
    # a curated reject goes to decide() as a drop_ids entry (reason "manual") and is renamed here;
    # border_excluded always rejects (the source's border policy says so)
    keep, report = qa_mod.decide(rows, replace(cfg, drop_ids=(*cfg.drop_ids, *sorted(curation.rejected)),
                                               reject=tuple(dict.fromkeys((*cfg.reject, "border_excluded")))))
    for r in report["rejected_rows"]:
        if r["id"] in curation.rejected:
            r["reasons"] = [x for x in r["reasons"] if x != "manual" or r["id"] in cfg.drop_ids] + [CURATED_REJECT]
    reasons = Counter(x for r in report["rejected_rows"] for x in r["reasons"])
    recipe_ids = set(cfg.drop_ids) | set(cfg.keep_ids)
    report.update(
        rejected_by_reason={x: reasons[x] for x in (*qa_mod.FLAGS, "manual", CURATED_REJECT, "unusable") if reasons[x]},
        unknown_override_ids=[i for i in report["unknown_override_ids"] if i in recipe_ids],
        config=cfg.to_dict(),  # the recipe's, without the curated ids
        curation={"digest": curation.digest, "rejected": len(curation.rejected), "reclassed": len(curation.reclassed),
                  "masks": len(curation.masks), "unknown_ids": unknown},
        border_policy={"default": recipe.border, "trim_px": recipe.border_trim,
                       "per_source": border_mod.policy_counts(((r.source, r.flags) for r in rows), border_policies,
                                                              recipe.border)},
        refinement=_refinement_report(manifest, rows, keep, dups, recipe))
    return manifest, rows, keep, report


def _near_duplicates_with_alike_masks(manifest, cols, dups: dict, min_iou: float) -> dict:
    """``dups`` without the near duplicates whose masks (union over the origin's rows) differ from the
    kept origin's: :func:`daad_tools.qa.small_mask_iou` below ``min_iou``."""
    near = {o for o, (flag, _) in dups.items() if flag == "near_duplicate"}
    wanted = near | {dups[o][1] for o in near}
    index = {}
    for i, c in enumerate(cols):
        if c["origin"] in wanted:
            index.setdefault(c["origin"], []).append(i)
    masks = {}
    for origin, members in index.items():
        parts = [_decode_png(p) for p in manifest.take(members).column("mask_png").to_pylist()]
        parts = [p for p in parts if p is not None]
        masks[origin] = np.logical_or.reduce(parts) if parts and len({p.shape for p in parts}) == 1 else None
    out = dict(dups)
    for origin in near:
        a, b = masks.get(origin), masks.get(dups[origin][1])
        if a is not None and b is not None and qa_mod.small_mask_iou(a, b) < min_iou:
            del out[origin]
    return out


def _refinement_report(manifest, rows, keep, dups: dict, recipe: Recipe) -> dict:
    """The QA report's ``refinement`` entry: counts per source, the ids with a stored refined mask, and
    the agreement with reference sources (:func:`daad_tools.refine.agreement`)."""
    cfg = recipe.refine
    if not cfg.enabled:
        return {"enabled": False}
    shares = manifest.column("visible_share").to_pylist()
    per_source = {}
    for row, share, ok in zip(rows, shares, keep):
        if share is None:
            continue
        e = per_source.setdefault(row.source, {"rows": 0, "coarse": 0, "stored": 0, "shares": []})
        e["rows"] += 1
        e["coarse"] += "coarse_mask" in row.flags
        e["stored"] += "refined_mask" in row.flags
        e["shares"].append(share)
    for e in per_source.values():
        e["median_visible_share"] = round(float(np.median(e.pop("shares"))), 3)
    references = []
    origin_rows = {}
    for i, row in enumerate(rows):
        origin_rows.setdefault(row.origin, []).append(i)
    for ref_source in cfg.reference_sources:
        pairs, kept_sources = [], set()
        for i, row in enumerate(rows):
            if row.source != ref_source or row.origin not in dups or dups[row.origin][0] != "exact_duplicate":
                continue
            kept = origin_rows.get(dups[row.origin][1], [])
            if not kept or any(rows[j].source == ref_source for j in kept):
                continue
            take = manifest.take([i, *kept]).select(["mask_png", "mask_refined_png"]).to_pylist()
            reference = _decode_png(take[0]["mask_png"])
            if reference is None:
                continue
            masks = [_decode_png(t["mask_png"]) for t in take[1:]]
            if any(m is None or m.shape != reference.shape for m in masks):
                continue
            refined = [_decode_png(t["mask_refined_png"]) if t["mask_refined_png"] else m
                       for t, m in zip(take[1:], masks)]
            kept_sources.add(rows[kept[0]].source)
            pairs.append((rows[kept[0]].id, np.logical_or.reduce(masks), np.logical_or.reduce(refined), reference))
        references.append({"reference_source": ref_source, "sources": sorted(kept_sources),
                           "agreement": refine_mod.agreement(pairs)})
    return {"enabled": True, **cfg.to_dict(), "per_source": dict(sorted(per_source.items())), "reference": references,
            "refined_ids": [r.id for r, ok in zip(rows, keep) if ok and "refined_mask" in r.flags]}


def _decode_png(data) -> np.ndarray | None:
    """(H, W) bool array of a mask PNG's bytes (None for no bytes)."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) > 0


def _plan(rows, keep, shard_size: int) -> list[list[int]]:
    """Manifest indices of the published rows, cut into shards in manifest order."""
    published = [i for i, k in enumerate(keep) if k]
    if not published:
        raise BuildError("no row passed QA: nothing to publish (see qa_report.md)")
    return [published[i:i + shard_size] for i in range(0, len(published), shard_size)]


# ---------------------------------------------------------------------------------------------
# second pass: shards


def _source_bytes(row: dict) -> bytes:
    """The bytes of a manifest row's image file, checked against the first pass."""
    raw = Path(row["image_path"]).read_bytes()
    if hashlib.sha256(raw).hexdigest() != row["file_sha256"]:
        raise BuildError(f"{row['image_path']} changed since the first pass of this build; rerun with --overwrite")
    return raw


def _shard_columns(manifest_rows: list, flags: list) -> dict:
    columns = {name: [] for name in DAAD_FEATURES}
    for row, row_flags in zip(manifest_rows, flags):
        raw = _source_bytes(row)
        columns["id"].append(row["id"])
        columns["image"].append({"bytes": _encode_image(raw, row["image_storage"]), "path": None})
        columns["mask"].append({"bytes": row["mask_png"], "path": None})
        columns["anomaly_class"].append(row["anomaly_class"])
        for name in ("source", "source_kind", "source_domain", "original_label", "original_file", "license",
                     "bbox", "mask_area_ratio", "width", "height", "content_hash"):
            columns[name].append(row[name])
        columns["qa_flags"].append(list(row_flags))
        columns["mask_refined"].append({"bytes": row["mask_refined_png"], "path": None} if row["mask_refined_png"] else None)
    return columns


def _write_shard(tmp: Path, columns: dict) -> None:
    import datasets
    datasets.Dataset.from_dict(columns, features=DAAD_FEATURES).to_parquet(str(tmp))


def _shard_name(index: int, total: int) -> str:
    return f"train-{index:05d}-of-{total:05d}.parquet"


def _second_pass(out: Path, work: Path, manifest, rows, plan, curation: str, progress: bool, folder) -> None:
    """Write the shards of ``plan``; a shard whose file and marker (same rows, same ``curation`` digest)
    are there is kept. Each file is listed in ``folder``'s manifest (:mod:`cai.output_folder`) before
    it is written; a stale shard is removed only when the manifest lists it."""
    data_dir, marker_dir, tmp_dir = out / "data", work / "shards", work / "tmp"
    for d in (data_dir, marker_dir, tmp_dir):
        d.mkdir(parents=True, exist_ok=True)
    total = len(plan)
    names = {_shard_name(i, total) for i in range(total)}
    for stale in sorted(data_dir.glob("*")):  # shards of an older layout of this run, if we wrote them
        if stale.name not in names and stale.is_file() and f"data/{stale.name}" in folder.files:
            stale.unlink()
    for partial in tmp_dir.glob("*"):  # a shard being written when the last run was killed
        partial.unlink()
    bar = tqdm(total=sum(len(s) for s in plan), desc="Writing shards", unit="row", disable=not progress)
    try:
        for index, members in enumerate(plan):
            name = _shard_name(index, total)
            ids = [rows[i].id for i in members]
            marker = marker_dir / f"{name}.json"
            done = {"ids": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "curation": curation}
            written = json.loads(marker.read_text()) if marker.is_file() else {}
            if (data_dir / name).is_file() and {k: written.get(k) for k in done} == done:
                bar.update(len(members))
                continue
            manifest_rows = manifest.take(members).to_pylist()
            columns = _shard_columns(manifest_rows, [rows[i].flags for i in members])
            tmp = tmp_dir / name
            folder.add(tmp, data_dir / name, marker)
            _write_shard(tmp, columns)
            os.replace(tmp, data_dir / name)
            _write_json(marker, {**done, "rows": len(members)})
            bar.update(len(members))
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# the build


def _prepare_out(out: Path, fingerprint: str, overwrite: bool, recipe: Recipe):
    """Claim ``out`` through :mod:`cai.output_folder` (the reviewer's curation files are never ours
    nor in the way) and start or resume the build ``fingerprint``; return ``(folder, work)``.

    Someone's folder, the current folder or a source root is refused; a folder holding another DAAD
    build is refused unless ``overwrite``, which removes only the files the manifest lists."""
    from cai.output_folder import OutputFolderError, claim

    inputs = {f"sources[{i}].root": spec.resolved_root for i, spec in enumerate(recipe.sources)}
    try:
        folder = claim(out, "daad-build", inputs=inputs, overwrite=overwrite, keep=(CURATION_FILE, CURATION_MASK_DIR),
                       legacy_marker=f"{WORK}/run.json", legacy_names=tuple(_OUTPUT_NAMES))
    except OutputFolderError as exc:
        raise BuildError(str(exc)) from None
    work = out / WORK
    run_file = work / "run.json"
    if folder.resumed and run_file.is_file() and json.loads(run_file.read_text()).get("fingerprint") != fingerprint:
        raise BuildError(f"--out {out} holds another DAAD build (different recipe, settings or code); choose another "
                         "--out, or pass --overwrite to replace it (it removes only the files the build wrote)")
    work.mkdir(parents=True, exist_ok=True)
    folder.add(run_file)
    _write_json(run_file, {"fingerprint": fingerprint, "code_version": code_version(),
                           "build_version": BUILD_VERSION, "recipe": str(Path(recipe.path).resolve()),
                           "unmapped": recipe.unmapped, "exclude_licenses": list(recipe.exclude_licenses)})
    return folder, work


def build_daad(recipe_path, out, overwrite: bool = False, unmapped: str | None = None, exclude_licenses=(),
               progress: bool = True) -> dict:
    """Build the DAAD folder described by a recipe.

    Parameters
    ----------
    recipe_path : str or Path
        YAML recipe (see ``recipes/daad/daad.yaml``).
    out : str or Path
        Output folder (hub-ready; loads with ``datasets.load_dataset(out)``).
    overwrite : bool
        Replace an output folder holding another DAAD build.
    unmapped : {"error", "skip"}, optional
        Overrides the recipe's ``unmapped``.
    exclude_licenses : iterable of str
        Licences left out, added to the recipe's ``exclude_licenses``.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        The QA report (also ``qa_report.json``), with ``shards`` and ``fingerprint`` added.

    Raises
    ------
    BuildError
        Bad recipe, unknown label with ``unmapped="error"``, output folder holding another build,
        nothing left to publish.
    """
    import datasets

    recipe = load_recipe(recipe_path, unmapped=unmapped, exclude_licenses=exclude_licenses)
    out = Path(out)
    curation = load_curation(out)  # before anything is deleted or written: a bad curation.json stops here
    fingerprint = _fingerprint(recipe)
    folder, work = _prepare_out(out, fingerprint, overwrite, recipe)
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        manifest, infos = _first_pass(recipe, work, progress, record=folder.add)
        if sum(i["rows"] for i in infos) != manifest.num_rows:
            raise BuildError(f"the first-pass manifests in {work} are inconsistent; rerun with --overwrite")
        manifest, rows, keep, report = _decide(manifest, infos, recipe, curation)
        plan = _plan(rows, keep, recipe.shard_size)
        _second_pass(out, work, manifest, rows, plan, curation.digest, progress, folder)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    folder.add(out / "qa_report.json", out / "qa_report.md", out / "README.md")
    return _write_report(out, _full_report(report, infos, recipe, fingerprint, len(plan)), recipe)


def _write_report(out: Path, report: dict, recipe: Recipe) -> dict:
    """``qa_report.json``, ``qa_report.md`` and the card of ``out``."""
    _write_json(out / "qa_report.json", report, sort_keys=False)  # keeps the flag order of the report
    markdown = qa_mod.report_markdown(report, title=f"{recipe.name} mask QA")
    cur = report["curation"]
    if cur["rejected"] or cur["reclassed"] or cur["masks"]:
        markdown += (f"\n## Curation (curation.json)\n\n{cur['rejected']} rejected (reason `{CURATED_REJECT}`), "
                     f"{cur['reclassed']} reclassed, {cur['masks']} curated mask(s).\n")
        if cur["unknown_ids"]:
            markdown += "\nIds matching no row: " + ", ".join(f"`{i}`" for i in cur["unknown_ids"]) + "\n"
    markdown += refine_mod.report_markdown(report.get("refinement"))
    markdown += _border_markdown(report.get("border_policy"))
    _write_text(out / "qa_report.md", markdown)
    render_card(out, report)
    return report


def _border_markdown(border: dict | None) -> str:
    if not border:
        return ""
    lines = ["", "## Border policy", "", f"Default `{border['default']}`; `trim` cuts {border['trim_px']} px back from the border.",
             "", "| source | policy | rows | touching the border | trimmed | excluded |", "|---|---|---|---|---|---|"]
    lines += [f"| {s} | {e['policy']} | {e['rows']} | {e['touching']} | {e['trimmed']} | {e['excluded']} |"
              for s, e in border["per_source"].items()]
    return "\n".join(lines) + "\n"


def refresh_report(folder) -> dict:
    """Recompute ``qa_report.json``/``.md`` and the card of a built folder for its current
    ``curation.json``, from the build's cached first pass, without writing shards (``daad sync``
    calls this after it edits the shards; the next build rewrites the shards).

    Raises
    ------
    BuildError
        The folder has no finished first pass, or its recipe or the code changed since it was built.
    """
    folder = Path(folder)
    work = folder / WORK
    try:
        run = json.loads((work / "run.json").read_text())
        recipe = load_recipe(run["recipe"], unmapped=run["unmapped"], exclude_licenses=run["exclude_licenses"])
    except (OSError, ValueError, KeyError, BuildError) as exc:
        raise BuildError(f"{folder}: cannot reload the recipe of its build ({exc})") from exc
    fingerprint = _fingerprint(recipe)
    if run.get("fingerprint") != fingerprint:
        raise BuildError(f"{folder}: its recipe {recipe.path} or the code changed since it was built")
    if not all((work / "pass1" / f"source-{i:03d}.json").is_file() for i in range(len(recipe.sources))):
        raise BuildError(f"{folder}: the first pass of its build is not finished")
    manifest, infos = _first_pass(recipe, work, progress=False)  # all cached: imports nothing
    _, _, _, report = _decide(manifest, infos, recipe, load_curation(folder))
    shards = len(list((folder / "data").glob("train-*.parquet")))
    return _write_report(folder, _full_report(report, infos, recipe, fingerprint, shards), recipe)


def _full_report(report: dict, infos: list, recipe: Recipe, fingerprint: str, shards: int) -> dict:
    by_source = lambda key: {", ".join(i["sources"]) or f"[{i['index']}] {i['layout']}": i[key]  # noqa: E731
                             for i in infos if i[key]}
    report = dict(report)
    report.update({
        "recipe": {"name": recipe.name, "path": recipe.path, "text": recipe.text},
        "sources": [{"index": i["index"], "layout": i["layout"], "root": i["root"], "sources": i["sources"],
                     "licenses": i["licenses"], "records": i["records"], "rows": i["rows"],
                     "missing": i["missing"], "import_stats": i.get("import_stats") or {},
                     "taxonomy_report": i["taxonomy_report"]} for i in infos],
        "excluded_license": by_source("excluded_license"),
        "exclude_licenses": list(recipe.exclude_licenses),
        "unmapped": by_source("unmapped"),
        "taxonomy_excluded": by_source("taxonomy_excluded"),
        "unmapped_policy": recipe.unmapped,
        "components_dropped": by_source("components_dropped"),
        "split_components": recipe.split_components,
        "min_component_area": recipe.min_component_area,
        "missing_sources": [f"[{i['index']}] {i['layout']} {i['root']}" for i in infos if i["missing"]],
        "fingerprint": fingerprint,
        "shards": shards,
    })
    return report
