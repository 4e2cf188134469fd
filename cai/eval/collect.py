"""Pool the outputs of several ``cai-hub evaluate`` runs by target, for tables and comparisons.

Each run folder holds ``results.json`` (metrics per synthesizer, mean ± std over seeds, FD) and
``per_image/<synth>__seed<k>.npz`` (per-image score histograms of the real test set, see
:mod:`cai.eval.bootstrap`). Runs on the same target must have scored the same test images; a
synthesizer found in several runs is taken from the last one given.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bootstrap import ap_from_histograms, load_histograms, paired_bootstrap


@dataclass
class SynthRuns:
    """One synthesizer on one target: ``summary`` and ``fd`` from results.json (None for a run still
    going), ``seeds`` seed -> (pos, neg) histograms, ``images`` the test images' names."""

    summary: dict | None = None
    fd: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    run: str = ""

    @property
    def pixel_ap(self) -> float:
        """Mean over seeds of the pixel AP from the histograms (within 0.1 points of the exact AP)."""
        return float(np.mean([ap_from_histograms(p.sum(0), n.sum(0)) for p, n in self.seeds.values()]))


def target_name(folder: Path) -> str:
    """The MVTec category (``grid``) or the target kind (``ksdd``), from results.json, else the folder
    name's last part. A ``folder`` target is named after the folder holding both its normals and its
    test set (``runs/bsdata`` for ``runs/bsdata/normals`` + ``runs/bsdata/test``), else its normals'
    folder, so two folder targets are never pooled."""
    path = Path(folder) / "results.json"
    if path.is_file():
        t = json.loads(path.read_text())["target"]
        if t.get("kind") == "folder":
            common = Path(os.path.commonpath([t["root"], t["test_root"]])) if t.get("root") and t.get("test_root") \
                else Path("/")
            return common.name or t["name"]
        return t.get("category") or t.get("kind") or t["name"]
    return Path(folder).name.rsplit("_", 1)[-1]


ON_THE_FLY_TAG = "@otf"


def split_tag(spec) -> tuple[Path, str]:
    """``"runs/x@daad"`` -> (``runs/x``, ``"@daad"``) when ``runs/x@daad`` is not itself a folder; else (spec, "")."""
    path = Path(spec)
    folder, sep, tag = str(spec).rpartition("@")
    if path.is_dir() or not sep or not folder or not tag or "/" in tag:
        return path, ""
    return Path(folder), "@" + tag


def load_runs(folders) -> dict[str, dict[str, SynthRuns]]:
    """target -> synthesizer -> :class:`SynthRuns`, pooled over ``folders``. The synthesizers of a run
    made with ``--on-the-fly`` (its results.json says so) are named ``<synth>@otf``; a folder given as
    ``FOLDER@TAG`` names its synthesizers ``<synth>@TAG`` (e.g. the same synthesizer run on another
    anomaly set). A name found in several folders of one target is taken from the last one given."""
    targets: dict[str, dict[str, SynthRuns]] = {}
    for spec in folders:
        folder, tag = split_tag(spec)
        name = target_name(folder)
        results = json.loads((folder / "results.json").read_text()) if (folder / "results.json").is_file() else None
        found: dict[str, SynthRuns] = {}
        for f in sorted((folder / "per_image").glob("*.npz")):
            m = re.fullmatch(r"(.+)__seed(\d+)\.npz", f.name)
            if not m:
                continue
            pos, neg, images = load_histograms(f)
            entry = found.setdefault(m.group(1), SynthRuns(images=images, run=str(folder)))
            if entry.images != images:
                raise ValueError(f"{f}: test images differ from the other seeds of {m.group(1)}")
            entry.seeds[int(m.group(2))] = (pos, neg)
        for synth, entry in found.items():
            if results and synth in results["synthesizers"]:
                r = results["synthesizers"][synth]
                entry.summary, entry.fd = r["summary"], r.get("fd", {})
            pooled = targets.setdefault(name, {})
            other = next(iter(pooled.values()), None)
            if other is not None and other.images != entry.images:
                raise ValueError(f"{folder}: scored other test images than the earlier runs on {name}")
            pooled[(synth + ON_THE_FLY_TAG if results and results.get("on_the_fly") else synth) + tag] = entry
    return targets


