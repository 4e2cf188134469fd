"""Anomaly-set input: load it (saved folder, hub-ready folder, image/mask pairs or hub id) and turn
its rows into the pattern bank CAI draws from."""
from __future__ import annotations

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
    """Name of the stored refined masks: ``refined-<hash>.npz``, the hash over the source of the code
    that computes them (cai/engine/refine.py and the solver it uses, poisson.py), so a changed
    refinement never reads masks stored by an earlier one."""
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


def ensure_refined_masks(path: str) -> Path:
    """Store ``refine_defect_mask(image, mask)`` of every pattern saved in ``path`` (once per
    anomaly-set content and refinement code: a later run finds the file) as ``path /``
    :func:`refined_file_name`, one (h, w) bool array per pattern under the key ``str(i)``; return the file.
    A copy shipped for the same content and code (:func:`shipped_refined_file`) is used when there is one."""
    from .engine.refine import refine_defect_mask

    target = Path(path) / refined_file_name()
    shipped = shipped_refined_file(path)
    if not target.is_file() and shipped.is_file():
        atomic.write_bytes(target, shipped.read_bytes())
    if not target.is_file():
        bank = pattern_bank(datasets.load_from_disk(str(path)))
        arrays = {str(i): refine_defect_mask(*bank.load(i)) for i in range(len(bank.long_sides))}
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, target)
    return target


@functools.lru_cache(maxsize=4)
def open_pattern_bank(path: str, cache_size: int = 4096) -> PatternBank:
    """A :class:`PatternBank` over patterns saved with ``save_to_disk`` (one per process, cached);
    refined masks come from :func:`ensure_refined_masks`' file when it is there."""
    bank = pattern_bank(datasets.load_from_disk(path), cache_size=cache_size)
    stored: dict = {}

    def refined(i: int):
        if "file" not in stored:
            file = Path(path) / refined_file_name()
            if not file.is_file():
                return None  # not stored (yet): the synthesizer refines it itself
            with np.load(file) as npz:
                stored["file"] = {int(k): npz[k] for k in npz.files}
        return stored["file"].get(int(i))

    bank.refined = refined
    return bank


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
        row = ds[int(i)]
        image = np.asarray(row["pattern_image"].convert("RGB"))
        mask = np.asarray(row["pattern_mask"].convert("L")) > 127
        return image, mask

    return PatternBank(long_sides=np.asarray(ds["long_side"]), anomaly_class=list(ds["anomaly_class"]),
                       source=list(ds["source"]), ids=list(ds["source_id"]), load=load)


def write_default_refined() -> Path:
    """Recompute the embedded sample's refined masks and write them to :data:`SHIPPED_REFINED`
    (replacing earlier ones); run after changing cai/engine/refine.py or poisson.py::

        python -c "from cai.anomaly_set import write_default_refined; write_default_refined()"
    """
    from .engine.refine import refine_defect_mask

    path, _, _ = cached_patterns(load_anomaly_set(str(SHIPPED_REFINED.parent / "anomalies")))
    bank = pattern_bank(datasets.load_from_disk(path))
    arrays = {str(i): refine_defect_mask(*bank.load(i)) for i in range(len(bank.long_sides))}
    shutil.rmtree(SHIPPED_REFINED, ignore_errors=True)
    dest = shipped_refined_file(path)
    dest.parent.mkdir(parents=True)
    np.savez_compressed(dest, **arrays)
    return dest
