"""CAI on the fly inside a training loop: a transform and a torch dataset that make a fresh pseudo
anomaly per sample per epoch.

Two entry points, plain torch (no torchvision):

:class:`CAIAnomalyGenerator`
    Called on a float image tensor ``[C, H, W]`` or a batch ``[B, C, H, W]`` in [0, 1] (or a uint8
    ``(H, W, 3)`` numpy array), returns ``(augmented, mask)``; with probability ``1 - p`` an image comes
    back unchanged with an empty mask. The call contract of anomalib's ``PerlinAnomalyGenerator``, so it
    can take its place in a training step.
:class:`CAIDataset`
    A map-style ``torch.utils.data.Dataset`` over normal images (HF dataset, image folder, list of
    arrays or paths) yielding ``{"image", "mask", "label", "index", "epoch", ...}``.

Randomness of sample ``index`` in epoch ``epoch`` is ``np.random.default_rng([seed, epoch, index])``
(``set_epoch`` as torch's ``DistributedSampler``), never the worker's or the global RNG, so the bytes
do not depend on the ``DataLoader`` worker count or order. Any synthesizer of
:func:`cai.baselines.make_synthesizer` works behind the same interface (``synthesizer="draem"``).

The anomaly patterns come from the one pattern store of :mod:`cai.anomaly_set`, shared with
``build-synthetic``: prepared once and saved with ``save_to_disk`` (:func:`prepare_pattern_folder`,
i.e. :func:`cai.anomaly_set.cached_patterns`), their refined masks stored once
(:func:`cai.anomaly_set.ensure_refined_masks`), their decoded pixels, source masks and refined masks
written once inside that folder as raw uint8 files (:func:`cai.anomaly_set.decoded_patterns`,
:func:`cai.anomaly_set.mapped_refined`). What a ``DataLoader`` worker receives is the folder's path:
each worker memory-maps the files lazily (:func:`cai.anomaly_set.open_pattern_bank`, ``np.memmap``
read-only), so the patterns are neither pickled nor decoded nor copied per worker: their pages are the
operating system's page cache, shared by every process (RSS counts them in each worker, PSS splits
them, USS does not contain them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .extras import require

require("torch", "cai.torch")

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from .engine.config import SCALES, CAIConfig  # noqa: E402
from .engine.synthesizer import PatternBank, PseudoAnomaly  # noqa: E402
from .baselines.visible import GATE_SKIPS  # noqa: E402

__all__ = ["CAIAnomalyGenerator", "CAIDataset", "prepare_pattern_folder", "sample_rng"]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in epoch ``epoch``: ``np.random.default_rng([seed, epoch, index])``.

    Example
    -------
    >>> int(sample_rng(0, 1, 2).integers(100)) == int(sample_rng(0, 1, 2).integers(100))
    True
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return np.random.default_rng([int(seed), int(epoch), int(index)])


# ----------------------------------------------------------------------------- patterns
def _is_pattern_folder(path: Path) -> bool:
    if not (path / "state.json").is_file():
        return False
    info = json.loads((path / "dataset_info.json").read_text()) if (path / "dataset_info.json").is_file() else {}
    return "pattern_image" in (info.get("features") or {})


def prepare_pattern_folder(anomaly_set, cache_dir=None, classes=None, exclude_sources=()) -> str:
    """The folder of prepared anomaly patterns (``save_to_disk``) that workers memory-map: the one
    pattern store of :func:`cai.anomaly_set.cached_patterns` (the folder ``build-synthetic`` uses for the
    same anomaly set and filters).

    Parameters
    ----------
    anomaly_set : str, Path or datasets.Dataset
        A pattern folder (used as it is), any anomaly set :func:`cai.anomaly_set.load_anomaly_set`
        reads (folder or hub id), or a loaded anomaly set / prepared-pattern dataset.
    cache_dir : path, optional
        Where prepared patterns are saved (default: :func:`cai.anomaly_set.cache_root` ``/ "patterns"``);
        one sub-folder per anomaly-set content and filters (:func:`cai.anomaly_set.patterns_key`),
        reused on the next call.
    classes, exclude_sources : sequence of str
        Filters of :func:`cai.anomaly_set.prepare_patterns`.

    Returns
    -------
    str
        Path of the pattern folder.
    """
    import datasets

    from .anomaly_set import cache_root, cached_patterns, load_anomaly_set

    if isinstance(anomaly_set, (str, os.PathLike)):
        path = Path(anomaly_set)
        if path.is_dir() and _is_pattern_folder(path) and not classes and not exclude_sources:
            return str(path)
        ds = load_anomaly_set(str(anomaly_set), option="anomaly_set")
    elif isinstance(anomaly_set, datasets.Dataset):
        ds = anomaly_set
    else:
        raise ValueError("anomaly_set must be a folder, a hub id or a datasets.Dataset, "
                         f"got {type(anomaly_set).__name__}")
    if "pattern_image" not in ds.column_names:
        return cached_patterns(ds, classes=classes, exclude_sources=exclude_sources, cache=cache_dir)[0]
    # already prepared patterns (in memory or from another folder): saved as they are, once per fingerprint
    key = hashlib.sha1(json.dumps([getattr(ds, "_fingerprint", ""), sorted(classes or []),
                                   sorted(exclude_sources)]).encode()).hexdigest()[:16]
    out = (Path(cache_dir) if cache_dir is not None else cache_root() / "patterns") / f"prepared-{key}"
    if not (out / "state.json").is_file():
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, out)
        except OSError:  # another process saved it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


# ----------------------------------------------------------------------------- the generator
class _Engine:
    """One pseudo anomaly per call from a named synthesizer, built lazily in each process.

    CAI synthesizers make ``sum(quota)`` results per call; here one slot is made: its scale is drawn
    with probability proportional to the quota (4/3/3: large 0.4, medium 0.3, small 0.3) and a copy of
    the synthesizer with a one-slot quota of that scale makes it. Baselines are built with
    ``per_image=1``. State that cannot travel cheaply (the pattern bank, textures) is dropped when
    pickled and rebuilt on first use in the worker.
    """

    def __init__(self, name: str, pattern_folder: str | None, bank: PatternBank | None, config: CAIConfig | None,
                 texture_dir=None, normals=None, attempts: int = 3):
        self.name, self.pattern_folder, self.config = name, pattern_folder, config
        self.texture_dir, self.normals, self.attempts = texture_dir, normals, attempts
        self._bank = bank
        self._slots = None  # list of (probability, synthesizer)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_slots"] = None
        if self.pattern_folder is not None:
            state["_bank"] = None  # reopened (memory-mapped) in the worker
        return state

    @property
    def is_cai(self) -> bool:
        return self.name.split("+")[0] == "cai" or self.name.startswith("cai-")

    def _build(self):
        from .baselines import make_synthesizer
        from .baselines.mixture import SlotMixture

        if not self.is_cai:
            return [(1.0, make_synthesizer(self.name, normals=self.normals, texture_dir=self.texture_dir,
                                           config=self.config, per_image=1))]
        if self._bank is None:
            from .anomaly_set import open_pattern_bank
            self._bank = open_pattern_bank(self.pattern_folder)  # views of the mapped files, refined included
        base = make_synthesizer(self.name, bank=self._bank, config=self.config or CAIConfig(), per_image=10,
                                normals=self.normals)
        mixture = base if isinstance(base, SlotMixture) else None
        if mixture is not None:  # "cai+nsan25": the CAI slots share 1 - share, the other synthesizer the rest
            base = mixture.main
        quota = np.asarray(base.config.quota, dtype=np.float64)
        kept = 1.0 - mixture.share if mixture is not None else 1.0
        slots = []
        for i, scale in enumerate(SCALES):
            if quota[i] > 0:
                one = dataclasses.replace(base, config=dataclasses.replace(
                    base.config, quota=tuple(int(j == i) for j in range(3))))
                one._refined = base._refined  # refined pattern masks shared by the three copies
                slots.append((kept * quota[i] / quota.sum(), one))
        if mixture is not None:
            slots.append((mixture.share, dataclasses.replace(mixture.other, per_image=1)))
        return slots

    def warm_up(self) -> int:
        """Build the synthesizer and read every pattern (and its refined mask) once; returns the count."""
        if self._slots is None:
            self._slots = self._build()
        synth = self._slots[0][1]
        if not hasattr(synth, "_pattern"):
            return 0
        for i in range(len(self._bank.long_sides)):
            synth._pattern(i)
        mapped = getattr(self._bank.load, "__self__", None)
        if self.pattern_folder is not None and hasattr(mapped, "touch"):
            mapped.touch()  # fault every page of the mapped files in (shared page cache)
        return len(self._bank.long_sides)

    def make(self, normal: np.ndarray, foreground: np.ndarray, index: int, rng: np.random.Generator,
             is_grey: bool):
        """(image (H, W, 3) uint8, mask (H, W) bool, info dict); mask empty when every attempt failed."""
        if self._slots is None:
            self._slots = self._build()
        probs = np.array([p for p, _ in self._slots])
        reasons = []
        for _ in range(self.attempts):
            pick = int(rng.choice(len(probs), p=probs)) if len(probs) > 1 else 0
            synth = self._slots[pick][1]
            sub_seed = int(rng.integers(2 ** 63))
            result = synth.synthesize(normal, foreground, int(index), sub_seed, is_grey=is_grey)[0]
            if getattr(result, "reason", "") in GATE_SKIPS and probs.sum() > probs[pick]:
                # "cai+nsanv25": no in-domain patch passed the gate, so this image gets one of CAI's, as in a run
                probs = np.where(np.arange(len(probs)) == pick, 0.0, probs)
                probs = probs / probs.sum()
            if isinstance(result, PseudoAnomaly) and result.mask.any():
                image = result.image if result.image.ndim == 3 else np.repeat(result.image[..., None], 3, axis=2)
                return image, np.asarray(result.mask, bool), {
                    "synthesizer": self.name, "anomaly_class": result.anomaly_class, "source_id": result.source_id,
                    "scale": result.scale, "skipped": ""}
            reasons.append(getattr(result, "reason", "empty_mask"))
        return normal, np.zeros(normal.shape[:2], bool), {
            "synthesizer": self.name, "anomaly_class": "", "source_id": "", "scale": "", "skipped": ",".join(reasons)}


def _engine_for(anomaly_set, synthesizer: str, config: CAIConfig, cache_dir, classes, exclude_sources,
                texture_dir, normals) -> _Engine:
    from .baselines.registry import parse_synthesizer_name, uses_normals
    name = str(synthesizer)
    base = parse_synthesizer_name(name)[0]  # name and modifiers checked before any pattern is prepared
    is_cai = base == "cai" or base.startswith("cai-")
    if config is not None and not isinstance(config, CAIConfig):
        raise ValueError(f"config must be a CAIConfig or None, got {type(config).__name__}")
    if uses_normals(name) and normals is None:
        raise ValueError(f"{name} draws patches from the target's other normal images: pass normals=(load, count) "
                         "or use CAIDataset, which passes its own")
    if not is_cai:
        return _Engine(name, None, None, config, texture_dir, normals)
    if anomaly_set is None:
        raise ValueError(f"{name} needs an anomaly set (a folder, hub id or datasets.Dataset)")
    if isinstance(anomaly_set, PatternBank):  # in-process only: not shared by spawned workers
        return _Engine(name, None, anomaly_set, config, texture_dir, normals)
    from .anomaly_set import decoded_patterns, ensure_refined_masks, mapped_refined

    folder = prepare_pattern_folder(anomaly_set, cache_dir, classes, exclude_sources)
    decoded_patterns(folder)  # written here, once, so that workers only map them
    ensure_refined_masks(folder)
    mapped_refined(folder)
    return _Engine(name, folder, None, config, texture_dir, normals)


def _check_p(p) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return p


def _float_to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 255.0).astype(np.uint8)


class CAIAnomalyGenerator(torch.nn.Module):
    """Pseudo anomalies as a transform: ``augmented, mask = generator(image)``.

    Parameters
    ----------
    anomaly_set : str, Path, datasets.Dataset, PatternBank or None
        Real defects for the ``cai*`` synthesizers: a pattern folder, any anomaly set
        :func:`cai.anomaly_set.load_anomaly_set` reads, or a loaded one (prepared once and saved,
        see :func:`prepare_pattern_folder`). A :class:`PatternBank` works in this process only.
        ``None`` for synthesizers that need none (``cutpaste``, ``draem``, ``glass-las``).
    config : CAIConfig, optional
        CAI settings (default ``CAIConfig()``; the quota's proportions give the scale distribution of
        the single pseudo anomaly made per image). The baselines keep their own defaults unless a
        config is given (then they take its ``threshold`` and ``max_attempts``, as in
        :func:`cai.baselines.make_synthesizer`).
    p : float in [0, 1]
        Probability that an image gets a pseudo anomaly; otherwise it comes back unchanged with an
        empty mask.
    seed : int
        Seed of every draw (see ``index`` / ``epoch`` in :meth:`forward`).
    synthesizer : str
        A name of :data:`cai.baselines.SYNTHESIZERS` (``"cai"``, ``"cai-n"``, ``"cutpaste"``,
        ``"draem"``, ``"glass-las"``, ...); ``"nsa-*"`` needs ``normals``.
    texture_dir, normals
        Passed to :func:`cai.baselines.make_synthesizer` (DRAEM/GLASS textures; NSA's normal images).
    cache_dir, classes, exclude_sources
        Passed to :func:`prepare_pattern_folder`.

    Notes
    -----
    Randomness: with ``index`` given, image b of a call draws from
    ``np.random.default_rng([seed, epoch, index_b])`` (``epoch`` defaults to :attr:`epoch`, set by
    :meth:`set_epoch`), the same bytes in any process. Without ``index``, draws come from a default
    stream seeded by ``seed`` (and, inside a ``DataLoader`` worker, the worker's torch seed, so workers
    differ): repeatable in one process, not across worker layouts.

    Example
    -------
    >>> from cai.targets import DEFAULT_SAMPLE
    >>> gen = CAIAnomalyGenerator(str(DEFAULT_SAMPLE / "anomalies"), p=1.0, seed=0)
    >>> image = torch.full((3, 64, 64), 0.5)
    >>> augmented, mask = gen(image, index=0)
    >>> tuple(augmented.shape), tuple(mask.shape), mask.dtype
    ((3, 64, 64), (1, 64, 64), torch.float32)
    """

    def __init__(self, anomaly_set=None, config: CAIConfig | None = None, p: float = 0.5, seed: int = 0,
                 synthesizer: str = "cai", *, texture_dir=None, normals=None, cache_dir=None, classes=None,
                 exclude_sources=()):
        super().__init__()
        self.p = _check_p(p)
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        self.synthesizer = str(synthesizer)
        self._engine = _engine_for(anomaly_set, synthesizer, config, cache_dir, classes, exclude_sources,
                                   texture_dir, normals)
        self._stream = None
        self.last_info: list[dict] = []

    def set_epoch(self, epoch: int) -> None:
        """Epoch mixed into the draws of calls that give an ``index`` (as ``DistributedSampler.set_epoch``)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_stream"] = None
        return state

    def warm_up(self) -> int:
        """Open the patterns now and read each once rather than on first use (e.g. in a ``DataLoader``'s
        ``worker_init_fn``): steady-state speed from the first sample. The pages read are the shared
        memory-mapped file's (a :class:`PatternBank` given directly is decoded into this process
        instead). Returns the number of patterns (0 for synthesizers without patterns)."""
        return self._engine.warm_up()

    def _default_rng(self) -> np.random.Generator:
        if self._stream is None:
            info = torch.utils.data.get_worker_info()
            self._stream = np.random.default_rng([self.seed, 0 if info is None else int(info.seed) % 2 ** 63])
        return np.random.default_rng(self._stream.integers(2 ** 63))

    # -- numpy core --------------------------------------------------------------------------------
    def augment_array(self, image: np.ndarray, foreground=None, rng=None, index: int = 0, is_grey: bool = False):
        """One image, numpy in and out.

        Parameters
        ----------
        image : (H, W, 3) uint8 ndarray
        foreground : (H, W) bool ndarray, optional
            Where the defect may go (default: everywhere).
        rng : np.random.Generator, optional
            Default: the next draw of the default stream.
        index : int
            The image's index among the target's normals (``nsa-*`` draws another normal than this).
        is_grey : bool
            Grey target: the synthesizer injects in grey (channels stay equal).

        Returns
        -------
        augmented : (H, W, 3) uint8 ndarray
            A new array (the input itself is never changed).
        mask : (H, W) bool ndarray
            The pseudo mask; all False when no pseudo anomaly was made.
        info : dict
            ``synthesizer``, ``anomaly_class``, ``source_id``, ``scale`` and ``skipped`` (the reasons when
            every attempt failed; the image then comes back unchanged).
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
        fg = _check_foreground(foreground, image.shape[:2])
        rng = self._default_rng() if rng is None else rng
        if self.p < 1.0 and not rng.random() < self.p:
            return image.copy(), np.zeros(image.shape[:2], bool), {
                "synthesizer": self.synthesizer, "anomaly_class": "", "source_id": "", "scale": "", "skipped": "p"}
        out, mask, info = self._engine.make(image, fg, index, rng, is_grey)
        return np.array(out, copy=True), mask, info

    # -- torch / numpy front -----------------------------------------------------------------------
    def forward(self, image, foreground=None, index=None, epoch: int | None = None):
        """Add a pseudo anomaly to each image with probability ``p``.

        Parameters
        ----------
        image : float tensor [C, H, W] or [B, C, H, W] with values in [0, 1], C in {1, 3}; or a uint8
            numpy array (H, W, 3) (or (H, W) grey)
        foreground : bool/0-1 tensor or array, optional
            Where defects may go: [H, W] or [1, H, W] per image, [B, H, W] or [B, 1, H, W] for a batch.
        index : int or sequence of int, optional
            Sample index (per image of a batch; an int ``i`` means ``i, i+1, ...``) for draws that do
            not depend on the process; default: the default stream.
        epoch : int, optional
            Default :attr:`epoch`.

        Returns
        -------
        augmented : same type, shape, dtype and device as ``image``
            Pixels the synthesizer changed take its values; all others are the input's exactly.
        mask : float tensor [1, H, W] / [B, 1, H, W] in {0, 1} (same dtype and device as ``image``);
            for numpy input an (H, W) bool array

        Raises
        ------
        ValueError
            Wrong type or dtype, values outside [0, 1], a channel count other than 1 or 3, or a
            foreground / index that does not match the images.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        if isinstance(image, np.ndarray):
            return self._forward_numpy(image, foreground, index, epoch)
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"image must be a torch tensor or a numpy array, got {type(image).__name__}")
        if not image.is_floating_point():
            raise ValueError(f"image tensor must be floating point with values in [0, 1], got {image.dtype} "
                             "(for uint8 data divide by 255 first)")
        batched = image.ndim == 4
        if image.ndim not in (3, 4):
            raise ValueError(f"image tensor must be [C, H, W] or [B, C, H, W], got shape {tuple(image.shape)}")
        batch = image if batched else image[None]
        B, C, H, W = batch.shape
        if C not in (1, 3):
            raise ValueError(f"image must have 1 or 3 channels (dimension C of [B, C, H, W]), got {C} "
                             f"in shape {tuple(image.shape)}")
        x = batch.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(x).all():
            raise ValueError("image values must lie in [0, 1], got NaN or inf")
        if x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"image values must lie in [0, 1], got [{x.min():.4g}, {x.max():.4g}]")
        fgs = _split_foreground(foreground, B, (H, W), batched)
        rngs = self._rngs(index, B, epoch)
        out, self.last_info = batch.clone(), []
        masks = torch.zeros((B, 1, H, W), dtype=image.dtype, device=image.device)
        for b in range(B):
            hwc = np.ascontiguousarray(x[b].transpose(1, 2, 0))
            u8 = _float_to_uint8(hwc if C == 3 else np.repeat(hwc, 3, axis=2))
            new, mask, info = self.augment_array(u8, fgs[b], rngs[b], _index_of(index, b), is_grey=C == 1)
            self.last_info.append(info)
            if not mask.any():
                continue
            new = new if C == 3 else new[..., :1]
            changed = (new != (u8 if C == 3 else u8[..., :1])).any(axis=2)
            values = torch.from_numpy(new.transpose(2, 0, 1) / 255.0).to(image.dtype)
            sel = torch.from_numpy(changed)
            out[b] = torch.where(sel.to(image.device), values.to(image.device), out[b])
            masks[b, 0] = torch.from_numpy(mask).to(image.dtype)
        return (out, masks) if batched else (out[0], masks[0])

    def _rngs(self, index, count: int, epoch: int) -> list:
        if index is None:
            return [self._default_rng() for _ in range(count)]
        if not isinstance(index, (int, np.integer)) and len(index) != count:
            raise ValueError(f"index has {len(index)} entries for {count} images")
        indices = [_index_of(index, b) for b in range(count)]
        return [sample_rng(self.seed, epoch, i) for i in indices]

    def _forward_numpy(self, image: np.ndarray, foreground, index, epoch: int):
        if image.dtype != np.uint8:
            raise ValueError(f"a numpy image must be uint8 (H, W, 3) or (H, W), got dtype {image.dtype}")
        grey = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)
        if image.ndim == 3 and image.shape[2] not in (1, 3):
            raise ValueError(f"a numpy image must be (H, W, 3), (H, W, 1) or (H, W), got shape {image.shape} "
                             "(channels last; for [C, H, W] pass a float tensor)")
        if image.ndim not in (2, 3):
            raise ValueError(f"a numpy image must be (H, W, 3) or (H, W), got shape {image.shape}")
        if isinstance(index, (list, tuple, np.ndarray)):
            raise ValueError("a numpy image is one image: index must be an int")
        rgb = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=2) if grey else image
        rng = self._rngs(index, 1, epoch)[0]
        new, mask, info = self.augment_array(rgb, foreground, rng, _index_of(index, 0), is_grey=grey)
        self.last_info = [info]
        if grey:
            new = new[..., 0].reshape(image.shape)
        return new, mask

    def extra_repr(self) -> str:
        return f"synthesizer={self.synthesizer!r}, p={self.p}, seed={self.seed}, epoch={self.epoch}"