def rename_synthesizers(targets: dict, specs) -> None:
    """Apply ``"NAME=AS"`` renames in order, on every target of :func:`load_runs`' result (the same
    settings run under another name, e.g. ``cai+paste75=cai`` once they became the default), or only on one
    target with ``"TARGET:NAME=AS"`` (runs made under different defaults). ValueError for a malformed spec,
    an unknown target or a name the target already has."""
    for spec in specs:
        name, sep, alias = spec.partition("=")
        only, colon, name = name.rpartition(":")
        if not sep or not name or not alias or (colon and not only):
            raise ValueError(f"--alias expects NAME=AS or TARGET:NAME=AS, got {spec!r}")
        if colon and only not in targets:
            raise ValueError(f"--alias {spec}: no target {only!r} among {sorted(targets)}")
        for target, synths in targets.items():
            if colon and target != only:
                continue
            if name in synths:
                if alias in synths:
                    raise ValueError(f"--alias {spec}: {target} already has a synthesizer named {alias}")
                synths[alias] = synths.pop(name)


def fill_fd(targets: dict, specs) -> None:
    """Fill FD-Lite0 values a run did not record (e.g. an interrupted run) from JSON files written by
    ``recipes/evaluate/authenticity.py``; ``specs`` are ``"TARGET=FILE"`` strings. Values already in a
    results.json are kept."""
    for spec in specs or ():
        target, _, path = spec.partition("=")
        if not path:
            raise ValueError(f"expected TARGET=FILE, got {spec!r}")
        for synth, value in json.loads(Path(path).read_text()).items():
            entry = targets.get(target, {}).get(synth)
            if entry is not None and "lite0" not in entry.fd:
                entry.fd = {**entry.fd, "lite0": float(value), "source": Path(path).name}


def matched_seeds(a: SynthRuns, b: SynthRuns) -> tuple[list, list]:
    """``a``'s and ``b``'s (pos, neg) histograms of their common seeds, in seed order."""
    seeds = sorted(set(a.seeds) & set(b.seeds))
    if not seeds:
        raise ValueError("no common seed to pair")
    return [a.seeds[s] for s in seeds], [b.seeds[s] for s in seeds]


def compare(a: SynthRuns, b: SynthRuns, n_boot: int = 2000, clusters=None, resample_seeds: bool = False) -> dict:
    """Paired bootstrap of pixel AP, ``a`` minus ``b``, over their common seeds; ``clusters`` (one label
    per test image, e.g. from :func:`cluster_labels`) resamples whole clusters, ``resample_seeds`` the
    paired seeds too (:func:`~cai.eval.bootstrap.paired_bootstrap`)."""
    return paired_bootstrap(*matched_seeds(a, b), n_boot=n_boot, clusters=clusters, resample_seeds=resample_seeds)


def cluster_labels(images, pattern: str) -> list[str]:
    r"""One cluster label per test image name: the first group of ``pattern``'s first match in the name
    (the whole match if it has no group); a name it does not match is a cluster of its own.

    >>> cluster_labels(["a/01_2009_305000_090_w0.png", "b/01_2010_305000_090_w0.png", "c.png"],
    ...                r"_(\d+_\d{3}_w\d)")
    ['305000_090_w0', '305000_090_w0', 'c.png']
    """
    regex = re.compile(pattern)
    labels = []
    for name in images:
        m = regex.search(str(name))
        labels.append(str(name) if m is None else (m.group(1) if regex.groups else m.group(0)))
    return labels


def clusters_by_target(targets: dict, specs) -> dict[str, list[str]]:
    r"""``{target: cluster labels of its test images}`` from ``"TARGET=REGEX"`` specs (the recipes'
    ``--cluster``): the runs of one target scored the same test images (:func:`load_runs` checks), so
    each target is labelled once with :func:`cluster_labels`.

    Raises
    ------
    ValueError
        A spec without ``=`` or regex, or naming a target that is not among ``targets``.
    """
    out = {}
    for spec in specs:
        target, sep, pattern = str(spec).partition("=")
        if not sep or not pattern or target not in targets:
            raise ValueError(f"--cluster {spec!r}: expects TARGET=REGEX with TARGET among the runs ({sorted(targets)})")
        out[target] = cluster_labels(next(iter(targets[target].values())).images, pattern)
    return out


__all__ = ["SynthRuns", "load_runs", "compare", "cluster_labels", "clusters_by_target", "matched_seeds", "fill_fd",
           "target_name"]
