"""Anomaly-set input: load it (saved folder, hub-ready folder, image/mask pairs or hub id) and turn
its rows into the pattern bank CAI draws from."""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

from .engine._checks import bbox
from . import atomic
from .imageio import BadInput, encode_png, load_mask, load_rgb
from .engine.synthesizer import PatternBank

REQUIRED_COLUMNS = ("image", "mask", "anomaly_class", "source")
PATTERN_FEATURES = datasets.Features({
    "pattern_image": datasets.Image(),
    "pattern_mask": datasets.Image(),
    "long_side": datasets.Value("int32"),
    "anomaly_class": datasets.Value("string"),
    "source": datasets.Value("string"),
    "source_id": datasets.Value("string"),
    "status": datasets.Value("string"),
})
# Pattern crops are an internal cache, not an output: PNG level 1 (lossless, same decoded pixels as any
# level) costs a fraction of level 6's encode time; crops are decoded once per process by the bank.
PATTERN_PNG_LEVEL = 1
# Bumped whenever prepare_patterns' output for the same input changes (crop rule, columns, report).
PATTERN_CACHE_VERSION = 1


class AnomalySetError(ValueError):
    """The anomaly set cannot be used (missing columns, nothing left after filters...)."""


def load_from_hub(spec: str, option: str, error: type[Exception], **kwargs) -> datasets.Dataset:
    """``datasets.load_dataset(spec, split="train")`` for a string that is not a local path.

    Only an ``org/name`` string is tried as a hub id; anything else, or a failed hub access, raises
    ``error`` with one line naming ``option``.
    """
    from .output_folder import looks_like_hub_id

    if not looks_like_hub_id(spec):
        raise error(f"{option} {spec}: no such file or folder (and not a hub id of the form org/name)")
    try:
        return datasets.load_dataset(spec, split="train", **kwargs)
    except Exception as exc:  # offline, unknown repo, no access: one line, not a 40-line traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{option} {spec}: no such local folder, and loading it as a hub dataset failed "
                    f"(offline hub access failed? {type(exc).__name__}: {first[:200]})") from exc


def load_anomaly_set(spec: str, anomaly_class: str | None = None, source: str | None = None,
                     option: str = "--daad") -> datasets.Dataset:
    """Load an anomaly set from a local folder or a hub id.

    Folders (see the README's "On your data"): ``save_to_disk`` output; a hub-ready folder (parquet +
    README, as written by cai-hub or DAAD); ``images/`` + ``masks/`` same-stem pairs (with
    ``metadata.csv``, or ``anomaly_class`` / ``source`` for the whole folder, see
    :mod:`cai.layouts.folder_pairs`); a flat folder of same-stem pairs (``x.jpg`` + ``x.png`` or
    ``x_mask.png``, same ``anomaly_class`` / ``source`` rule). A string that is no local path is
    tried as a hub id only when it looks like ``org/name``.

    Raises
    ------
    AnomalySetError
        One line naming ``option``: missing path, a file, an unreadable layout, missing columns.
    """
    from cai.layouts.folder_pairs import find_flat_pairs, load_flat_pairs, load_folder_pairs

    path = Path(spec)
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(path))
            ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
        elif (path / "images").is_dir() and (path / "masks").is_dir():
            try:
                ds = load_folder_pairs(path, anomaly_class=anomaly_class, source=source)
            except ValueError as exc:
                raise AnomalySetError(f"{option} {spec}: {exc}") from None
        elif find_flat_pairs(path):
            try:
                ds = load_flat_pairs(path, anomaly_class=anomaly_class, source=source)
            except ValueError as exc:
                raise AnomalySetError(f"{option} {spec}: {exc}") from None
        elif any(p.suffix.lower() in (".parquet", ".arrow", ".jsonl", ".csv") for p in path.rglob("*")):
            ds = datasets.load_dataset(str(path), split="train")
        else:
            raise AnomalySetError(
                f"{option} {spec}: not an anomaly set (no parquet files, no saved dataset, no images/ + masks/, "
                "no same-stem image/mask pairs); see the README's 'On your data' for the accepted forms")
    elif path.exists():
        raise AnomalySetError(f"{option} {spec}: is a file; the anomaly set must be a folder or a hub id (org/name)")
    else:
        ds = load_from_hub(spec, option, AnomalySetError)
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise AnomalySetError(f"{option} {spec}: lacks column(s) {missing} (it has {ds.column_names}); an anomaly "
                              "set needs image, mask, anomaly_class and source, see the README's 'On your data'")
    return ds


