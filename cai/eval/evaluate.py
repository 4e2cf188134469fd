"""Rank pseudo-anomaly synthesizers by what a detector trained on them finds in real defects.

For every synthesizer and seed: ``per_image`` pseudo anomalies per training normal (seed ``s``),
a detector of the chosen profile trained on the normals (empty masks) + pseudo anomalies (pseudo
masks as labels, seed ``s``), anomaly maps on the target's real test set (normal images and real
anomalies with masks, each map at its test image's size), then pixel AUROC, pixel AP, PRO (FPR
<= 0.3) and image AUROC (map maximum), and pixel AP per real defect class. The detector and its
hyper-parameters are identical for every synthesizer; only the training data differ. The Fréchet
distance between the pseudo anomalies (seed of the first run) and the real test anomalies is
reported with EfficientNet-Lite0 features (offline; not comparable with published FID) and,
given a local TorchScript Inception file, with Inception features.

The leakage guard is always on: the anomaly-set rows whose ``source`` is one of the target's own
datasets (e.g. ``mvtec_ad`` for an MVTec AD target) are removed before any synthesis.

Outputs in ``out``: ``results.md`` / ``results.json`` / ``results.csv`` (one row per synthesizer,
metric columns prefixed with the profile), ``curves.json`` + ``curves_pr.png`` + ``curves_pro.png``
(first seed), ``anomaly_maps.png`` (test images, ground truth, each synthesizer's map),
``pseudo_anomalies.png`` (the first pseudo anomalies of each synthesizer with their masks) and
``train_log.jsonl`` (one line per training epoch).

On the fly (``on_the_fly=True``, ``cai-hub evaluate --on-the-fly``): instead of one fixed split, the
detector sees fresh pseudo anomalies every epoch: epoch 0 uses the split of seed ``s`` (the fixed
split's), epoch e >= 1 a new one of synthesis seed :func:`epoch_seed` ``(s, e)``, as many per normal.
Cost per epoch: the synthesis of ``per_image`` pseudo anomalies per normal, and, with the ``cpu``
profile, one frozen-backbone pass over the new images (the fixed split caches those features once),
so a run costs about ``epochs`` times the fixed split's synthesis and feature time. FD and the
pseudo-anomaly examples use the epoch-0 split.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cai.imageio import load_rgb, resize_image, short_side_shape
from cai.engine.synthesizer import PseudoAnomaly

from . import bootstrap, report, units
from .detector import DetectorConfig, FeatureCache, get_profile, train_detector
from .heap import retain_freed_memory, retained_heap
from .metrics import GroundTruth, pixel_metrics
from .targets import NORMAL_CLASS, EvalTarget, load_eval_target

def describe_profile(config: DetectorConfig) -> str:
    """One sentence on the detector ``config`` runs, for results.md: architecture, input size, epochs, and
    whether it is the named profile as published or changed by overrides (``--epochs``, ``--size``, ...)."""
    from .detector import PROFILES

    if config.profile == "paper":
        text = (f"DRAEM discriminative UNet (3-channel input, from scratch, base width {config.width}), short side "
                f"{config.size} px, {config.epochs} epochs, Adam (lr {config.lr:g}), focal loss")
    else:
        text = (f"frozen ImageNet EfficientNet-Lite0 backbone + light segmentation head ({config.width} channels) "
                f"trained on the pseudo anomalies (cached backbone features, no augmentation), short side "
                f"{config.size} px, {config.epochs} epochs — a CPU-scale proxy, NOT the paper's DRAEM detector; its "
                f"numbers are not comparable with the paper's")
    reference = PROFILES[config.profile].to_dict()
    changed = [f"{k} {v}" for k, v in config.to_dict().items() if reference[k] != v]
    if changed:
        return f"{text}. Profile `{config.profile}` changed by overrides ({', '.join(changed)})."
    return text + (" — the paper's detector setting." if config.profile == "paper" else ".")


class EvaluationError(RuntimeError):
    """The evaluation cannot run (unknown synthesizer, missing anomaly set, ...)."""


@dataclass
class EvalOptions:
    """Everything an evaluation run depends on (see :func:`evaluate`)."""

    target: str
    root: str
    out: str
    category: str | None = None
    daad: str | None = None
    synths: tuple[str, ...] = ("cai", "cutpaste", "nsa-n", "nsa-m", "draem", "glass-las")
    profile: str = "cpu"
    seeds: tuple[int, ...] = (0, 1, 2)
    test_root: str | None = None
    inception: str | None = None
    texture_dir: str | None = None
    foreground: str = "auto"
    synth_size: int = 256
    per_image: int = 10
    max_normals: int | None = None
    exclude_sources: tuple[str, ...] = ()
    detector: dict = field(default_factory=dict)  # overrides of the profile's DetectorConfig fields
    threads: int | None = None  # None: the cores this process may use (cai.eval.detector.default_threads)
    jobs: int = 1  # worker processes, each running whole (synthesizer, seed) runs with threads // jobs threads
    device: str = "auto"
    examples: int = 4
    progress: bool = True
    command: str | None = None
    on_the_fly: bool = False  # fresh pseudo anomalies every training epoch (see the module docstring)


# ----------------------------------------------------------------------------- inputs
def load_normals(paths, size: int):
    """Training normals at the synthesis size: list of (H, W, 3) uint8, and whether all are grey."""
    images, grey = [], True
    shape = None
    for p in paths:
        image, is_grey = load_rgb(str(p))
        grey &= is_grey
        shape = shape or short_side_shape(image.shape, size)  # the paper: 256 x 256 for square targets
        images.append(resize_image(image, shape))
    return images, bool(grey)


def _pattern_bank(daad: str, guard_sources, exclude_sources, cache: Path | None = None):
    from cai.anomaly_set import cached_patterns, load_anomaly_set, open_pattern_bank
    anomalies = load_anomaly_set(daad)
    sources = set(map(str, anomalies["source"]))
    excluded = sorted((set(guard_sources) & sources) | set(exclude_sources))
    # the one pattern store (default: the user cache build-synthetic shares), once per content and filters
    path, patterns, report_ = cached_patterns(anomalies, exclude_sources=excluded, cache=cache)
    per_source = dict(Counter(map(str, patterns["source"])))
    return open_pattern_bank(str(path)), {"path": daad, "patterns": report_["patterns"], "per_source": per_source,
                                         "skipped": report_.get("skipped", {}), "store": Path(path).name}, \
        excluded, sorted(sources)


def make_synthesizers(names, bank=None, normals=None, texture_dir=None, per_image: int = 10) -> dict:
    """Synthesizers by name through :func:`cai.baselines.make_synthesizer`; without that module,
    only ``cai-n``, ``cai-m`` and ``cai-paste`` (CAI directly) are available."""
    try:
        from cai.baselines import make_synthesizer
    except ImportError:
        make_synthesizer = None
    out = {}
    for name in names:
        if make_synthesizer is not None:
            try:
                out[name] = make_synthesizer(name, bank=bank, normals=normals, texture_dir=texture_dir,
                                             per_image=per_image)
            except ValueError as exc:
                raise EvaluationError(f"synthesizer {name}: {exc}") from exc
            continue
        from cai.engine.config import CAIConfig
        from cai.engine.synthesizer import CAISynthesizer
        modes = {"cai-n": "normal", "cai-m": "mixed", "cai-paste": "paste"}
        if name not in modes:
            raise EvaluationError(f"synthesizer {name} needs cai.baselines (not available); "
                                  f"available here: {', '.join(modes)}")
        if bank is None:
            raise EvaluationError(f"{name} needs an anomaly set (--daad)")
        out[name] = CAISynthesizer(bank, CAIConfig(mode=modes[name], quota=_quota(per_image)))
    return out


def _quota(n: int) -> tuple[int, int, int]:
    exact = np.array([4, 3, 3]) * n / 10
    q = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - q), kind="stable")[: n - q.sum()]:
        q[i] += 1
    return tuple(int(v) for v in q)


def synthesize_all(synth, normals, foregrounds, seed: int, is_grey: bool, progress: bool = False, desc: str = ""):
    """Pseudo anomalies of every normal: (images, masks, skipped reasons Counter)."""
    images, masks, skipped = [], [], Counter()
    for i in tqdm(range(len(normals)), desc=desc, unit="normal", disable=not progress, leave=False):
        for result in synth.synthesize(normals[i], foregrounds[i], i, seed, is_grey=is_grey):
            if isinstance(result, PseudoAnomaly):
                image = result.image if result.image.ndim == 3 else np.repeat(result.image[..., None], 3, axis=2)
                images.append(image)
                masks.append(np.asarray(result.mask, bool))
            else:
                skipped[result.reason] += 1
    return images, masks, skipped


def epoch_seed(seed: int, epoch: int) -> int:
    """Synthesis seed of training epoch ``epoch`` on the fly: ``seed`` itself for epoch 0 (the fixed
    split), else the first 63-bit word of ``np.random.SeedSequence([seed, epoch])``."""
    if epoch == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def class_subsets(classes_of_images, classes) -> dict:
    """Per defect class, the test images its pixel AP is taken over: that class's and the normal ones."""
    normal = [i for i, c in enumerate(classes_of_images) if c == NORMAL_CLASS]
    return {cls: [i for i, c in enumerate(classes_of_images) if c == cls] + normal for cls in classes}