def _index_of(index, b: int) -> int:
    if index is None:
        return b
    if isinstance(index, (int, np.integer)):
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return int(index) + b
    value = index[b]
    value = int(value.item() if isinstance(value, torch.Tensor) else value)
    if value < 0:
        raise ValueError(f"index must be >= 0, got {value}")
    return value


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_foreground(foreground, shape) -> np.ndarray:
    """(H, W) bool foreground from None (everything), an (H, W) / (1, H, W) bool or 0/1 array or tensor."""
    if foreground is None:
        return np.ones(shape, bool)
    fg = _as_numpy(foreground)
    if fg.ndim == 3 and fg.shape[0] == 1:
        fg = fg[0]
    if fg.shape != tuple(shape):
        raise ValueError(f"foreground shape {fg.shape} differs from the image's (H, W) = {tuple(shape)}")
    if fg.dtype != bool:
        if not np.isin(fg, (0, 1)).all():
            raise ValueError("foreground must be boolean or hold only 0 and 1")
        fg = fg.astype(bool)
    return fg


def _split_foreground(foreground, count: int, shape, batched: bool) -> list:
    if foreground is None:
        return [None] * count
    if not batched:
        return [foreground]
    if isinstance(foreground, (list, tuple)):
        if len(foreground) != count:
            raise ValueError(f"foreground has {len(foreground)} entries for {count} images")
        return list(foreground)
    fg = _as_numpy(foreground)
    if fg.ndim == 4 and fg.shape[1] == 1:
        fg = fg[:, 0]
    if fg.ndim != 3 or fg.shape[0] != count:
        raise ValueError(f"a batch foreground must be [B, H, W] or [B, 1, H, W] with B = {count}, got {fg.shape}")
    return list(fg)