def _class_names(ds: datasets.Dataset) -> list[str]:
    feature = ds.features["anomaly_class"]
    values = ds["anomaly_class"]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v) for v in values]
    return [str(v) for v in values]


def _crop_batch(batch, indices, context: float):
    """Decode anomaly rows, check them and crop each to its defect's bounding box plus context."""
    out = {name: [] for name in PATTERN_FEATURES}
    for i, index in enumerate(indices):
        status, crop_image, crop_mask, long_side = "ok", None, None, 0
        try:
            image, _ = load_rgb(batch["image"][i])
            mask = load_mask(batch["mask"][i], image.shape)
            r0, c0, r1, c1 = bbox(mask)
            long_side = max(r1 - r0, c1 - c0)
            pad = max(8, int(round(context * long_side)))
            H, W = mask.shape
            box = (slice(max(r0 - pad, 0), min(r1 + pad, H)), slice(max(c0 - pad, 0), min(c1 + pad, W)))
            crop_image = encode_png(image[box], level=PATTERN_PNG_LEVEL)
            crop_mask = encode_png(mask[box], level=PATTERN_PNG_LEVEL)
        except BadInput as exc:
            status = exc.reason
        out["pattern_image"].append(crop_image)
        out["pattern_mask"].append(crop_mask)
        out["long_side"].append(long_side)
        out["anomaly_class"].append(batch["anomaly_class"][i])
        out["source"].append(batch["source"][i])
        sid = batch["id"][i] if "id" in batch else f"{batch['source'][i]}/{index}"
        out["source_id"].append(str(sid))
        out["status"].append(status)
    return out


def prepare_patterns(ds: datasets.Dataset, classes=None, exclude_sources=(), context: float = 0.15,
                     num_proc: int | None = None):
    """Filter an anomaly set and crop every defect to its bounding box plus ``context`` × its long side.

    Returns
    -------
    patterns : datasets.Dataset
        Columns of ``PATTERN_FEATURES`` minus ``status``; only usable rows.
    report : dict
        ``rows_in``, ``excluded_sources`` (name -> rows), ``not_selected_class`` (rows),
        ``skipped`` (reason -> rows, e.g. empty_mask, mask_size_mismatch, corrupt_image).
    """
    names = _class_names(ds)
    sources = [str(s) for s in ds["source"]]
    excluded = Counter(s for s in sources if s in set(exclude_sources))
    keep = [i for i, (c, s) in enumerate(zip(names, sources))
            if (not classes or c in classes) and s not in set(exclude_sources)]
    report = {"rows_in": len(ds), "excluded_sources": dict(excluded),
              "not_selected_class": sum(1 for i, c in enumerate(names) if classes and c not in classes)}
    if classes:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise AnomalySetError(f"--classes {unknown} not in the anomaly set (it has {sorted(set(names))})")
    if not keep:
        raise AnomalySetError("no anomaly row left after the class and source filters")
    if "license" in ds.column_names:
        licenses = {}
        for i, lic in zip(keep, ds.select(keep)["license"]):
            licenses.setdefault(sources[i], set()).add(str(lic))
        report["licenses"] = {s: ", ".join(sorted(v)) for s, v in sorted(licenses.items())}
    ds = ds.select(keep)
    if isinstance(ds.features["anomaly_class"], datasets.ClassLabel):  # class names, not label ids
        ds = ds.remove_columns("anomaly_class").add_column("anomaly_class", [names[i] for i in keep])
    ds = ds.cast_column("image", datasets.Image(decode=False)).cast_column("mask", datasets.Image(decode=False))
    prepared = ds.map(_crop_batch, batched=True, batch_size=16, with_indices=True, fn_kwargs={"context": context},
                      remove_columns=ds.column_names, features=PATTERN_FEATURES, num_proc=num_proc,
                      desc="Cropping anomaly patterns")
    status = prepared["status"]
    report["skipped"] = dict(Counter(s for s in status if s != "ok"))
    ok = [i for i, s in enumerate(status) if s == "ok"]
    if not ok:
        raise AnomalySetError(f"no usable anomaly pattern: {report['skipped']}")
    report["patterns"] = len(ok)
    return prepared.select(ok).remove_columns("status"), report