def _resample(x: np.ndarray, y: np.ndarray, xmax: float, n: int = 601) -> tuple[np.ndarray, np.ndarray]:
    """A curve with one point per distinct score (millions on large test sets) as ``n`` points on an
    even x grid over [0, xmax] (``np.interp`` on the non-decreasing x), for figures and curves.json."""
    grid = np.linspace(0.0, xmax, n)
    return grid, np.interp(grid, x, y)


def _pick_examples(test_classes, n: int) -> list[int]:
    """Up to ``n`` test images: one per defect class first (then more anomalies), plus one normal."""
    seen, picks = set(), []
    for i, c in enumerate(test_classes):
        if c != NORMAL_CLASS and c not in seen:
            seen.add(c)
            picks.append(i)
    picks += [i for i, c in enumerate(test_classes) if c != NORMAL_CLASS and i not in picks]
    picks = picks[:max(n - 1, 1)]
    normal = [i for i, c in enumerate(test_classes) if c == NORMAL_CLASS]
    return picks + normal[:1]


# ----------------------------------------------------------------------------- main
def evaluate(target: str, root, category: str | None = None, daad: str | None = None,
             synths=EvalOptions.synths, profile: str = "cpu", seeds=3, out="runs/eval", **options) -> dict:
    """Evaluate synthesizers on a target (see the module docstring).

    Parameters
    ----------
    target : {"mvtec", "ksdd", "mtd", "folder"}
        Layout of ``root`` (see :mod:`cai.eval.targets`).
    root : path
    category : str, optional
        MVTec AD category.
    daad : str, optional
        Anomaly set (folder or hub id) for the ``cai-*`` synthesizers.
    synths : sequence of str
        Names accepted by :func:`cai.baselines.make_synthesizer`.
    profile : {"cpu", "paper"}
        Detector profile (:data:`cai.eval.detector.PROFILES`).
    seeds : int or sequence of int
        An int n means seeds 0 .. n-1.
    out : path
        Output folder.
    **options
        Other :class:`EvalOptions` fields: ``test_root``, ``inception``, ``texture_dir``,
        ``foreground``, ``synth_size``, ``per_image``, ``max_normals``, ``exclude_sources``,
        ``detector`` (profile overrides, e.g. ``{"epochs": 2}``), ``threads``, ``device``, ``examples``,
        ``progress``, ``command``.

    Returns
    -------
    dict
        What ``results.json`` holds.
    """
    seeds = tuple(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)
    return run_evaluation(EvalOptions(target=target, root=str(root), out=str(out), category=category, daad=daad,
                                      synths=tuple(synths), profile=profile, seeds=seeds, **options))


