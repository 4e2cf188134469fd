"""Synthesizers by name: :func:`make_synthesizer` and :data:`SYNTHESIZERS`."""
from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

from ..engine.config import DEFAULT_MODE_WEIGHTS, CAIConfig
from ..engine.synthesizer import CAISynthesizer, PatternBank
from ._common import _check_positive_int
from .cai_ablations import CAIVariant, _scaled_quota
from .cutpaste import CutPasteSynthesizer
from .draem import DRAEMSynthesizer
from .glass import GLASSSynthesizer
from .mixture import SlotMixture
from .nsa import NSASynthesizer
from .textures import texture_set
from .visible import VisibleOnly

#: Every name :func:`make_synthesizer` accepts.
SYNTHESIZERS = (
    "cai", "cai-n", "cai-m", "cai-paste", "cai-r", "cai-mix", "cai-nmr", "cai-rp", "cai-np", "cai-no-stm", "cai-no-ils", "cai-622", "cai-262", "cai-226", "cai-433",
    "cutpaste", "cutpaste-scar", "nsa-n", "nsa-m", "draem", "glass-las",
)
_CAI_MODES = {"cai-n": "normal", "cai-m": "mixed", "cai-paste": "paste", "cai-r": "relative",
              "cai-mix": "normal+mixed+paste", "cai-nmr": "normal+mixed+relative", "cai-rp": "relative+paste",
              "cai-np": "normal+paste"}
# Modifiers appended to a CAI name with "+" (e.g. "cai-r+refine+aug"), each a CAIConfig setting.
# The named variants keep the settings they were measured with (the defaults before the quality work:
# unrefined source masks, no augmentation, luma pseudo mask); "cai" is CAIConfig() as it is now.
VARIANT_BASE = {"mode": "normal", "mode_weights": None, "refine_mask": False, "augment": False, "mask_rule": "luma",
                "scale_reference": "long"}
CAI_MODIFIERS = {"refine": {"refine_mask": True}, "noborder": {"border": "exclude"}, "aug": {"augment": True},
                 "chmask": {"mask_rule": "channel"}, "luma": {"mask_rule": "luma"},
                 "gain2": {"gain": (1.0, 2.0)}, "gain3": {"gain": (1.0, 3.0)}, "x2": {"gain": (2.0, 2.0)},
                 "halo2": {"halo": 2}, "halo5": {"halo": 5},
                 "classbal": {"draw": "class"}, "rel": {"mode": "relative"},
                 "npmix": {"mode": "normal+paste", "mode_weights": (1.0, 1.0)},  # the fourth round's: uniform
                 "paste": {"mode": "paste"}, "normal": {"mode": "normal"}, "nmpmix": {"mode": "normal+mixed+paste"},
                 "noaug": {"augment": False}, "flips": {"augment": True, "augment_group": "flips"},
                 "att100": {"max_attempts": 100}, "along": {"scale_reference": "along"}, "long": {"scale_reference": "long"},
                 "geo": {"scale_reference": "mean"},
                 # the share of paste in the Normal/paste mixture (tenth round): 1 of 2 (the default of the
                 # eighth to tenth rounds), 3 of 4 (the default since the eleventh), 9 of 10
                 "paste50": {"mode": "normal+paste", "mode_weights": (1.0, 1.0)},
                 "paste75": {"mode": "normal+paste", "mode_weights": (1.0, 3.0)},
                 "paste90": {"mode": "normal+paste", "mode_weights": (1.0, 9.0)}}
_CAI_MIXES = {"cai-622": (6, 2, 2), "cai-262": (2, 6, 2), "cai-226": (2, 2, 6), "cai-433": (4, 3, 3)}
# Scale mixes as modifiers, so Table 4 can run on any settings: "cai+q622" is the default with 6/2/2.
CAI_MODIFIERS.update({f"q{name[4:]}": {"quota": mix} for name, mix in _CAI_MIXES.items()})

