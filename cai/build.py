"""`cai-hub build-synthetic`: run CAI over a target's normal images and write a hub-ready dataset.

The run is split in shards of normal images; each shard is made with ``Dataset.map`` (batched,
``num_proc``) and written as one parquet file (image bytes embedded) before the next starts, so an
interrupted run resumes where it stopped and the finished folder is what ``datasets.load_dataset``
and the hub read.
"""
from __future__ import annotations

import functools
import json
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import datasets
import numpy as np

from . import runloop
from .progress import datasets_bars
from .anomaly_set import cached_patterns, ensure_refined_masks, load_anomaly_set, open_pattern_bank
from .engine.config import CAIConfig
from .imageio import PNG_FILTERS, BadInput, encode_png, load_rgb, resize_image, short_side_shape
from .engine.synthesizer import PseudoAnomaly
from .schema import BOOKKEEPING as _BOOKKEEPING
from .schema import MAP_FEATURES, OUTPUT_FEATURES  # noqa: F401  (OUTPUT_FEATURES: public here too)
from .targets import DEFAULT_SAMPLE, load_target

MIN_SIZE = 32  # below this a pattern rarely fits with its margin: most slots would be skipped


class BuildError(RuntimeError):
    """The run cannot go on (bad options, an output folder holding another run...)."""


@dataclass
class BuildOptions:
    """Everything a `build-synthetic` run depends on (see the CLI for each option's meaning)."""

    out: str
    target: str = "default"
    root: str | None = None
    category: str | None = None
    daad: str | None = None
    config: CAIConfig = field(default_factory=CAIConfig)
    size: int = 256
    resize: str = "short"  # "short": short side ``size``, aspect kept (as every evaluation ran); "square":
    # size x size (the only rule before this option)
    seed: int = 0
    num_proc: int = 1
    classes: tuple[str, ...] = ()
    exclude_sources: tuple[str, ...] = ()
    foreground: str = "auto"
    rembg_model: str = "u2net"
    rembg_model_dir: str | None = None
    shard_size: int = 100
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False
    anomaly_class: str | None = None
    source: str | None = None
    engine: str = "local"  # "local" (Dataset.map, --num-proc) or "ray" (Ray Data workers, same bytes)
    ray_address: str | None = None
    png_level: int = 1  # zlib level of the output PNGs; every level decodes to the same pixels (level 6 until
    # issue 11: 1 encodes ~4x faster, files ~1.3x larger)
    png_filters: str = "fast"  # cai.imageio.encode_png's row filters ("libpng": the bytes before; same pixels)
    synthesizer: str = "cai"  # a CAI name of cai.baselines.make_synthesizer: "cai" (``config`` as given),
    # "cai+<modifiers>", "cai-<variant>", or a mixture with in-domain NSA slots ("cai+nsanis25")


@functools.lru_cache(maxsize=4)
def _foreground_fn(kind: str, category, model: str, model_dir):
    from .foreground import make_foreground
    return make_foreground(kind, category=category, model=model, model_dir=model_dir)


def _slot_row(result, normal_file: str, normal_index: int, mode: str, seed: int, is_grey: bool,
              png_level: int = 1, png_filters: str = "fast") -> dict:
    made = isinstance(result, PseudoAnomaly)
    res = result.resamples
    row = {name: None for name in MAP_FEATURES}
    row.update(normal_index=normal_index, normal_file=normal_file, k=result.k, scale=result.scale,
               mode=_slot_mode(result, mode) if made else mode,
               seed=seed, status="ok" if made else result.reason,
               resamples_location=res.get("location", 0), resamples_empty_mask=res.get("empty_mask", 0),
               resamples_vanished=res.get("vanished", 0))
    if made:
        image = result.image[..., 0] if is_grey and result.image.ndim == 3 else result.image
        row.update(image=encode_png(image, png_level, png_filters),
                   mask=encode_png(result.mask, png_level, png_filters),
                   placed_mask=encode_png(result.placed_mask, png_level, png_filters),
                   anomaly_class=result.anomaly_class,
                   str_ratio=result.str_ratio, resize_ratio=result.resize_ratio, center=list(result.center),
                   source_id=result.source_id, source=result.source, attempts=result.attempts,
                   mask_iou=result.fidelity["iou"], visible_share=result.fidelity["visible_share"],
                   changed_outside_share=result.fidelity["changed_outside_share"])
    return row