def cache_root() -> Path:
    """Where prepared patterns are cached: ``$CAI_HUB_CACHE``, else ``$XDG_CACHE_HOME/cai-hub``, else
    ``~/.cache/cai-hub``."""
    if os.environ.get("CAI_HUB_CACHE"):
        return Path(os.environ["CAI_HUB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cai-hub"


def _value_bytes(value) -> bytes:
    """The encoded bytes behind an undecoded ``datasets.Image`` value (dict with bytes or path)."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            try:
                return Path(value["path"]).read_bytes()
            except OSError:  # unreadable: prepare_patterns counts it; the key still names the path
                return ("unreadable:" + str(value["path"])).encode()
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return repr(value).encode()


def patterns_key(ds: datasets.Dataset, classes=None, exclude_sources=(), context: float = 0.15) -> str:
    """Content key of :func:`prepare_patterns` ``(ds, classes, exclude_sources, context)``: a SHA-256 over
    every row's image and mask bytes (file contents for path-only values), class name, source, id and
    licence, plus the filters, ``context`` and :data:`PATTERN_CACHE_VERSION`. Equal keys give equal
    prepared patterns, wherever the set was loaded from; any changed byte gives another key."""
    h = hashlib.sha256(json.dumps({"version": PATTERN_CACHE_VERSION, "png_level": PATTERN_PNG_LEVEL,
                                   "classes": sorted(classes or ()), "exclude": sorted(exclude_sources),
                                   "context": float(context), "rows": len(ds)}).encode())
    columns = [c for c in ("image", "mask", "source", "id", "license") if c in ds.column_names]
    view = ds.select_columns(columns)
    for name in ("image", "mask"):
        if isinstance(view.features[name], datasets.Image):
            view = view.cast_column(name, datasets.Image(decode=False))
    names = iter(_class_names(ds))
    for batch in view.iter(batch_size=256):
        for i in range(len(batch["image"])):
            for name in ("image", "mask"):
                data = _value_bytes(batch[name][i])
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
            meta = [next(names)] + [str(batch[c][i]) for c in columns[2:]]
            h.update(json.dumps(meta).encode())
    return h.hexdigest()


def cached_patterns(ds: datasets.Dataset, classes=None, exclude_sources=(), context: float = 0.15,
                    cache: str | Path | None = None):
    """:func:`prepare_patterns`, done once per anomaly-set content and kept in ``cache`` (default
    :func:`cache_root` ``/ "patterns"``), one ``save_to_disk`` folder per :func:`patterns_key`.

    Returns
    -------
    path : str
        The saved patterns folder (what :func:`open_pattern_bank` opens, in any process).
    patterns : datasets.Dataset
        As :func:`prepare_patterns` returns them (memory-mapped from ``path``).
    report : dict
        As :func:`prepare_patterns` returns it.
    """
    key = patterns_key(ds, classes, exclude_sources, context)
    root = Path(cache) if cache is not None else cache_root() / "patterns"
    path = root / key[:32]
    if not ((path / "state.json").is_file() and (path / "report.json").is_file()):
        patterns, report = prepare_patterns(ds, classes=classes, exclude_sources=exclude_sources, context=context)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{key[:32]}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        patterns.save_to_disk(str(tmp))
        (tmp / "report.json").write_text(json.dumps(report, sort_keys=True))
        try:
            os.replace(tmp, path)  # atomic; a concurrent run that finished first keeps its (equal) copy
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    report = json.loads((path / "report.json").read_text())
    return str(path), datasets.load_from_disk(str(path)), report


@functools.lru_cache(maxsize=1)
def refined_file_name() -> str:
    """``refined-<hash>.npz``, the hash over the source of the code that computes refined masks
    (cai/engine/refine.py and the solver it uses, poisson.py): the name of the shipped masks
    (:func:`shipped_refined_file`), and with the patterns' content key the name of the stored ones
    (:func:`ensure_refined_masks`), so a changed refinement never reads masks stored by an earlier one."""
    from .engine import poisson, refine
    h = hashlib.sha256()
    for module in (refine, poisson):
        h.update(Path(module.__file__).read_bytes())
    return f"refined-{h.hexdigest()[:16]}.npz"


# Refined masks shipped with the package (the embedded sample's), by patterns folder name (content key)
# and refined_file_name() (code hash): the first demo run then needs no Poisson solve, hence no numba
# compilation. tests/test_anomaly_set.py checks they equal a fresh computation.
SHIPPED_REFINED = Path(__file__).parent / "data" / "default" / "refined"


def shipped_refined_file(path) -> Path:
    """Where cai-hub would ship the refined masks of the patterns folder ``path`` (the file need not exist)."""
    return SHIPPED_REFINED / Path(path).name / refined_file_name()


def _refined_stem(path) -> str:
    """``refined-<code hash>-<content key>``: refined masks of this folder's content by this code."""
    return f"{Path(refined_file_name()).stem}-{patterns_content_key(path)}"


def ensure_refined_masks(path: str) -> Path:
    """Store ``refine_defect_mask(image, mask)`` of every pattern saved in ``path`` (once per
    patterns content and refinement code: a later run finds the file) as ``path /
    refined-<code hash>-<content key>.npz`` (:func:`refined_file_name`, :func:`patterns_content_key`),
    one (h, w) bool array per pattern under the key ``str(i)``; return the file. A copy shipped for
    the same content and code (:func:`shipped_refined_file`) is used when there is one."""
    from .engine.refine import refine_defect_mask

    target = Path(path) / f"{_refined_stem(path)}.npz"
    shipped = shipped_refined_file(path)
    if not target.is_file() and shipped.is_file():
        atomic.write_bytes(target, shipped.read_bytes())
    if not target.is_file():
        mapped = MappedPatterns(decoded_patterns(path))  # the same pixels the bank gives, decoded once
        arrays = {str(i): refine_defect_mask(*mapped.load(i)) for i in range(len(mapped))}
        with atomic.atomic_path(target) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" appended
            np.savez(f, **arrays)
    return target


def pattern_bank(ds: datasets.Dataset, cache_size: int = 4096, **prepare_kwargs) -> PatternBank:
    """A :class:`PatternBank` over an anomaly set or over patterns made by :func:`prepare_patterns`.

    Parameters
    ----------
    ds : datasets.Dataset
        Either prepared patterns (columns ``pattern_image``, ``pattern_mask``, ``long_side``...) or a
        raw anomaly set (``image``, ``mask``, ``anomaly_class``, ``source``), which is prepared first
        with ``prepare_kwargs`` (``classes``, ``exclude_sources``, ``context``).
    cache_size : int
        Decoded patterns kept in memory.

    Returns
    -------
    PatternBank
        ``load(i)`` gives the crop around defect i: ((h, w, 3) uint8 image, (h, w) bool mask).
    """
    if "pattern_image" not in ds.column_names:
        ds, _ = prepare_patterns(ds, **prepare_kwargs)

    @functools.lru_cache(maxsize=cache_size)
    def load(i: int):
        return _decode_pattern(ds[int(i)])

    return PatternBank(long_sides=np.asarray(ds["long_side"]), anomaly_class=list(ds["anomaly_class"]),
                       source=list(ds["source"]), ids=list(ds["source_id"]), load=load)


# ----------------------------------------------------------------------------- decoded, memory-mapped form
# Bumped whenever the decoded file's layout or decoding rule changes (RGB crop, mask = L > 127).
DECODED_VERSION = 1


def _decode_pattern(row) -> tuple[np.ndarray, np.ndarray]:
    """((h, w, 3) uint8 crop, (h, w) bool mask) of a prepared-pattern row, decoded with PIL."""
    image = np.asarray(row["pattern_image"].convert("RGB"))
    mask = np.asarray(row["pattern_mask"].convert("L")) > 127
    return image, mask


def _data_files(path) -> list[Path]:
    state = json.loads((Path(path) / "state.json").read_text())
    return [Path(path) / f["filename"] for f in state["_data_files"]]


@functools.lru_cache(maxsize=16)
def _content_key(path: str, stamp: tuple) -> str:
    h = hashlib.sha256(json.dumps({"decoded": DECODED_VERSION}).encode())
    for file in _data_files(path):
        h.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:16]


def patterns_content_key(path) -> str:
    """SHA-256 (16 hex digits) over the Arrow data of the saved patterns folder ``path`` (and
    :data:`DECODED_VERSION`): what names the decoded files, so content rewritten in place is never read
    through an earlier decoding. Remembered per process while the files' size and mtime stay."""
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in _data_files(path))
    return _content_key(str(Path(path).resolve()), stamp)