# A mixture modifier, last of a CAI name: "+nsan25" makes 25 % of the slots by NSA Normal, "+nsam50" half by
# NSA Mixed (thirteenth round); "+nsanv25" keeps only NSA patches that stand out from the texture, the
# other slots CAI's; "+nsanvs25" also draws small patches (NSA_SMALL_HALF_WIDTH; fourteenth round);
# "+nsanus25" keeps only patches unlike any other window of the part, "+nsands25" only a first patch far
# unlike every one, "+nsanis25" only such a patch inside the foreground (sixteenth round). The share is a whole percentage in 1-99.
_MIXTURE = re.compile(r"^nsa([nm])([vudi]?)(s?)(\d{1,2})$")
#: The gate letter of a mixture modifier -> its name in :data:`GATE_SETTINGS`.
_GATE_LETTERS = {"v": "stands_out", "u": "novel", "d": "distinct", "i": "distinct_inside"}
#: :class:`~cai.baselines.visible.VisibleOnly` settings of each gate. "distinct" judges only the first patch
#: drawn (a slot whose patch fails is CAI's, so the in-domain share adapts to the part) and asks for twice
#: the distance of the most isolated ordinary window: in "cai+nsands25" (seed 0, 8 normals) it keeps 28 of
#: grid's 28 NSA slots, 7 of steel's, 0-6 elsewhere (recipes/evaluate/diagnostics_round16).
#: "distinct_inside" also fails a patch whose window reaches outside the foreground (an object's outline).
GATE_SETTINGS = {"stands_out": {}, "novel": {"gate": "novel"},
                 "distinct": {"gate": "novel", "tries": 1, "quantile": 1.0, "factor": 2.0}}
GATE_SETTINGS["distinct_inside"] = {**GATE_SETTINGS["distinct"], "within_foreground": True}
#: What each gate keeps, in words (output cards).
GATE_DESCRIPTIONS = {
    "stands_out": "a patch that stands out from the image's own texture (up to 8 tries)",
    "novel": "a patch whose window is unlike every other window of the image (up to 8 tries)",
    "distinct": "the first patch only, when its window is more than twice as far from every other window "
                "of the image as the most isolated ordinary window",
}
GATE_DESCRIPTIONS["distinct_inside"] = GATE_DESCRIPTIONS["distinct"] + ", and lies inside the foreground"

#: NSA patch half-sides for the "s" mixtures, as shares of the image sides (NSA's own: 0.03-0.4). Patches
#: 6-20 % of the image side, so labels of about the size of CAI's (0.4-1.4 % of the image, median, on six
#: targets); NSA's own labels were 14 % of KolektorSDD's images, whose real defects are 0.5 %.
NSA_SMALL_HALF_WIDTH = (0.03, 0.1)


class Mixture(NamedTuple):
    """A mixture modifier parsed: which NSA, the share of slots, the gate (None or a key of
    :data:`GATE_SETTINGS`), small patches."""
    other: str
    share: float
    gate: str | None = None
    small: bool = False


def _mixture_modifier(modifier: str) -> Mixture | None:
    """The :class:`Mixture` of a mixture modifier, None for any other modifier."""
    found = _MIXTURE.match(modifier)
    if found is None or int(found.group(4)) == 0:
        return None
    return Mixture(f"nsa-{found.group(1)}", int(found.group(4)) / 100.0, _GATE_LETTERS.get(found.group(2)),
                   found.group(3) == "s")