def run_evaluation(options: EvalOptions) -> dict:
    """:func:`evaluate` with an :class:`EvalOptions`; torch runs with ``options.threads`` threads (split
    between ``options.jobs`` worker processes), and freed buffers stay in the heap for reuse
    (:func:`cai.eval.heap.retained_heap`)."""
    from cai.progress import datasets_bars

    old_threads = torch.get_num_threads()
    torch.set_num_threads(_threads_per_job(options))
    try:  # datasets' own bars (e.g. cropping a new anomaly set's patterns) follow options.progress too
        with retained_heap(), datasets_bars(options.progress):
            return _evaluate(options)
    finally:
        torch.set_num_threads(old_threads)


def _threads_per_job(o: EvalOptions) -> int:
    from .detector import default_threads
    total = default_threads() if o.threads is None else max(1, int(o.threads))
    return max(1, total // max(1, int(o.jobs)))


@dataclass
class _Inputs:
    """What every (synthesizer, seed) run reads; built once per process."""

    target: EvalTarget
    normals: list
    is_grey: bool
    foregrounds: list
    fg_fn: object
    test_images: tuple
    test_masks: tuple
    test_classes: list
    test_shapes: list
    real_anomalies: list
    synths: dict = field(default_factory=dict)
    bank_report: tuple = (None, [], [])  # anomaly-set report, excluded sources, the set's sources
    extractors: dict = field(default_factory=dict)
    real_feats: dict = field(default_factory=dict)
    truth: GroundTruth | None = None
    per_class: dict = field(default_factory=dict)
    examples_idx: list = field(default_factory=list)
    features: FeatureCache = field(default_factory=FeatureCache)


def _read_inputs(o: EvalOptions) -> _Inputs:
    """The target, its normals and foregrounds and its test set (everything read before a folder is claimed)."""
    target: EvalTarget = load_eval_target(o.target, o.root, o.category, o.test_root, o.max_normals)
    normals, is_grey = load_normals(target.train, o.synth_size)
    from cai.foreground import make_foreground
    fg_fn = make_foreground(o.foreground, category=o.category)
    foregrounds = [np.asarray(fg_fn(n[..., 0] if is_grey else n), bool) for n in normals]
    test_images, test_masks = zip(*(t.load() for t in target.test))
    test_classes = [t.defect_class for t in target.test]
    return _Inputs(target=target, normals=normals, is_grey=is_grey, foregrounds=foregrounds, fg_fn=fg_fn,
                   test_images=test_images, test_masks=test_masks, test_classes=test_classes,
                   test_shapes=[m.shape for m in test_masks],
                   real_anomalies=[im for im, c in zip(test_images, test_classes) if c != NORMAL_CLASS])


def _complete_inputs(inp: _Inputs, o: EvalOptions, real_feats: dict | None = None) -> _Inputs:
    """Add the synthesizers, the FD feature extractors (and the real anomalies' features unless given),
    the test set's ground truth and per-class subsets."""
    bank = None
    if any(s.startswith("cai") for s in o.synths):
        bank, aset, excluded, set_sources = _pattern_bank(o.daad, inp.target.guard_sources, o.exclude_sources)
        inp.bank_report = (aset, excluded, set_sources)
    else:
        inp.bank_report = (None, list(o.exclude_sources), [])
    inp.synths = make_synthesizers(o.synths, bank=bank, normals=inp.normals, texture_dir=o.texture_dir,
                                   per_image=o.per_image)
    from .features import InceptionFeatures, Lite0Features
    inp.extractors = {"lite0": Lite0Features()}
    if o.inception:
        inp.extractors["inception"] = InceptionFeatures(o.inception)
    inp.real_feats = real_feats if real_feats is not None else \
        {k: f(inp.real_anomalies) for k, f in inp.extractors.items()}
    inp.per_class = class_subsets(inp.test_classes, inp.target.defect_classes)
    inp.truth = GroundTruth(inp.test_masks)  # labels and PRO regions: once for every synth and seed
    inp.examples_idx = _pick_examples(inp.test_classes, o.examples)
    return inp


def _run_unit(inp: _Inputs, o: EvalOptions, config: DetectorConfig, name: str, seed: int, first: bool,
              progress: bool) -> dict:
    """One synthesizer and seed: synthesis, detector training, test maps, metrics (see
    :mod:`cai.eval.units` for the result's fields)."""
    from .features import frechet_distance_features
    synth = inp.synths[name]
    normals, foregrounds = inp.normals, inp.foregrounds
    t0, c0 = time.perf_counter(), time.process_time()
    images, masks, skipped = synthesize_all(synth, normals, foregrounds, seed, inp.is_grey, progress,
                                            desc=f"{name} seed {seed}: synthesis")
    t_synth = time.perf_counter() - t0
    if not images:
        raise EvaluationError(f"{name} made no pseudo anomaly (skipped: {dict(skipped)})")
    train_images = list(normals) + images
    train_masks = [np.zeros(n.shape[:2], bool) for n in normals] + masks
    refresh, fresh = None, Counter()
    if o.on_the_fly:
        def refresh(epoch):
            t = time.perf_counter()
            new, new_masks, _ = synthesize_all(synth, normals, foregrounds, epoch_seed(seed, epoch), inp.is_grey)
            fresh.update({"made": len(new), "synthesis_seconds": time.perf_counter() - t})
            return list(normals) + new, [np.zeros(n.shape[:2], bool) for n in normals] + new_masks
    detector = train_detector(train_images, train_masks, config, seed=seed, progress=progress,
                              desc=f"{name} seed {seed}", device=o.device, feature_cache=inp.features,
                              reuse=len(normals), refresh=refresh)
    t_synth += fresh["synthesis_seconds"]
    maps = detector.predict(inp.test_images, inp.test_shapes, feature_cache=inp.features)
    m = pixel_metrics(maps, inp.truth, return_curves=first, subsets=inp.per_class)
    m["per_class_ap"] = m.pop("subset_ap")
    pos, neg = bootstrap.score_histograms(maps, inp.test_masks)
    result = {"pos": pos, "neg": neg, "history": detector.history, "fd": {}}
    if first:
        precision, recall = m["curves"]["pr"]
        result["curve_pr"] = np.stack(_resample(recall, precision, 1.0))  # x recall, y precision
        result["curve_pro"] = np.stack(_resample(*m["curves"]["pro"], 0.3))
        result["example_maps"] = [maps[i] for i in inp.examples_idx]
        result["pseudo"] = list(zip(images[:8], masks[:8]))
        result["fd"] = {k: frechet_distance_features(f(images), inp.real_feats[k]) for k, f in inp.extractors.items()}
    result["run"] = {"seed": seed, **{k: v for k, v in m.items() if k != "curves"},
                     "made": len(images), **({"made_on_the_fly": fresh["made"]} if o.on_the_fly else {}),
                     "skipped": dict(skipped), "final_loss": detector.history[-1]["loss"],
                     "synthesis_seconds": round(t_synth, 2), "wall_seconds": round(time.perf_counter() - t0, 2),
                     "cpu_seconds": round(time.process_time() - c0, 2)}
    return result


_WORKER: dict = {}


def _init_worker(o: EvalOptions, config: DetectorConfig, threads: int, real_feats: dict) -> None:
    """Worker process: its threads, the freed-buffer setting and its own copy of the inputs."""
    import datasets

    torch.set_num_threads(threads)
    retain_freed_memory()  # the process ends with the pool: nothing to restore
    datasets.disable_progress_bars()  # a worker's progress is the parent's "runs" bar
    _WORKER.update(o=o, config=config, inp=_complete_inputs(_read_inputs(o), o, real_feats))


def _worker_unit(name: str, seed: int, first: bool) -> dict:
    return _run_unit(_WORKER["inp"], _WORKER["o"], _WORKER["config"], name, seed, first, progress=False)


def _unit_key(o: EvalOptions, config: DetectorConfig, threads: int, inp: _Inputs, synth: str) -> str:
    """Fingerprint of everything a run of ``synth`` depends on besides its seed: the options, the detector,
    the threads per process, the versions, the target's files and, for the cai* synthesizers, the anomaly
    set's content (its pattern store's content key)."""
    import cai
    fixed = {k: v for k, v in asdict(o).items()
             if k not in ("out", "synths", "seeds", "threads", "jobs", "progress", "command", "detector")}
    aset = inp.bank_report[0] or {}
    return units.fingerprint({"options": fixed, "detector": config.to_dict(), "threads_per_process": threads,
                              "torch": torch.__version__, "cai": getattr(cai, "__version__", ""),
                              "train": [str(p) for p in inp.target.train],
                              "test": [str(t.path) for t in inp.target.test],
                              "patterns": aset.get("store") if synth.startswith("cai") else None})


def _run_units(o: EvalOptions, config: DetectorConfig, inp: _Inputs, folder, unit_dir: Path) -> tuple[dict, float]:
    """Every (synthesizer, seed) result, keyed ``(name, seed)``: loaded when an earlier run of the same options
    finished it, else made here (``o.jobs == 1``) or in ``o.jobs`` worker processes; each is saved as it
    finishes. Also returns the CPU seconds worker processes spent on the runs they made."""
    threads = torch.get_num_threads()
    keys = {name: _unit_key(o, config, threads, inp, name) for name in o.synths}
    todo, done = [], {}
    for name in o.synths:
        for seed in o.seeds:
            found = units.load_unit(unit_dir, name, seed, keys[name], needs_extras=seed == o.seeds[0])
            if found is None:
                todo.append((name, seed, seed == o.seeds[0]))
            else:
                done[name, seed] = found
    total = len(o.synths) * len(o.seeds)
    if done and o.progress:
        tqdm.write(f"resuming: {len(done)} of {total} runs already done ({unit_dir})")

    def finished(name, seed, result):
        path = units.unit_path(unit_dir, name, seed)
        folder.add(path)
        units.save_unit(unit_dir, name, seed, result, keys[name])
        done[name, seed] = result
        if o.progress:
            r = result["run"]
            tqdm.write(f"{name} seed {seed}: P-AUROC {r['pixel_auroc']:.3f} P-AP {r['pixel_ap']:.3f} "
                       f"PRO {r['pro']:.3f} I-AUROC {r['image_auroc']:.3f} ({r['wall_seconds']:.0f} s)")

    jobs = max(1, min(int(o.jobs), len(todo)))
    pool, worker_cpu = None, 0.0
    try:
        if jobs == 1:
            for name, seed, first in todo:
                finished(name, seed, _run_unit(inp, o, config, name, seed, first, o.progress))
            return done, 0.0
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                   initargs=(o, config, threads, inp.real_feats))
        with tqdm(total=total, initial=len(done), desc="runs", unit="run", disable=not o.progress) as bar:
            pending = {pool.submit(_worker_unit, name, seed, first): (name, seed) for name, seed, first in todo}
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    name, seed = pending.pop(future)
                    finished(name, seed, future.result())
                    worker_cpu += done[name, seed]["run"]["cpu_seconds"]
                    bar.update()
        pool.shutdown()
        return done, worker_cpu
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if o.progress and len(done) < total:
            tqdm.write(f"stopped: {len(done)} of {total} runs are kept in {unit_dir}; the same command resumes")
        raise