def _stored_file(folder, name: str, write) -> Path:
    """``folder / name``, written once by ``write(tmp_path)`` (atomic: concurrent writers each write
    their own temporary file and the last rename wins, with equal bytes); when ``folder`` is not
    writable, :func:`cache_root` ``/ "decoded" / name`` (the name is content-keyed, so any place is safe)."""
    places = [Path(folder), cache_root() / "decoded"]
    for place in places:
        if (place / name).is_file():
            return place / name
    for place in places:
        try:
            place.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(place / name) as tmp:
                write(tmp)
            return place / name
        except OSError as exc:  # not writable (permissions, read-only file system): the next place
            if place is places[-1] or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
    raise AssertionError("unreachable")


def _write_raw(tmp: Path, count: int, items) -> None:
    """Raw layout: int64 header [P, then (offset, h, w) per item], then each item's bytes (uint8;
    bool as 0/1) back to back, offsets from the file's start. ``items`` yields ``count`` lists of
    (h, w[, c]) uint8 / bool arrays, written one after the other (streamed: one item in memory)."""
    index = np.zeros((count, 3), "<i8")
    offset = 8 * (1 + 3 * count)
    with open(tmp, "wb") as f:
        f.seek(offset)
        n = 0
        for n, parts in enumerate(items, 1):
            if n > count:
                raise ValueError(f"more than {count} items")
            index[n - 1] = (offset, *parts[0].shape[:2])
            for p in parts:
                data = np.ascontiguousarray(p).view(np.uint8) if p.dtype == bool else np.ascontiguousarray(p, np.uint8)
                f.write(data.tobytes())
                offset += data.size
        if n != count:
            raise ValueError(f"{n} items for {count}")
        f.seek(0)
        f.write(np.concatenate([np.asarray([count], "<i8"), index.ravel()]).tobytes())