def parse_synthesizer_name(full_name: str):
    """(base name, CAIConfig modifiers, mixture) of a synthesizer name; mixture is None or a
    :class:`Mixture` (a named tuple: "nsa-n" | "nsa-m", share in (0, 1), gate, small patches).

    Raises
    ------
    ValueError
        Unknown base or modifier, a modifier on a baseline, or a mixture modifier that is not last.
    """
    name, *modifiers = str(full_name).split("+")
    if name not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {name!r}; choose one of {', '.join(SYNTHESIZERS)}")
    if modifiers and not (name == "cai" or name.startswith("cai-")):
        raise ValueError(f"modifiers ({'+'.join(modifiers)}) apply to cai-* synthesizers only, not {name!r}")
    mixture = _mixture_modifier(modifiers[-1]) if modifiers else None
    if mixture is not None:
        modifiers = modifiers[:-1]
    unknown = [m for m in modifiers if m not in CAI_MODIFIERS]
    if any(_mixture_modifier(m) for m in unknown):
        raise ValueError("a mixture modifier (nsan<P>, nsam<P>, with v, u, d or i and/or s: nsanvs<P>) must come "
                         f"last, once, in {full_name!r}")
    if unknown:
        raise ValueError(f"unknown modifier(s) {unknown} in {full_name!r}; choose from {', '.join(CAI_MODIFIERS)}, "
                         "or last a mixture nsan<P> / nsam<P> (P % of the slots by NSA; nsanv<P>: only NSA "
                         "patches that stand out; nsanu<P>: only patches unlike the rest of the part; nsand<P>: "
                         "only a first patch far unlike it; nsani<P>: such a patch inside the foreground; nsans<P>: "
                         "small patches; nsanvs<P>: both)")
    return name, modifiers, mixture


def uses_normals(name: str) -> bool:
    """Whether synthesizer ``name`` draws from the target's other normal images (NSA, or a CAI name ending
    in an NSA mixture modifier)."""
    return name.startswith("nsa") or (name.startswith("cai") and _mixture_modifier(name.rsplit("+", 1)[-1]) is not None)


def _normals_arg(normals):
    if isinstance(normals, tuple) and len(normals) == 2 and callable(normals[0]):
        return {"normals": normals[0], "count": int(normals[1])}
    if callable(normals):
        raise ValueError("normals given as a callable needs its count: pass (load, count)")
    return {"normals": normals}