def _evaluate(o: EvalOptions) -> dict:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if not o.synths:
        raise EvaluationError("no synthesizer given")
    if len(set(o.synths)) != len(o.synths):
        raise EvaluationError(f"synthesizer listed twice: {list(o.synths)}")
    if not o.seeds:
        raise EvaluationError("no seed given")
    if int(o.jobs) < 1:
        raise EvaluationError(f"jobs must be >= 1, got {o.jobs}")
    config: DetectorConfig = get_profile(o.profile, **o.detector)
    from cai.baselines.registry import parse_synthesizer_name
    for name in o.synths:  # names checked before anything is written
        try:
            parse_synthesizer_name(name)
        except ValueError as exc:
            raise EvaluationError(f"--synth {name}: {exc}") from exc

    # every input is read before the output folder is claimed
    inp = _read_inputs(o)
    if any(s.startswith("cai") for s in o.synths):
        if not o.daad:
            raise EvaluationError("the cai-* synthesizers need an anomaly set (--daad)")
        from cai.anomaly_set import load_anomaly_set
        load_anomaly_set(o.daad)

    out = Path(o.out)
    folder = _claim_out(o)
    cache = out / ".cache"
    cache.mkdir(exist_ok=True)
    _complete_inputs(inp, o)
    target, normals = inp.target, inp.normals
    aset, excluded, set_sources = inp.bank_report
    done, worker_cpu = _run_units(o, config, inp, folder, cache / "units")  # worker CPU: not in our process time

    test_names = [f"{t.defect_class}/{t.path.parent.name}/{t.path.name}" for t in target.test]
    histograms = {}  # synth -> [(pos, neg) per seed], for the paired bootstrap
    example_maps, pseudo_examples, curves_pr, curves_pro = {}, {}, {}, {}
    results, log_lines = {}, []
    for name in o.synths:
        runs = [done[name, seed]["run"] for seed in o.seeds]
        for seed in o.seeds:
            unit = done[name, seed]
            histograms.setdefault(name, []).append((unit["pos"], unit["neg"]))
            folder.add(out / "per_image" / f"{name}__seed{seed}.npz")
            bootstrap.save_histograms(out / "per_image" / f"{name}__seed{seed}.npz", unit["pos"], unit["neg"],
                                      test_names)
            log_lines += [json.dumps(entry) for entry in unit["history"]]
        first = done[name, o.seeds[0]]
        curves_pr[name], curves_pro[name] = tuple(first["curve_pr"]), tuple(first["curve_pro"])
        example_maps[name] = list(first["example_maps"])
        pseudo_examples[name] = list(first["pseudo"])
        summary = {k: report.mean_std([r[k] for r in runs]) for k in report.METRICS}
        summary["per_class_ap"] = {c: report.mean_std([r["per_class_ap"][c] for r in runs])
                                   for c in target.defect_classes}
        results[name] = {"runs": runs, "summary": summary, "made_mean": float(np.mean([r["made"] for r in runs])),
                         "fd": first["fd"], "fd_pseudo_images": runs[0]["made"],
                         "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
                         "cpu_seconds": round(sum(r["cpu_seconds"] for r in runs), 2)}
    folder.add(out / "train_log.jsonl")
    (out / "train_log.jsonl").write_text("".join(line + "\n" for line in log_lines))

    reference = o.synths[0]
    comparisons = {name: bootstrap.paired_bootstrap(histograms[name], histograms[reference])
                   for name in o.synths if name != reference}
    fg_fn, test_images, test_masks, test_classes = inp.fg_fn, inp.test_images, inp.test_masks, inp.test_classes
    examples_idx = inp.examples_idx
    res = {
        "bootstrap": {"reference": reference, "statistic": "pixel AP (mean over seeds) minus the reference's, "
                      "paired bootstrap over test images, 95% percentile interval", "vs_reference": comparisons},
        "profile": {"name": o.profile, "description": describe_profile(config), "config": config.to_dict()},
        "target": {**target.summary(), "defect_classes": target.defect_classes,
                   "root": str(o.root), "test_root": o.test_root, "is_grey": inp.is_grey,
                   "synthesis_shape": list(normals[0].shape[:2]),
                   "foreground": {"used": getattr(fg_fn, "kind", o.foreground), "note": getattr(fg_fn, "note", "")}},
        "seeds": list(o.seeds), "per_image": o.per_image, "on_the_fly": o.on_the_fly, "synthesizers": results,
        "leakage_guard": {"target_sources": list(target.guard_sources), "excluded_sources": excluded,
                          "anomaly_set_sources": set_sources},
        "anomaly_set": aset, "inception": o.inception, "fd_real_images": len(inp.real_anomalies),
        "fd_labels": {k: f.label for k, f in inp.extractors.items()},
        "threads": torch.get_num_threads(), "jobs": int(o.jobs), "device": str(o.device), "cuda": torch.cuda.is_available(),
        "command": o.command,
        "wall_seconds": round(time.perf_counter() - wall0, 2),
        "cpu_seconds": round(time.process_time() - cpu0 + worker_cpu, 2),
        "python": sys.version.split()[0], "torch": torch.__version__,
    }
    report.write_json(out / "results.json", res)
    report.write_json(out / "curves.json", {
        "note": f"seed {o.seeds[0]}, profile {o.profile}; curves resampled on an even x grid",
        "pr": {k: {"recall": x, "precision": y} for k, (x, y) in curves_pr.items()},
        "pro": {k: {"fpr": x, "pro": y} for k, (x, y) in curves_pro.items()}})
    report.write_csv(out / "results.csv", res)
    (out / "results.md").write_text(report.markdown(res))
    tag = f"[{o.profile}] seed {o.seeds[0]}"
    report.draw_curves(curves_pr, out / "curves_pr.png", f"{target.name}: pixel PR curves {tag}", "recall",
                       "precision")
    report.draw_curves(curves_pro, out / "curves_pro.png", f"{target.name}: PRO curves {tag}", "FPR", "PRO",
                       xmax=0.3)
    report.save_example_maps(out / "anomaly_maps.png", [test_images[i] for i in examples_idx],
                             [test_masks[i] for i in examples_idx], example_maps,
                             [f"{test_classes[i]} {target.test[i].path.name}" for i in examples_idx])
    report.save_pseudo_examples(out / "pseudo_anomalies.png", pseudo_examples)
    folder.add(*(p for p in out.iterdir() if p.is_file() and p.name in OUTPUT_FILES))
    folder.add_tree(out / "per_image")
    folder.add_tree(cache)
    return res