def _slot_mode(result: PseudoAnomaly, mode: str) -> str:
    """The ``mode`` column of a made slot: the CAI mode that made it, or the name of the in-domain
    synthesizer of a mixture slot (its ``anomaly_class``, e.g. ``"nsa-n"``; it has no scale type)."""
    return result.mode or (mode if result.scale else result.anomaly_class)


RESIZE_RULES = ("short", "square")


def _normal_at_size(value, size: int, resize: str = "short") -> tuple[np.ndarray, bool]:
    """A normal image decoded as (H, W, 3) uint8 and whether it is grey; raises :class:`BadInput`. Its
    short side is ``size`` px, aspect kept (``resize`` "short", as the evaluation), or it is ``size`` x
    ``size`` ("square"); its own size when ``size`` is 0."""
    normal, is_grey = load_rgb(value)
    if not size:
        return normal, is_grey
    shape = short_side_shape(normal.shape, size) if resize == "short" else (size, size)
    return resize_image(normal, shape), is_grey


class PoolImageUnreadable(RuntimeError):
    """A normal image an in-domain slot drew its patch from could not be read (``reason`` as BadInput's)."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"normal image {index} of the pool: {reason}")
        self.reason = reason


class NormalsPool:
    """The target's normal images by ``normal_index``, for synthesizers that take their patch from another
    normal image (a mixture's NSA slots): ``pool(j)`` is image j decoded and resized as the run resizes its
    own images (:func:`_normal_at_size`), (H, W, 3) uint8, read-only. Decoded images are kept up to
    ``cache_mib`` MiB, least recently used dropped first (per process; a pickled pool
    starts empty): at 256 x 256 the default holds about 1300 images, so most runs decode each once.

    ``normals`` is the target's normals dataset (an ``image`` column), as :func:`cai.targets.load_target`
    gives it."""

    def __init__(self, normals: datasets.Dataset, size: int, cache_mib: float = 256, resize: str = "short"):
        self.images = normals.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
        self.size, self.cache_mib, self.resize = size, cache_mib, resize
        self._cache, self._cached_bytes = OrderedDict(), 0

    def __getstate__(self):
        return {"images": self.images, "size": self.size, "cache_mib": self.cache_mib, "resize": self.resize}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache, self._cached_bytes = OrderedDict(), 0

    def __len__(self) -> int:
        return len(self.images)

    def __call__(self, j: int) -> np.ndarray:
        j = int(j)
        if j in self._cache:
            self._cache.move_to_end(j)
            return self._cache[j]
        try:
            image = _normal_at_size(self.images[j]["image"], self.size, self.resize)[0]
        except BadInput as exc:
            raise PoolImageUnreadable(j, exc.reason) from None
        image.setflags(write=False)  # shared by every slot that draws it
        self._cache[j] = image
        self._cached_bytes += image.nbytes
        while self._cached_bytes > self.cache_mib * 2**20 and len(self._cache) > 1:
            self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return image

    def embedded(self) -> "NormalsPool":
        """The same pool with each image's encoded bytes held in memory instead of a path (for Ray workers,
        which may not see this machine's files); an unreadable file stays unreadable."""
        from .anomaly_set import _value_bytes
        values = [{"bytes": _value_bytes(v), "path": None} for v in self.images["image"]]
        images = datasets.Dataset.from_dict({"image": values},
                                            features=datasets.Features({"image": datasets.Image(decode=False)}))
        return NormalsPool(images, self.size, self.cache_mib, self.resize)


def make_build_synthesizer(name: str, patterns_path: str, config: CAIConfig, pool: NormalsPool | None = None):
    """The synthesizer of a run: :func:`cai.baselines.make_synthesizer` for CAI name ``name`` with the run's
    CAI settings ``config`` (a ``cai-<variant>`` or ``+modifier`` name changes the settings it names), one
    slot per quota unit; ``pool`` gives a mixture's NSA slots the target's other normals."""
    from .baselines import make_synthesizer
    normals = (pool, len(pool)) if pool is not None else None
    return make_synthesizer(name, bank=open_pattern_bank(patterns_path), normals=normals, config=config,
                            per_image=sum(config.quota))


@functools.lru_cache(maxsize=4)
def _synthesizer(patterns_path: str, config_json: str, name: str = "cai", pool: NormalsPool | None = None):
    """One synthesizer per process and run: what it keeps per pattern (refined masks) is reused by
    every batch instead of being computed again for each."""
    return make_build_synthesizer(name, patterns_path, CAIConfig.from_dict(json.loads(config_json)), pool)


def synthesize_batch(batch, patterns_path: str, config: dict, seed: int, size: int, foreground: str,
                     category, rembg_model: str, rembg_model_dir, png_level: int = 1, png_filters: str = "fast",
                     synthesizer: str = "cai", pool: NormalsPool | None = None, resize: str = "short"):
    """``Dataset.map`` function (batched): normal images in, one row per pseudo-anomaly slot out.

    ``batch`` holds ``image`` (undecoded ``datasets.Image`` values, each decoded once here),
    ``file`` and ``normal_index``; the rows follow ``MAP_FEATURES`` (image / mask / placed_mask as
    PNG ``{"bytes", "path": None}`` values of zlib level ``png_level`` and row filters ``png_filters``).
    ``synthesizer`` names the CAI synthesizer (:func:`make_build_synthesizer`); ``pool`` is required
    by a mixture with NSA slots; ``size`` and ``resize`` as :func:`_normal_at_size`. An image that cannot
    be read, or whose NSA slot drew from an unreadable pool image, gives skipped slots (``normal_<reason>``
    / ``pool_<reason>``), not an error."""
    cfg = CAIConfig.from_dict(config)
    synth = _synthesizer(patterns_path, json.dumps(config, sort_keys=True), synthesizer, pool)
    fg_fn = _foreground_fn(foreground, category, rembg_model, rembg_model_dir)
    rows = []

    def skipped(normal_index, normal_file, status):
        return [{**{n: None for n in MAP_FEATURES}, "normal_index": normal_index, "normal_file": normal_file,
                 "k": k, "mode": cfg.mode, "seed": seed, "status": status,
                 "resamples_location": 0, "resamples_empty_mask": 0, "resamples_vanished": 0}
                for k in range(sum(cfg.quota))]

    for image_value, normal_file, normal_index in zip(batch["image"], batch["file"], batch["normal_index"]):
        try:
            normal, is_grey = _normal_at_size(image_value, size, resize)
        except BadInput as exc:
            rows.extend(skipped(normal_index, normal_file, f"normal_{exc.reason}"))
            continue
        fg = fg_fn(normal[..., 0] if is_grey else normal)
        try:
            results = synth.synthesize(normal, fg, normal_index, seed, is_grey=is_grey)
        except PoolImageUnreadable as exc:
            rows.extend(skipped(normal_index, normal_file, f"pool_{exc.reason}"))
            continue
        rows.extend(_slot_row(result, normal_file, normal_index, cfg.mode, seed, is_grey, png_level, png_filters)
                    for result in results)
    return {name: [row[name] for row in rows] for name in MAP_FEATURES}


_MAP_FILES = "map"  # under the work folder: the parallel map's per-worker arrow files of the current shard


def _parallel_map_files(folder, work: Path, index: int, n_rows: int, num_proc: int) -> dict:
    """``Dataset.map`` keywords for shard ``index`` (``n_rows`` normals) with ``num_proc`` processes.

    With more than one process each worker writes its rows to an arrow file under the run's work
    folder (listed in the manifest first) instead of sending them back pickled through the pool, which
    cost ~0.5 s per 1000 pseudo anomalies in the main process. The previous shard's files go first;
    ``load_from_cache_file=False``: a file left by an interrupted run is never read back. One process
    (or a one-row shard): the rows stay in memory."""
    n_jobs = min(num_proc, n_rows)  # as datasets would: at most one process per row
    if n_jobs <= 1:
        return {}
    folder.remove_under(f"{work.name}/{_MAP_FILES}")
    path = work / _MAP_FILES / f"shard-{index:05d}.arrow"
    path.parent.mkdir(exist_ok=True)
    folder.add(*(path.with_name(f"{path.stem}_{rank:05d}_of_{n_jobs:05d}.arrow") for rank in range(n_jobs)))
    return {"num_proc": n_jobs, "cache_file_name": str(path), "load_from_cache_file": False}


def _warm_workers(patterns_path: str, config: CAIConfig, in_domain: bool = False) -> None:
    """Load in this process what every worker needs (decoded patterns, the numba solver's compiled
    code) so that forked workers inherit it instead of each loading it again for every shard.
    ``in_domain``: a mixture's NSA slots blend with the solver whatever CAI's modes."""
    bank = open_pattern_bank(patterns_path)
    for i in range(len(bank.long_sides)):
        bank.load(i)
        if config.refine_mask:
            bank.refined(i)
    if in_domain or {"normal", "mixed"} & set(str(config.mode).split("+")):
        from .engine.poisson import poisson_blend
        region = np.zeros((8, 8), bool)
        region[3:5, 3:5] = True
        poisson_blend(np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32), region)
        poisson_blend(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3), np.uint8), region, mode="mixed")


