"""The one atomic writer: a file appears complete under its name or not at all.

Data goes to a hidden temporary file beside the target (``.<name>.<pid>.tmp``: same file system, and
``load_dataset`` skips hidden files), is flushed and fsynced, then ``os.replace``-d onto the target.
A failure removes the temporary file and leaves any previous version in place.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value, sort_keys: bool = True, default=None) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically (``default`` as in :func:`json.dumps`)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys, default=default))
