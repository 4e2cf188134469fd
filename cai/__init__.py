"""cai-hub: pseudo-anomaly training data from real defects of other domains (CAI, arXiv:2501.15211).

The public API, importable from ``cai`` (each name loads its module on first use, so ``import cai``
stays light)::

    from cai import CAIConfig, CAISynthesizer, load_anomaly_set, pattern_bank
    bank = pattern_bank(load_anomaly_set("path/or/hub-id"))
    synth = CAISynthesizer(bank, CAIConfig(mode="normal"))
    results = synth.synthesize(normal, foreground, normal_index=0, seed=0)  # PseudoAnomaly | Skipped

Layout: :mod:`cai.engine` holds the pure stages (numpy in, numpy out); the modules beside it are the
edges (image I/O, anomaly sets, targets, the run loop, outputs, hub); :mod:`cai.baselines`,
:mod:`cai.eval` and :mod:`cai.cdm` build on them.
"""
from __future__ import annotations

import importlib

# public name -> module that defines it
_API = {
    "CAIConfig": "cai.engine.config",
    "CAISynthesizer": "cai.engine.synthesizer",
    "PatternBank": "cai.engine.synthesizer",
    "PseudoAnomaly": "cai.engine.synthesizer",
    "Skipped": "cai.engine.synthesizer",
    "Synthesizer": "cai.engine.synthesizer",
    "poisson_blend": "cai.engine.poisson",
    "inject_pattern": "cai.engine.inject",
    "pseudo_mask": "cai.engine.pseudo_mask",
    "select_center": "cai.engine.location",
    "scale_transfer_ratio": "cai.engine.scale",
    "foreground_all": "cai.engine.foreground",
    "foreground_threshold": "cai.engine.foreground",
    "make_foreground": "cai.foreground",
    "load_anomaly_set": "cai.anomaly_set",
    "prepare_patterns": "cai.anomaly_set",
    "pattern_bank": "cai.anomaly_set",
    "load_target": "cai.targets",
    "load_rgb": "cai.imageio",
    "BuildOptions": "cai.build",
    "build_synthetic": "cai.build",
    "make_synthesizer": "cai.baselines",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cai' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
