"""`daad push`: upload a built DAAD folder to a hub dataset repo, optionally without some licences."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .card import render_card
from .folder import read_columns
from .recipe import BuildError
from .shards import link_or_copy

UPLOAD_PATTERNS = ["data/*.parquet", "README.md", "qa_report.json", "qa_report.md", "mosaics/*.png"]


class PublishError(RuntimeError):
    """The folder cannot be pushed (not a DAAD build, not logged in, nothing left after the filter)."""


def stage_folder(folder, dest, exclude_licenses=(), load_id: str | None = None) -> dict:
    """Write what a push uploads into ``dest``: the shards (hard links, or a licence-filtered copy),
    the QA reports, and a card rendered for ``load_id`` (e.g. the repo id).

    Returns
    -------
    dict
        ``rows_in``, ``rows_out``, ``removed`` (licence -> rows).
    """
    folder, dest = Path(folder), Path(dest)
    if exclude_licenses:
        return filter_licenses(folder, dest, exclude_licenses, load_id=load_id)
    files = sorted((folder / "data").glob("train-*.parquet"))
    if not files:
        raise PublishError(f"{folder} has no data/train-*.parquet shards (not a built DAAD folder?)")
    (dest / "data").mkdir(parents=True, exist_ok=True)
    for f in files:
        link_or_copy(f, dest / "data" / f.name)
    for name in ("qa_report.json", "qa_report.md"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    render_card(dest, _report(dest), load_id=load_id or folder.name)
    rows = read_columns(dest, ["id"]).num_rows
    return {"rows_in": rows, "rows_out": rows, "removed": {}}


def _report(folder: Path) -> dict:
    if (folder / "qa_report.json").is_file():
        return json.loads((folder / "qa_report.json").read_text())
    return {"recipe": {"name": "DAAD", "text": ""}, "rows": 0, "published": 0, "rejected": 0, "flags": {},
            "rejected_by_reason": {}, "config": {"reject": [], "near_duplicate_distance": 0},
            "unmapped_policy": "unknown", "exclude_licenses": []}


def filter_licenses(folder, dest, exclude_licenses, load_id: str | None = None) -> dict:
    """Copy a DAAD folder to ``dest`` without the rows under ``exclude_licenses`` (case-insensitive).

    The shards are rewritten (same schema and metadata, empty ones dropped, renumbered), the QA
    reports copied as they are and the card re-rendered with the new counts and a note on the filter.

    Returns
    -------
    dict
        ``rows_in``, ``rows_out``, ``removed`` (licence -> rows).

    Raises
    ------
    PublishError
        When no row is left.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, dest = Path(folder), Path(dest)
    excluded = sorted({str(x).strip() for x in exclude_licenses})
    keys = {x.casefold() for x in excluded}
    files = sorted((folder / "data").glob("train-*.parquet"))
    if not files:
        raise PublishError(f"{folder} has no data/train-*.parquet shards (not a built DAAD folder?)")
    (dest / "data").mkdir(parents=True, exist_ok=True)
    kept_tables, removed, rows_in = [], {}, 0
    for f in files:
        table = pq.read_table(f)
        rows_in += table.num_rows
        lic = [str(x).strip().casefold() for x in table.column("license").to_pylist()]
        keep = [x not in keys for x in lic]
        for x, k, orig in zip(lic, keep, table.column("license").to_pylist()):
            if not k:
                removed[orig] = removed.get(orig, 0) + 1
        table = table.filter(pa.array(keep, pa.bool_()))  # schema (with the datasets features metadata) is kept
        if table.num_rows:
            kept_tables.append(table)
    if not kept_tables:
        raise PublishError(f"no row of {folder} is left after excluding licences {excluded}")
    for i, table in enumerate(kept_tables):
        pq.write_table(table, dest / "data" / f"train-{i:05d}-of-{len(kept_tables):05d}.parquet")
    for name in ("qa_report.json", "qa_report.md"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    rows_out = sum(t.num_rows for t in kept_tables)
    note = (f"This copy leaves out the rows under {', '.join(excluded)} "
            f"({rows_in - rows_out} of {rows_in}); the QA report describes the full build.")
    render_card(dest, _report(dest), load_id=load_id or folder.name, note=note)
    return {"rows_in": rows_in, "rows_out": rows_out, "removed": removed}


def push_daad(folder, repo_id: str, private: bool = False, exclude_licenses=(), token=None,
              commit_message: str | None = None) -> dict:
    """Upload a built DAAD folder (``data/*.parquet``, ``README.md``, ``qa_report.*``) to a hub dataset repo.

    Parameters
    ----------
    folder : str or Path
        Output of :func:`daad_tools.build.build_daad`.
    repo_id : str
        ``"org/name"``; created when missing (``exist_ok``).
    private : bool
        Create the repo private (an existing repo keeps its visibility).
    exclude_licenses : iterable of str
        Push a filtered copy without these licences (written to a temporary folder first, card
        re-rendered); the local folder is not changed.
    token : str, optional
        Hub token (default: the logged-in one).

    Returns
    -------
    dict
        ``repo_id``, ``commit`` (URL), ``rows`` pushed, ``removed`` (licence -> rows left out).

    Raises
    ------
    PublishError
        Not a built folder, not logged in, nothing left after the filter.

    Notes
    -----
    Remote ``data/*.parquet`` files not in this upload are deleted in the same commit, so a push
    with fewer shards than the previous one leaves no stale shard behind. Duplicates were resolved
    at build time over all licences: a row whose kept duplicate is under an excluded licence is not
    brought back by the filter (put ``exclude_licenses`` in the recipe for a licence-clean build).
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise PublishError(f"{folder} has no README.md (not a built DAAD folder?)")
    try:
        rows = read_columns(folder, ["id"]).num_rows
    except BuildError as exc:
        raise PublishError(str(exc)) from exc
    api = HfApi(token=token)
    try:
        user = api.whoami()
    except Exception as exc:  # LocalTokenNotFoundError, HTTP 401, offline: all mean "cannot push"
        raise PublishError(f"not logged in to the Hugging Face Hub ({exc}); run `hf auth login` or pass a token") from exc
    # stage next to the folder when possible (same file system: shards are hard links, not copies)
    work = folder / ".daad"
    tmp = Path(tempfile.mkdtemp(prefix="push-", dir=work if work.is_dir() and os.access(work, os.W_OK) else None))
    try:
        staged = stage_folder(folder, tmp / "upload", exclude_licenses, load_id=repo_id)
        rows, removed = staged["rows_out"], staged["removed"]
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(tmp / "upload"), repo_id=repo_id, repo_type="dataset",
                                 allow_patterns=UPLOAD_PATTERNS, delete_patterns=["data/*.parquet", "mosaics/*.png"],
                                 commit_message=commit_message or f"Upload DAAD ({rows} rows, cai-hub)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"repo_id": repo_id, "commit": str(getattr(info, "commit_url", info)), "rows": rows,
            "removed": removed, "user": (user or {}).get("name") if isinstance(user, dict) else None}