def _fingerprint(options: BuildOptions, normals: datasets.Dataset, patterns_report: dict, pattern_ids) -> str:
    from datasets.fingerprint import Hasher
    opts = asdict(options)
    for key in ("out", "num_proc", "overwrite", "push_to_hub", "private", "shard_size", "engine", "ray_address"):
        opts.pop(key)
    for key in ("anomaly_class", "source"):  # only when given: earlier runs' fingerprints stay valid
        if opts[key] is None:
            opts.pop(key)
    if opts["synthesizer"] == "cai":  # the one synthesizer before it was an option
        opts.pop("synthesizer")
    if opts["png_level"] == 6:  # the level before it was an option
        opts.pop("png_level")
    if opts["png_filters"] == "libpng":  # the filters before they were an option
        opts.pop("png_filters")
    if opts["resize"] == "square":  # the resizing before it was an option
        opts.pop("resize")
    opts["config"] = options.config.to_dict()
    return Hasher.hash({"options": opts, "normals": list(normals["file"]), "patterns": list(pattern_ids),
                        "report": patterns_report, "version": 1})


def _shard_stats(made: datasets.Dataset, status, resamples) -> dict:
    return {"slots": len(status), "made": len(made), "skipped": dict(Counter(s for s in status if s != "ok")),
            "resamples": resamples,
            "sum_mask_iou": float(np.sum(made["mask_iou"])) if len(made) else 0.0,
            "sum_visible_share": float(np.sum(made["visible_share"])) if len(made) else 0.0,
            "sum_changed_outside_share": float(np.sum(made["changed_outside_share"])) if len(made) else 0.0}


