"""The one output-folder policy of every cai-hub command that writes a folder.

A folder is *ours* only when it holds our manifest, ``.cai-hub-manifest.json``: the command that
made it (``kind``) and the relative path of every file we wrote, added (atomically) before or as
each file is produced. Hence:

* an existing folder that is not empty and holds no manifest is refused, ``--overwrite`` or not
  (it is someone's folder: nothing in it is touched);
* the current folder, an input folder, a folder inside an input or a parent of an input are refused
  as ``--out`` (a rerun would read its own outputs, or ``--overwrite`` would reach the inputs);
* ``--overwrite`` removes exactly the files the manifest lists (and folders left empty by that), never
  a file the manifest does not name, and never a whole tree;
* a hub push uploads exactly the manifest's files (:meth:`OutputFolder.publishable`).

Folders written before manifests existed are adopted when they hold the command's marker file
(e.g. ``.cai/run.json``) and nothing but the names that command writes.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic

MANIFEST = ".cai-hub-manifest.json"
MANIFEST_VERSION = 1
LABELS = {"build-synthetic": "build-synthetic run", "daad-build": "DAAD build", "cdm-generate": "cdm generate run",
          "cdm-train": "cdm train run", "evaluate": "evaluate run"}


class OutputFolderError(ValueError):
    """The output folder cannot be used (someone's folder, an input, the current folder...)."""


@dataclass
class OutputFolder:
    """A claimed output folder: ``root`` and the files our manifest lists (relative POSIX paths).

    Use :func:`claim` to get one; :meth:`add` before (or right after) writing each file.
    """

    root: Path
    kind: str
    files: set = field(default_factory=set)
    resumed: bool = False

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def _rel(self, path) -> str:
        try:
            rel = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = ""
        if rel in ("", "."):
            raise OutputFolderError(f"{path} is not a file inside the output folder {self.root}")
        return rel

    def _save(self) -> None:
        atomic.write_json(self.manifest_path, {"kind": self.kind, "version": MANIFEST_VERSION,
                                               "files": sorted(self.files)})

    def add(self, *paths) -> None:
        """List ``paths`` (absolute, or relative to the current folder, inside ``root``) as ours and
        save the manifest atomically. Call it before writing a file (a file listed but not written is
        harmless: removal skips it)."""
        new = {self._rel(p) for p in paths} - self.files
        if new:
            self.files |= new
            self._save()

    def add_tree(self, folder) -> None:
        """List every file now under ``folder`` (written by a third-party writer, e.g.
        ``save_to_disk`` or an accelerate checkpoint) as ours."""
        folder = Path(folder)
        if folder.is_dir():
            self.add(*(p for p in sorted(folder.rglob("*")) if p.is_file()))

    def remove_under(self, prefix: str) -> int:
        """Delete the listed files under the relative folder ``prefix`` (e.g. an old checkpoint), then
        its sub-folders left empty; unlisted files stay. Returns how many files were deleted."""
        prefix = prefix.rstrip("/") + "/"
        listed = sorted(r for r in self.files if r.startswith(prefix))
        for rel in listed:
            (self.root / rel).unlink(missing_ok=True)
        self.files -= set(listed)
        self._save()
        base = self.root / prefix
        if base.is_dir():
            for sub in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [base]:
                try:
                    sub.rmdir()
                except OSError:
                    pass
        return len(listed)

    def path(self, rel: str) -> Path:
        """``root / rel``, listed as ours first (write it next)."""
        target = self.root / rel
        self.add(target)
        return target

    def remove_listed(self, keep=()) -> int:
        """Delete the files our manifest lists (not ``keep`` names and what is under them), then the
        folders this left empty; return how many files were deleted. Unlisted files are never touched."""
        removed, parents = 0, set()
        for rel in sorted(self.files):
            if rel.split("/")[0] in keep:
                continue
            target = self.root / rel
            if target.is_file() or target.is_symlink():
                target.unlink()
                removed += 1
            parent = Path(rel).parent
            while str(parent) not in ("", "."):
                parents.add(parent)
                parent = parent.parent
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            try:
                (self.root / parent).rmdir()  # only when empty
            except OSError:
                pass
        self.files = {rel for rel in self.files if rel.split("/")[0] in keep}
        self._save()
        return removed

    def publishable(self, patterns) -> list[str]:
        """The manifest's files (relative paths) matching any of the glob ``patterns``, that exist."""
        return sorted(rel for rel in self.files
                      if any(fnmatch.fnmatch(rel, p) for p in patterns) and (self.root / rel).is_file())


def _is_within(inner: Path, outer: Path) -> bool:
    try:
        inner.relative_to(outer)
        return True
    except ValueError:
        return False


def check_not_input(out, inputs=(), option: str = "--out", nested_ok=()) -> Path:
    """Refuse ``out`` when it is the current folder, an input, inside one or a parent of one.

    ``inputs`` maps an option name to a local path (``{"--root": "data/x"}``); entries that are not
    existing local paths (hub ids, None) are ignored. ``nested_ok`` names inputs whose reader never
    reaches a sub-folder like ``out`` (e.g. the MVTec root, read only under CATEGORY/train/good).
    Returns ``out`` resolved.
    """
    resolved = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or _is_within(cwd, resolved):
        what = "the current folder" if resolved == cwd else "a parent of the current folder"
        raise OutputFolderError(f"{option} {out}: is {what}; give a new sub-folder, e.g. {option} out/run "
                                "(nothing was changed)")
    for name, value in dict(inputs).items():
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            continue
        path = path.resolve()
        if path.is_file():
            path = path.parent if resolved == path.parent or _is_within(path, resolved) else path
        if resolved == path:
            problem = f"is the {name} input itself"
        elif _is_within(path, resolved):
            problem = f"holds the {name} input"
        elif _is_within(resolved, path) and name not in nested_ok:
            problem = f"is inside the {name} input (a rerun would read its own outputs)"
        else:
            continue
        raise OutputFolderError(f"{option} {out}: {problem}; give a separate folder, e.g. {option} out/run "
                                "(nothing was changed)")
    return resolved


def claim(out, kind: str, inputs=(), overwrite: bool = False, option: str = "--out", keep=(),
          legacy_marker: str | None = None, legacy_names=(), nested_ok=(), write: bool = True) -> OutputFolder:
    """Claim ``out`` for a ``kind`` command (e.g. ``"build-synthetic"``) after the policy checks.

    Parameters
    ----------
    out : str or Path
        The output folder; created when missing.
    kind : str
        The command writing it; a folder made by another command is refused.
    inputs : dict of str -> path
        Input options and their values; ``nested_ok`` as in :func:`check_not_input`.
    overwrite : bool
        Delete the files our manifest lists first (nothing else).
    option : str
        The option naming the folder, for messages.
    keep : iterable of str
        Top-level names that are never ours and never in the way (a reviewer's files in a DAAD build).
    legacy_marker, legacy_names
        Adopt a folder from before manifests: it holds ``legacy_marker`` and only ``legacy_names``
        (glob patterns, and ``keep``) at its top level; every file under those names is listed as ours.
    write : bool
        False: only check (another process of the same run writes the manifest).

    Returns
    -------
    OutputFolder
        ``resumed`` is True when the folder already held our output (so the caller checks its own
        fingerprint to resume or refuse).

    Raises
    ------
    OutputFolderError
        With a one-line message naming ``option``; nothing has been changed.
    """
    check_not_input(out, inputs, option, nested_ok)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise OutputFolderError(f"{option} {out}: is a file; give a folder (nothing was changed)")
    keep = tuple(keep)
    entries = sorted(p for p in root.iterdir() if p.name not in keep) if root.is_dir() else []
    manifest = root / MANIFEST
    folder = OutputFolder(root=root, kind=kind)
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            folder.files = set(data["files"])
            found_kind = data["kind"]
        except (ValueError, KeyError, TypeError):
            raise OutputFolderError(f"{option} {out}: its {MANIFEST} is unreadable; choose another {option} "
                                    "(nothing was changed)") from None
        if found_kind != kind:
            raise OutputFolderError(f"{option} {out}: holds a {LABELS.get(found_kind, found_kind)}, not a "
                                    f"{LABELS.get(kind, kind)}; choose "
                                    f"another {option} (nothing was changed)")
        folder.resumed = True
    elif entries:
        names = {p.name for p in entries}
        legacy = all(any(fnmatch.fnmatch(n, pattern) for pattern in legacy_names) for n in names)
        if legacy_marker and (root / legacy_marker).is_file() and legacy:
            for p in entries:
                folder.files |= ({q.relative_to(root).as_posix() for q in p.rglob("*") if q.is_file()}
                                 if p.is_dir() else {p.name})
            folder.resumed = True
        else:
            shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
            label = LABELS.get(kind, kind)
            if overwrite:
                raise OutputFolderError(
                    f"{option} {out}: holds files a {label} does not write ({shown}); not deleting them with "
                    "--overwrite: choose a new or empty folder (nothing was changed)")
            raise OutputFolderError(f"{option} {out}: is not empty ({shown}) and holds no {label} (no {MANIFEST}); "
                                    "choose a new or empty folder (nothing was changed)")
    if not write:
        return folder
    root.mkdir(parents=True, exist_ok=True)
    if overwrite and folder.files:
        folder.remove_listed(keep=keep)
        folder.resumed = False
    folder._save()
    return folder


def public_name(spec) -> str | None:
    """How an input is named in anything published: a hub id as given, a local path by its folder
    (or file) name only, never the local path."""
    if spec is None:
        return None
    spec = str(spec)
    path = Path(spec)
    if not path.exists() and looks_like_hub_id(spec):
        return spec
    return path.resolve().name if path.exists() else path.name


def looks_like_hub_id(spec: str) -> bool:
    """True for ``org/name`` (one slash, no leading ``.``, ``/`` or ``~``, no ``..``)."""
    import re
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", spec or "")) and ".." not in spec