def _read_index(mapped: np.memmap) -> np.ndarray:
    count = int(mapped[:8].view("<i8")[0])
    return np.array(mapped[8:8 + 24 * count].view("<i8").reshape(count, 3))


def decoded_patterns(path) -> Path:
    """The raw, memory-mappable file of every pattern of the saved patterns folder ``path``, decoded once.

    ``decoded-<content key>.u8`` (:func:`patterns_content_key`) inside ``path`` (or under
    :func:`cache_root` ``/ "decoded"`` when ``path`` is read-only): per pattern i its (h, w, 3) RGB crop
    and its (h, w) mask (0/1 bytes), exactly as PIL decodes the stored PNGs, behind an int64 header
    (P, then offset/h/w per pattern). Written atomically; an existing file for the same content is reused.
    Open it with :class:`MappedPatterns`.
    """
    path = Path(path)
    name = f"decoded-{patterns_content_key(path)}.u8"

    def write(tmp):
        ds = datasets.load_from_disk(str(path)).select_columns(["pattern_image", "pattern_mask"])
        _write_raw(tmp, len(ds), (_decode_pattern(row) for row in ds))

    return _stored_file(path, name, write)


def mapped_refined(path) -> Path | None:
    """The raw, memory-mappable file of the refined masks stored for the saved patterns folder ``path``
    by :func:`ensure_refined_masks` (the same arrays), or None when none are stored for its current
    content and refinement code. ``refined-<code hash>-<content key>.u8``, same layout as
    :func:`decoded_patterns` with one (h, w) 0/1 mask per pattern; written once, atomically."""
    path = Path(path)
    npz = path / f"{_refined_stem(path)}.npz"
    name = f"{_refined_stem(path)}.u8"
    for place in (path, cache_root() / "decoded"):
        if (place / name).is_file():
            return place / name
    if not npz.is_file():
        return None

    def write(tmp):
        with np.load(npz) as stored:
            count = len(stored.files)
            _write_raw(tmp, count, ([np.asarray(stored[str(i)], bool)] for i in range(count)))

    return _stored_file(path, name, write)