def build_synthetic(options: BuildOptions, progress: bool = True, echo=None) -> dict:
    """Make the pseudo-anomaly split described by ``options``; return the run summary (also saved
    as ``summary.json``). The output folder gets ``data/train-*.parquet``, ``README.md`` (card),
    ``contact_sheet.png`` and ``summary.json``, all listed in its manifest (:mod:`cai.output_folder`).

    Every input is read and checked before anything is written. ``echo(line)`` receives warnings
    (an option that did nothing) and resume notes ("resuming at shard k of n", "already complete").
    """
    with datasets_bars(progress):
        return _build(options, progress, echo or (lambda line: None))


def _check_options(options: BuildOptions, echo) -> str | None:
    """Refuse options that cannot work and warn on those that would do nothing; return the category
    the foreground choice uses (None when the target ignores ``--category``)."""
    if options.seed < 0:
        raise BuildError(f"--seed {options.seed}: must be >= 0, e.g. --seed 0")
    if options.resize not in RESIZE_RULES:
        raise BuildError(f"--resize {options.resize}: must be one of {', '.join(RESIZE_RULES)}")
    if 0 < options.size < MIN_SIZE:
        raise BuildError(f"--size {options.size}: below the minimum {MIN_SIZE} (defects no longer fit); "
                         f"use --size {MIN_SIZE} or more, or --size 0 to keep the images' own size")
    if options.category and options.target not in ("mvtec",):
        echo(f"warning: --category {options.category} is ignored by --target {options.target} "
             "(only --target mvtec has categories); the foreground is chosen from the images")
        return None
    return options.category


def _check_synthesizer(options: BuildOptions):
    """The mixture of ``options.synthesizer`` (None when it has no in-domain slots); refuses a name that is
    not a CAI synthesizer."""
    from .baselines.registry import parse_synthesizer_name
    name = options.synthesizer
    try:
        base, _, mixture = parse_synthesizer_name(name)
    except ValueError as exc:
        raise BuildError(f"--synth {name}: {exc}") from None
    if not (base == "cai" or base.startswith("cai-")):
        raise BuildError(f"--synth {name}: build-synthetic writes CAI pseudo anomalies (cai, cai+<modifiers>, "
                         f"cai-<variant>, or a mixture with in-domain slots such as cai+nsanis25); to compare "
                         f"{base} with them use `cai-hub evaluate --synth cai,{base}`")
    return mixture


