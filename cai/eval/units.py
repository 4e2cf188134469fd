"""One evaluation run per (synthesizer, seed), kept on disk as it finishes, and run in worker processes.

A run's result is a dict of JSON values (``run``: its metrics and timings, ``history``: the training log,
``fd``) and numpy arrays (``pos`` / ``neg``: per-image score histograms; for the first seed also
``curve_pr`` / ``curve_pro`` (2, n) float64, ``example_maps`` (H, W) float32 anomaly maps and ``pseudo``
(image (H, W, 3) uint8, mask (H, W) bool) pairs). :func:`save_unit` writes it atomically to
``<folder>/<synth>__seed<seed>.npz`` with the fingerprint of everything its numbers depend on;
:func:`load_unit` gives it back only when that fingerprint matches, so an interrupted evaluation reruns
only the runs it had not finished, and a changed option reruns them all.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from cai.atomic import atomic_path

FORMAT = 1
_JSON_KEYS = ("run", "history", "fd")


def fingerprint(values: dict) -> str:
    """SHA-1 of ``values`` as sorted JSON (what a run's numbers depend on)."""
    return hashlib.sha1(json.dumps({"format": FORMAT, **values}, sort_keys=True, default=str).encode()).hexdigest()


def unit_path(folder, synth: str, seed: int) -> Path:
    return Path(folder) / f"{synth}__seed{int(seed)}.npz"


def save_unit(folder, synth: str, seed: int, result: dict, key: str) -> Path:
    """Write one run's ``result`` (see the module docstring) under ``key`` (its :func:`fingerprint`)."""
    path = unit_path(folder, synth, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"meta": np.asarray(json.dumps({"key": key, **{k: result[k] for k in _JSON_KEYS if k in result}}))}
    arrays["pos"], arrays["neg"] = np.asarray(result["pos"], np.int64), np.asarray(result["neg"], np.int64)
    if "curve_pr" in result:
        arrays["curve_pr"], arrays["curve_pro"] = np.asarray(result["curve_pr"]), np.asarray(result["curve_pro"])
        for i, m in enumerate(result["example_maps"]):
            arrays[f"example_map_{i}"] = np.asarray(m, np.float32)
        for i, (image, mask) in enumerate(result["pseudo"]):
            arrays[f"pseudo_image_{i}"], arrays[f"pseudo_mask_{i}"] = np.asarray(image), np.asarray(mask, bool)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def load_unit(folder, synth: str, seed: int, key: str, needs_extras: bool) -> dict | None:
    """The saved result of (``synth``, ``seed``), or None when there is none, it was made under another
    fingerprint, it lacks the first seed's curves and examples while ``needs_extras``, or it cannot be read."""
    path = unit_path(folder, synth, seed)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("key") != key or (needs_extras and "curve_pr" not in f.files):
                return None
            result = {k: meta[k] for k in _JSON_KEYS if k in meta}
            result["pos"], result["neg"] = f["pos"], f["neg"]
            if "curve_pr" in f.files:
                result["curve_pr"], result["curve_pro"] = f["curve_pr"], f["curve_pro"]
                n_maps = sum(name.startswith("example_map_") for name in f.files)
                n_pseudo = sum(name.startswith("pseudo_image_") for name in f.files)
                result["example_maps"] = [f[f"example_map_{i}"] for i in range(n_maps)]
                result["pseudo"] = [(f[f"pseudo_image_{i}"], f[f"pseudo_mask_{i}"]) for i in range(n_pseudo)]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # a damaged file: the run is made again
    return result


__all__ = ["fingerprint", "unit_path", "save_unit", "load_unit"]