OUTPUT_FILES = ("results.json", "curves.json", "results.csv", "results.md", "curves_pr.png", "curves_pro.png",
                "anomaly_maps.png", "pseudo_anomalies.png", "train_log.jsonl")


def _claim_out(o: EvalOptions):
    """Claim ``o.out`` through :mod:`cai.output_folder` (kind ``evaluate``): new, empty, or an earlier
    evaluate output (its cache is reused); never someone's folder, the current folder or an input."""
    from cai.output_folder import OutputFolderError, claim
    try:
        return claim(o.out, "evaluate", inputs={"--root": o.root, "--test-root": o.test_root, "--daad": o.daad,
                                                "--texture-dir": o.texture_dir, "--inception": o.inception},
                     nested_ok=("--root",) if o.target == "mvtec" else (), legacy_marker="train_log.jsonl",
                     legacy_names=OUTPUT_FILES + (".cache", "per_image"))
    except OutputFolderError as exc:
        raise EvaluationError(str(exc)) from None


def command_line() -> str:
    """The running command, quoted (for the results' provenance)."""
    return " ".join(shlex.quote(a) for a in sys.argv)


__all__ = ["EvalOptions", "EvaluationError", "evaluate", "run_evaluation", "make_synthesizers", "synthesize_all",
           "load_normals", "describe_profile", "epoch_seed"]