def _cai_config(synth) -> CAIConfig:
    """The CAI settings a synthesizer from :func:`make_build_synthesizer` runs with (a mixture's main part)."""
    return getattr(synth, "main", synth).config


def _warn_overridden(requested: CAIConfig, used: CAIConfig, name: str, echo) -> None:
    """Warn for each setting the user changed from its default that ``--synth name`` replaced."""
    default = CAIConfig()
    for key in (f.name for f in fields(CAIConfig) if f.name != "quota"):
        value, now = getattr(requested, key), getattr(used, key)
        if value != getattr(default, key) and now != value:
            echo(f"warning: {key} {value} is replaced by --synth {name} ({key} {now})")


def _mixture_summary(mixture) -> dict | None:
    if mixture is None:
        return None
    from .baselines.registry import GATE_DESCRIPTIONS
    return {"synthesizer": mixture.other, "share": mixture.share, "gate": mixture.gate,
            "gate_rule": GATE_DESCRIPTIONS.get(mixture.gate), "small_patches": mixture.small}


def _build(options: BuildOptions, progress: bool, echo) -> dict:
    from .output_folder import OutputFolderError, check_not_input, public_name

    out = Path(options.out)
    default_run = options.target == "default"
    category = _check_options(options, echo)
    mixture = _check_synthesizer(options)
    inputs = {"--root": options.root, "--daad": options.daad}
    nested_ok = ("--root",) if options.target == "mvtec" else ()
    normals, target_name = load_target(options.target, options.root, options.category)
    daad = options.daad or (str(DEFAULT_SAMPLE / "anomalies") if default_run or options.daad is None else None)
    anomalies = load_anomaly_set(daad, anomaly_class=options.anomaly_class, source=options.source)
    try:
        check_not_input(out, inputs, nested_ok=nested_ok)
    except OutputFolderError as exc:
        raise BuildError(str(exc)) from None
    sources = set(map(str, anomalies["source"]))
    unmatched = sorted(set(options.exclude_sources) - sources)
    if unmatched:
        echo(f"warning: --exclude-source {','.join(unmatched)} matched no source of the anomaly set "
             f"(its sources: {', '.join(sorted(sources))}); nothing was excluded for it")
    excluded = set(options.exclude_sources) & sources
    leakage_guard = target_name in sources
    if leakage_guard:
        excluded.add(target_name)

    if options.engine not in ("local", "ray"):
        raise BuildError(f"--engine {options.engine}: must be local or ray")
    if options.png_filters not in PNG_FILTERS:
        raise BuildError(f"--png-filters {options.png_filters}: must be one of {', '.join(PNG_FILTERS)}")
    if not 0 <= options.png_level <= 9:
        raise BuildError(f"--png-level {options.png_level}: must be 0-9 (zlib levels; all are lossless)")
    # prepared once per anomaly-set content (and filters), in the user cache: a rerun does not redo them
    patterns_path, patterns, report = cached_patterns(
        anomalies, classes=set(options.classes) or None,
        exclude_sources=sorted(set(options.exclude_sources) | excluded))
    pool = NormalsPool(normals, options.size, resize=options.resize) if mixture is not None else None
    try:  # built before anything is written: settings it replaces are reported, bad inputs stop the run here
        used = _cai_config(_synthesizer(str(patterns_path), json.dumps(options.config.to_dict(), sort_keys=True),
                                        options.synthesizer, pool))
    except ValueError as exc:
        raise BuildError(f"--synth {options.synthesizer}: {exc}") from None
    _warn_overridden(options.config, used, options.synthesizer, echo)
    fingerprint = _fingerprint(options, normals, report, patterns["source_id"])
    try:
        folder = runloop.claim_output(out, "build-synthetic", ".cai", inputs=inputs, overwrite=options.overwrite,
                                      nested_ok=nested_ok)
    except OutputFolderError as exc:
        raise BuildError(str(exc)) from None
    hints = {}
    if options.resize == "short":  # a run started by a version that squared every normal
        square = _fingerprint(replace(options, resize="square"), normals, report, patterns["source_id"])
        hints[square] = ("it resized the normals to a square (--resize square, what versions before the option did); "
                         "pass --resize square to resume it")
    work = runloop.open_run(folder, ".cai", fingerprint, error=BuildError, hints=hints)

    n_shards = max(1, -(-len(normals) // options.shard_size))
    # the embedded sample's normals are textures (fabric, pavement): the whole image is foreground
    foreground = "all" if default_run and options.foreground == "auto" else options.foreground
    fn_kwargs = dict(patterns_path=str(patterns_path), config=options.config.to_dict(), seed=options.seed,
                     size=options.size, resize=options.resize, foreground=foreground, category=category,
                     rembg_model=options.rembg_model, rembg_model_dir=options.rembg_model_dir,
                     png_level=options.png_level, png_filters=options.png_filters)
    fn_kwargs.update(synthesizer=options.synthesizer, pool=pool)
    if used.refine_mask:  # once per anomaly set, kept beside its cached patterns
        ensure_refined_masks(patterns_path)
    if options.num_proc > 1:  # workers are forked per shard: they inherit what the parent loaded once
        _warm_workers(patterns_path, used, in_domain=mixture is not None)
    # foreground choice is made once here so the summary can say what ran (and errors surface early)
    fg_fn = _foreground_fn(foreground, category, options.rembg_model, options.rembg_model_dir)
    slots_total = len(normals) * sum(options.config.quota)
    datasets.disable_progress_bars()  # the run's own bar counts the pseudo anomalies

    packed = None
    if options.engine == "ray":  # patterns to the object store once for the whole run
        from . import ray_engine
        ray_engine.connect(options.ray_address)
        packed = ray_engine.share_patterns(patterns_path)
        pool_ref = ray_engine.share_pool(pool) if pool is not None else None

    def make_shard(index, tick):
        shard = normals.select(range(index * options.shard_size, min((index + 1) * options.shard_size, len(normals))))
        if packed is not None:
            slots = ray_engine.synthesize_shard(shard, synthesize_batch, patterns_path, fn_kwargs, batch_size=2,
                                                packed_ref=packed, pool_ref=pool_ref)
        else:
            slots = shard.map(synthesize_batch, batched=True, batch_size=2, fn_kwargs=fn_kwargs,
                              remove_columns=shard.column_names, features=MAP_FEATURES,
                              **_parallel_map_files(folder, work, index, len(shard), options.num_proc))
        status = slots["status"]
        made = slots.select([i for i, s in enumerate(status) if s == "ok"])
        resamples = {key: int(np.sum(slots[f"resamples_{key}"])) for key in ("location", "empty_mask", "vanished")}
        return made.remove_columns(list(_BOOKKEEPING)), _shard_stats(made, status, resamples)

    shard_stats = runloop.run_shards(folder, work, n_shards, make_shard, slots_total, "Pseudo anomalies", progress,
                                     echo=echo)
    folder.remove_under(f"{work.name}/{_MAP_FILES}")
    t = runloop.totals(shard_stats, ("mask_iou", "visible_share", "changed_outside_share"))
    made_total = t["made"]
    summary = {
        "target": target_name, "category": options.category,
        "anomaly_set": public_name(daad) if options.daad else "embedded default sample",
        "normals": len(normals), "slots": slots_total, "made": made_total, "skipped": t["skipped"],
        "resamples": t["resamples"], "ms_per_pseudo_anomaly": 1000 * t["wall_s"] / made_total if made_total else None,
        "num_proc": options.num_proc, "engine": options.engine, "seed": options.seed, "size": options.size,
        "resize": options.resize, "synthesizer": options.synthesizer, "mixture": _mixture_summary(mixture),
        "config": used.to_dict(), "foreground": {"requested": options.foreground,
                                                           "used": getattr(fg_fn, "kind", options.foreground),
                                                           "note": getattr(fg_fn, "note", "")},
        "leakage_guard": {"target_dataset": target_name, "excluded_sources": sorted(excluded),
                          "target_in_anomaly_set": leakage_guard},
        "patterns": report,
        "mask_fidelity": {"mean_iou_mask_vs_placed": t["means"]["mask_iou"],
                          "mean_visible_share": t["means"]["visible_share"],
                          "mean_changed_outside_share": t["means"]["changed_outside_share"]},
        "fingerprint": fingerprint, "shards": t["shards"], "resumed_shards": t["resumed_shards"],
        "this_run": t["this_run"],
    }
    from .outputs import render_card
    return runloop.finish_run(folder, summary, normals, options.size, render_card, options.push_to_hub, options.private)