def make_synthesizer(name: str, *, bank: PatternBank | None = None, normals=None, texture_dir=None,
                     config: CAIConfig | None = None, per_image: int = 10):
    """Build a synthesizer by name.

    Parameters
    ----------
    name : str
        One of :data:`SYNTHESIZERS`: ``cai-n``, ``cai-m``, ``cai-paste`` (CAI with Normal / Mixed
        Poisson or plain paste), ``cai-no-stm`` (no scale matching), ``cai-no-ils`` (no injection
        location selection), ``cai-622``, ``cai-262``, ``cai-226``, ``cai-433`` (large/medium/small
        quota mixes), ``cutpaste``, ``cutpaste-scar``, ``nsa-n``, ``nsa-m`` (NSA Normal / Mixed),
        ``draem``, ``glass-las``. A CAI name takes ``+modifier`` suffixes from :data:`CAI_MODIFIERS`,
        applied in order after the variant's base settings (e.g. ``cai-paste+refine+aug``,
        ``cai+noborder``, ``cai+q622`` = the default with the 6/2/2 scale mix). A last modifier
        ``nsan<P>`` or ``nsam<P>`` (P a whole percentage, 1-99) makes P % of the slots, drawn per slot, by
        NSA Normal or Mixed instead (:class:`~cai.baselines.mixture.SlotMixture`; needs ``normals``):
        ``cai+nsan25``. ``nsanv<P>`` / ``nsamv<P>`` keep an NSA patch only when it stands out from
        the normal image's texture (:class:`~cai.baselines.visible.VisibleOnly`, 8 tries), ``nsanu<P>``
        only when its window is unlike every other window of the image (``gate="novel"``), ``nsand<P>``
        only when its first patch is far unlike every one, ``nsani<P>`` only such a patch inside the
        foreground (:data:`GATE_SETTINGS`); a slot with
        none keeps CAI's pseudo anomaly: ``cai+nsanv25``. An ``s`` after it draws small NSA patches
        (:data:`NSA_SMALL_HALF_WIDTH`): ``cai+nsanvs25``, ``cai+nsans25``.
    bank : PatternBank
        Required by the ``cai-*`` synthesizers.
    normals : sequence of (H, W[, 3]) uint8 ndarray, or (callable i -> ndarray, count)
        The target's normal images, indexed like ``normal_index``; required by ``nsa-*`` (>= 2).
    texture_dir : None, str, Path or sequence of them
        Extra texture folders for ``draem`` (added to the embedded default textures, see
        :func:`texture_set`).
    config : CAIConfig, optional
        CAI settings (default ``CAIConfig()``); ``cai-n/m/paste`` override its ``mode``, the mixes
        its ``quota``. The baselines take ``threshold`` (label and fidelity threshold; NSA's label)
        and ``max_attempts`` from it when given.
    per_image : int
        Results per normal image. For CAI the quota's proportions are spread over ``per_image``
        slots (largest remainder, ties to the larger scale): 4/3/3 and 6/2/2 etc. exactly at 10.

    Returns
    -------
    Synthesizer
        With ``synthesizer.name == name``.

    Raises
    ------
    ValueError
        Unknown name, or an input the synthesizer needs is missing or unusable.
    """
    full_name = name
    name, modifiers, mixture = parse_synthesizer_name(full_name)
    is_cai = name == "cai" or name.startswith("cai-")
    per_image = _check_positive_int(per_image, "per_image")
    if mixture is not None:
        main = make_synthesizer(full_name.rsplit("+", 1)[0], bank=bank, config=config, per_image=per_image)
        other = make_synthesizer(mixture.other, normals=normals, config=config, per_image=per_image)
        if mixture.small:
            other = dataclasses.replace(other, half_width=NSA_SMALL_HALF_WIDTH)
        if mixture.gate is not None:
            other = VisibleOnly(other, **GATE_SETTINGS[mixture.gate])
        return SlotMixture(main, other, mixture.share, variant=full_name,
                           keep_main_when_skipped=mixture.gate is not None)
    given = config is not None
    config = config if given else CAIConfig()
    if is_cai and name != "cai":
        config = dataclasses.replace(config, **VARIANT_BASE)
    for m in modifiers:
        # a modifier that sets the mode without a share gets that mode's default share
        config = dataclasses.replace(config, **{"mode_weights": None, **CAI_MODIFIERS[m]}
                                     if "mode" in CAI_MODIFIERS[m] else CAI_MODIFIERS[m])
    if is_cai:
        if bank is None:
            raise ValueError(f"{name} needs a PatternBank (bank=...) of anomaly patterns")
        quota = _scaled_quota(_CAI_MIXES.get(name, config.quota), per_image)
        if name == "cai":  # the default settings (CAIConfig()), whatever they are
            return CAIVariant(bank, dataclasses.replace(config, quota=quota), variant=full_name)
        if name in _CAI_MODES:  # measured with a uniform draw of their modes
            mode = _CAI_MODES[name]
            uniform = (1.0,) * len(mode.split("+")) if mode in DEFAULT_MODE_WEIGHTS else None
            config = dataclasses.replace(config, mode=mode, mode_weights=uniform, quota=quota)
            if not modifiers and name in ("cai-n", "cai-m", "cai-paste"):
                return CAISynthesizer(bank, config)
            return CAIVariant(bank, config, variant=full_name)
        return CAIVariant(bank, dataclasses.replace(config, quota=quota), variant=full_name,
                          scale_matching=name != "cai-no-stm",
                          location="anywhere" if name == "cai-no-ils" else "foreground")
    extra = {"max_attempts": config.max_attempts} if given else {}
    if name.startswith("cutpaste"):
        if given:
            extra["threshold"] = config.threshold
        return CutPasteSynthesizer(variant="rect" if name == "cutpaste" else "scar", per_image=per_image, **extra)
    if name.startswith("nsa"):
        if normals is None:
            raise ValueError(f"{name} needs the target's normal images (normals=[...] or (load, count))")
        if given:
            extra["threshold"] = config.threshold
        return NSASynthesizer(**_normals_arg(normals), mode="normal" if name == "nsa-n" else "mixed",
                              per_image=per_image, **extra)
    if given:
        extra["fidelity_threshold"] = config.threshold
    if name == "glass-las":
        return GLASSSynthesizer(texture_set(texture_dir), per_image=per_image, **extra)
    return DRAEMSynthesizer(texture_set(texture_dir), per_image=per_image, **extra)
