"""The DAAD build recipe (YAML): sources, their layouts, licences and policies, validated."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


from . import border as border_mod
from . import qa as qa_mod
from . import refine as refine_mod
from .records import SOURCE_KINDS


class BuildError(RuntimeError):
    """The DAAD build cannot go on (bad recipe, an output folder holding another run, ...)."""


# ---------------------------------------------------------------------------------------------
# recipe


@dataclass
class SourceSpec:
    """One ``sources:`` entry of a recipe.

    Attributes
    ----------
    layout : str
        Importer layout (a key of ``cai.layouts.IMPORTERS``).
    root : str
        Source folder as written in the recipe (relative to the recipe file, or absolute).
    options : dict
        Keyword options for the importer.
    source, license, source_kind, source_domain : str or None
        Override the importer's value on every record (applied before the taxonomy, so the taxonomy
        and the row ids see the overridden source name).
    split_components : bool or None
        Per-source override of the recipe's ``split_components``.
    optional : bool
        A missing root is skipped (and reported) instead of failing the build.
    border : {"keep", "trim", "exclude"} or None
        Per-source override of the recipe's ``border`` policy (:mod:`daad_tools.border`).
    """

    layout: str
    root: str
    options: dict = field(default_factory=dict)
    source: str | None = None
    license: str | None = None
    source_kind: str | None = None
    source_domain: str | None = None
    split_components: bool | None = None
    optional: bool = False
    border: str | None = None
    resolved_root: str = ""


@dataclass
class Recipe:
    """A parsed DAAD recipe (see ``recipes/daad/daad.yaml`` for every key, with comments).

    Attributes
    ----------
    sources : list of SourceSpec
        In priority order: the duplicate keep rule prefers earlier sources.
    name : str
        Pretty name on the card.
    shard_size : int
        Published rows per parquet shard.
    split_components : bool
        One row per connected component of each mask (CAI injects one pattern per pseudo anomaly).
    min_component_area : int
        With ``split_components``, components smaller than this many pixels get no row (counted).
    unmapped : str
        ``"error"`` (a label the taxonomy does not know stops the build) or ``"skip"`` (counted).
    exclude_licenses : tuple of str
        Records under these licences are left out before QA (case-insensitive).
    taxonomy : dict
        ``path`` (a taxonomy file, relative to the recipe; None = the default) and ``overrides``.
    qa : QAConfig
    border : {"keep", "trim", "exclude"}
        Default border policy of the sources (:mod:`daad_tools.border`).
    border_trim : int
        Pixels the ``trim`` policy cuts back from the image border.
    refine : RefineConfig
        The ``coarse_mask`` flag and refined masks (:mod:`daad_tools.refine`).
    path, text : the recipe file and its text (the card quotes it).
    """

    sources: list
    name: str = "DAAD"
    shard_size: int = 200
    split_components: bool = False
    min_component_area: int = 16
    unmapped: str = "error"
    exclude_licenses: tuple = ()
    taxonomy: dict = field(default_factory=dict)
    qa: qa_mod.QAConfig = field(default_factory=qa_mod.QAConfig)
    border: str = "keep"
    border_trim: int = 4
    refine: refine_mod.RefineConfig = field(default_factory=refine_mod.RefineConfig)
    path: str = ""
    text: str = ""


_RECIPE_KEYS = {"name", "shard_size", "split_components", "min_component_area", "unmapped", "exclude_licenses",
                "taxonomy", "qa", "sources", "border", "border_trim", "refine"}
_SOURCE_KEYS = {"layout", "root", "options", "source", "license", "source_kind", "source_domain",
                "split_components", "optional", "border"}


def _resolve(base: Path, value: str) -> str:
    path = Path(os.path.expanduser(str(value)))
    return str((path if path.is_absolute() else base / path).resolve())


def load_recipe(path, unmapped: str | None = None, exclude_licenses=()) -> Recipe:
    """Read and check a YAML recipe.

    Parameters
    ----------
    path : str or Path
        The recipe file.
    unmapped : {"error", "skip"}, optional
        Overrides the recipe's ``unmapped``.
    exclude_licenses : iterable of str
        Added to the recipe's ``exclude_licenses``.

    Raises
    ------
    BuildError
        Unreadable YAML, unknown keys, bad values.
    """
    path = Path(path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"cannot read recipe {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BuildError(f"recipe {path} must be a mapping at the top level")
    unknown = sorted(set(data) - _RECIPE_KEYS)
    if unknown:
        raise BuildError(f"recipe {path}: unknown key(s) {unknown}; known: {sorted(_RECIPE_KEYS)}")
    base = path.resolve().parent
    sources = []
    for i, entry in enumerate(data.get("sources") or []):
        if not isinstance(entry, dict) or "layout" not in entry or "root" not in entry:
            raise BuildError(f"recipe {path}: sources[{i}] needs at least 'layout' and 'root'")
        bad = sorted(set(entry) - _SOURCE_KEYS)
        if bad:
            raise BuildError(f"recipe {path}: sources[{i}] has unknown key(s) {bad}; known: {sorted(_SOURCE_KEYS)}")
        if entry.get("source_kind") is not None and entry["source_kind"] not in SOURCE_KINDS:
            raise BuildError(f"recipe {path}: sources[{i}].source_kind must be one of {SOURCE_KINDS}")
        if entry.get("border") is not None and entry["border"] not in border_mod.POLICIES:
            raise BuildError(f"recipe {path}: sources[{i}].border must be one of {border_mod.POLICIES}")
        spec = SourceSpec(**{k: v for k, v in entry.items()})
        spec.options = dict(spec.options or {})
        spec.resolved_root = _resolve(base, spec.root)
        sources.append(spec)
    if not sources:
        raise BuildError(f"recipe {path} lists no sources")
    unmapped = unmapped or data.get("unmapped", "error")
    if unmapped not in ("error", "skip"):
        raise BuildError(f"unmapped must be 'error' or 'skip', got {unmapped!r}")
    taxonomy = dict(data.get("taxonomy") or {})
    bad = sorted(set(taxonomy) - {"path", "overrides"})
    if bad:
        raise BuildError(f"recipe {path}: taxonomy has unknown key(s) {bad}; known: ['overrides', 'path']")
    if taxonomy.get("path"):
        paths = taxonomy["path"] if isinstance(taxonomy["path"], list) else [taxonomy["path"]]
        taxonomy["path"] = [_resolve(base, p) for p in paths]
    overrides = taxonomy.get("overrides") or {}
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and "/" in k for k in overrides):
        raise BuildError(f"recipe {path}: taxonomy.overrides must map row ids or <source>/<original_file> "
                         "to a class, e.g. {'mvtec_ad/carpet/test/color/000.png': stain}")
    taxonomy["overrides"] = dict(overrides)
    try:
        qa_config = qa_mod.QAConfig.from_dict(data.get("qa"))
        refine_config = refine_mod.RefineConfig.from_dict(data.get("refine"))
        border = border_mod.check_policy(data.get("border", "keep"), "border")
        border_trim = int(data.get("border_trim", 4))
        if border_trim < 1:
            raise ValueError(f"border_trim must be >= 1 px, got {border_trim}")
        shard_size = int(data.get("shard_size", 200))
        min_component_area = int(data.get("min_component_area", 16))
    except (TypeError, ValueError) as exc:
        raise BuildError(f"recipe {path}: {exc}") from exc
    if shard_size < 1 or min_component_area < 1:
        raise BuildError(f"recipe {path}: shard_size and min_component_area must be >= 1")
    excluded = tuple(dict.fromkeys([*(data.get("exclude_licenses") or []), *exclude_licenses]))
    return Recipe(sources=sources, name=str(data.get("name", "DAAD")), shard_size=shard_size,
                  split_components=bool(data.get("split_components", False)),
                  min_component_area=min_component_area, unmapped=unmapped, exclude_licenses=excluded,
                  taxonomy=taxonomy, qa=qa_config, border=border, border_trim=border_trim, refine=refine_config,
                  path=str(path), text=text)