class MappedPatterns:
    """Patterns as read-only views of the files of :func:`decoded_patterns` and :func:`mapped_refined`,
    memory-mapped (``np.memmap`` mode ``"r"``) on first use. Pickles as its two paths: every process
    maps the same pages of the operating system's page cache, nothing is copied per process; writing
    into a view raises ``ValueError`` (read-only), the files cannot be changed through it."""

    def __init__(self, pixels, refined=None):
        self.pixels, self.refined_file = str(pixels), None if refined is None else str(refined)
        self._pixels = self._index = self._refined = self._refined_index = None

    def __getstate__(self):
        return {"pixels": self.pixels, "refined_file": self.refined_file}

    def __setstate__(self, state):
        self.__init__(state["pixels"], state["refined_file"])

    def _open(self):
        if self._pixels is None:
            self._pixels = np.memmap(self.pixels, dtype=np.uint8, mode="r")
            self._index = _read_index(self._pixels)

    def __len__(self) -> int:
        self._open()
        return len(self._index)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """((h, w, 3) uint8 crop, (h, w) bool mask) of pattern i: read-only views."""
        self._open()
        offset, h, w = (int(v) for v in self._index[int(i)])
        image = self._pixels[offset:offset + h * w * 3].reshape(h, w, 3)
        mask = self._pixels[offset + h * w * 3:offset + h * w * 4].view(bool).reshape(h, w)
        return np.asarray(image), np.asarray(mask)

    def _open_refined(self) -> bool:
        if self._refined is None and self.refined_file is not None:
            self._refined = np.memmap(self.refined_file, dtype=np.uint8, mode="r")
            self._refined_index = _read_index(self._refined)
        return self._refined is not None

    def touch(self) -> None:
        """Read one byte per page of the mapped files: every page in the (shared) page cache now."""
        self._open()
        for mapped in (self._pixels, self._refined if self._open_refined() else None):
            if mapped is not None:
                int(mapped[::4096].sum())

    def refined(self, i: int) -> np.ndarray | None:
        """(h, w) bool refined mask of pattern i (read-only view), or None without a refined file."""
        if not self._open_refined():
            return None
        offset, h, w = (int(v) for v in self._refined_index[int(i)])
        return np.asarray(self._refined[offset:offset + h * w].view(bool).reshape(h, w))


@functools.lru_cache(maxsize=4)
def open_pattern_bank(path: str) -> PatternBank:
    """A :class:`PatternBank` over the patterns saved in ``path`` (one per process, cached): ``load(i)``
    gives read-only memory-mapped views of :func:`decoded_patterns`' file (decoded once per content,
    no PNG decoding afterwards) and ``refined(i)`` those of :func:`mapped_refined` once
    :func:`ensure_refined_masks` has stored them (None before: the synthesizer refines itself)."""
    ds = datasets.load_from_disk(path).select_columns(["long_side", "anomaly_class", "source", "source_id"])
    mapped = MappedPatterns(decoded_patterns(path))
    if len(mapped) != len(ds):
        raise AnomalySetError(f"{path}: decoded file has {len(mapped)} patterns for {len(ds)} rows")

    def refined(i: int):
        if mapped.refined_file is None:
            file = mapped_refined(path)
            if file is None:
                return None  # not stored (yet): the synthesizer refines it itself
            mapped.refined_file = str(file)
        return mapped.refined(i)

    return PatternBank(long_sides=np.asarray(ds["long_side"]), anomaly_class=list(ds["anomaly_class"]),
                       source=list(ds["source"]), ids=list(ds["source_id"]), load=mapped.load, refined=refined)


def write_default_refined() -> Path:
    """Recompute the embedded sample's refined masks and write them to :data:`SHIPPED_REFINED`
    (replacing earlier ones); run after changing cai/engine/refine.py or poisson.py::

        python -c "from cai.anomaly_set import write_default_refined; write_default_refined()"
    """
    from .engine.refine import refine_defect_mask

    # cai.targets.DEFAULT_SAMPLE / "anomalies" (not imported: cai.targets imports this module)
    path, _, _ = cached_patterns(load_anomaly_set(str(SHIPPED_REFINED.parent / "anomalies")))
    bank = pattern_bank(datasets.load_from_disk(path))
    arrays = {str(i): refine_defect_mask(*bank.load(i)) for i in range(len(bank.long_sides))}
    shutil.rmtree(SHIPPED_REFINED, ignore_errors=True)
    dest = shipped_refined_file(path)
    dest.parent.mkdir(parents=True)
    np.savez_compressed(dest, **arrays)
    return dest