# ----------------------------------------------------------------------------- the dataset
def _normals_source(normals, image_column: str):
    """(count, load i -> image value) over an HF dataset, a folder, or a sequence."""
    if isinstance(normals, (str, os.PathLike)):
        from .imageio import list_images
        folder = Path(normals)
        if not folder.is_dir():
            raise ValueError(f"normals {normals}: no such folder")
        paths = [str(p) for p in list_images(folder, recursive=True)]
        if not paths:
            raise ValueError(f"normals {normals}: no image found")
        return paths
    try:
        import datasets
        if isinstance(normals, datasets.Dataset):
            if image_column not in normals.column_names:
                raise ValueError(f"normals has no column {image_column!r} (it has {normals.column_names})")
            return normals.select_columns([image_column])
    except ImportError:  # pragma: no cover - datasets is a core dependency
        pass
    if not hasattr(normals, "__len__") or not hasattr(normals, "__getitem__"):
        raise ValueError(f"normals must be a folder, an HF dataset or a sequence, got {type(normals).__name__}")
    if len(normals) == 0:
        raise ValueError("normals is empty")
    return normals


class CAIDataset(Dataset):
    """Normal images with a fresh pseudo anomaly per sample per epoch (map-style torch dataset).

    Parameters
    ----------
    normals : str/Path folder, datasets.Dataset with an ``image_column``, or a sequence
        Normal images; sequence items may be (H, W, 3) / (H, W) uint8 arrays, PIL images, paths or
        image bytes (anything :func:`cai.imageio.load_rgb` decodes).
    anomaly_set, config, p, seed, synthesizer, texture_dir, cache_dir, classes, exclude_sources
        As :class:`CAIAnomalyGenerator`. ``nsa-*`` draws its second image from ``normals``.
    size : int or (rows, cols), optional
        Resize every normal to this size first (needed to batch images of different sizes).
    foreground : None, str, callable or sequence
        Where defects may go: None (everywhere), a kind of :func:`cai.foreground.make_foreground`
        (``"threshold"``, ``"all"``...), a callable ``(H, W, 3) uint8 -> (H, W) bool``, or one mask per
        normal. Computed per item (cheap kinds only; precompute ``rembg`` masks and pass the list).
    image_column : str
        Image column of an HF dataset.

    Items
    -----
    ``image`` float32 [C, H, W] in [0, 1] (C = 3; 1 when ``grey``), ``mask`` float32 [1, H, W] in
    {0, 1}, ``label`` int64 (1 when a pseudo anomaly was made), ``index``, ``epoch``, and the strings
    ``anomaly_class``, ``source_id``, ``scale``, ``synthesizer`` ("" for unchanged images).

    Sample ``index`` in epoch ``e`` draws from ``np.random.default_rng([seed, e, index])``: the same
    bytes for any ``DataLoader`` worker count or order. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, normals, anomaly_set=None, config: CAIConfig | None = None, p: float = 0.5, seed: int = 0,
                 synthesizer: str = "cai", *, size=None, foreground=None, grey: bool = False,
                 image_column: str = "image", texture_dir=None, cache_dir=None, classes=None, exclude_sources=()):
        self._normals = _normals_source(normals, image_column)
        self.image_column = image_column
        self.size = None if size is None else ((int(size), int(size)) if np.isscalar(size) else tuple(map(int, size)))
        if self.size is not None and min(self.size) < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.grey = bool(grey)
        if isinstance(foreground, str):
            from .foreground import make_foreground
            foreground = make_foreground(foreground)
        if foreground is not None and not callable(foreground) and len(foreground) != len(self._normals):
            raise ValueError(f"foreground has {len(foreground)} masks for {len(self._normals)} normals")
        self.foreground = foreground
        from .baselines.registry import uses_normals
        nsa = uses_normals(str(synthesizer))
        self.generator = CAIAnomalyGenerator(anomaly_set, config, p, seed, synthesizer, texture_dir=texture_dir,
                                             normals=(self.load_normal, len(self._normals)) if nsa else None,
                                             cache_dir=cache_dir, classes=classes, exclude_sources=exclude_sources)

    @property
    def epoch(self) -> int:
        return self.generator.epoch

    @property
    def seed(self) -> int:
        return self.generator.seed

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s pseudo anomalies (call before iterating; workers see it when the
        ``DataLoader`` starts its iterator, i.e. without ``persistent_workers``)."""
        self.generator.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._normals)

    def load_normal(self, index: int) -> np.ndarray:
        """Normal image ``index`` as (H, W, 3) uint8, resized to ``size`` when set."""
        from .imageio import load_rgb, resize_image
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} normals")
        value = self._normals[int(index)]
        if isinstance(value, dict) and self.image_column in value:
            value = value[self.image_column]
        if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (2, 3):
            image = value if value.ndim == 3 and value.shape[2] == 3 else np.repeat(
                value.reshape(value.shape[:2] + (1,)), 3, axis=2)
        elif isinstance(value, np.ndarray):
            raise ValueError(f"normal {index}: arrays must be uint8 (H, W, 3) or (H, W), "
                             f"got {value.dtype} {value.shape}")
        else:
            image = load_rgb(value)[0]
        return image if self.size is None else resize_image(image, self.size)

    def _foreground(self, index: int, image: np.ndarray):
        if self.foreground is None:
            return None
        if callable(self.foreground):
            return self.foreground(image)
        fg = _check_foreground(self.foreground[index], _as_numpy(self.foreground[index]).shape[-2:])
        if fg.shape != image.shape[:2]:
            import cv2
            fg = cv2.resize(fg.astype(np.uint8), (image.shape[1], image.shape[0]),
                            interpolation=cv2.INTER_NEAREST).astype(bool)
        return fg

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        normal = self.load_normal(index)
        rng = sample_rng(self.seed, self.epoch, index)
        image, mask, info = self.generator.augment_array(normal, self._foreground(index, normal), rng, index,
                                                        is_grey=self.grey)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
        if self.grey:
            x = x[:1]
        return {"image": x, "mask": torch.from_numpy(mask[None].astype(np.float32)),
                "label": torch.tensor(int(mask.any()), dtype=torch.int64), "index": index, "epoch": self.epoch,
                "anomaly_class": info["anomaly_class"], "source_id": info["source_id"], "scale": info["scale"],
                "synthesizer": info["synthesizer"]}
