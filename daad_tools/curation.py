"""The curation format: what a reviewer decided about a DAAD folder, read by ``build`` and written by
``sync`` (:mod:`daad_tools.curate`).

``FOLDER/curation.json``::

    {"format": "cai-hub/daad-curation", "version": 1,
     "rejected": {row_id: {...}}, "reclassed": {row_id: {"to": class, ...}},
     "masks": {row_id: {"path": "curation_masks/<key>.png", ...}}}

Edited masks are PNG files under ``FOLDER/curation_masks/`` (any non-zero value is anomaly).
"""
from __future__ import annotations

import json
from pathlib import Path

CURATION_FILE = "curation.json"
CURATION_MASK_DIR = "curation_masks"
CURATION_FORMAT = "cai-hub/daad-curation"


class CurationError(Exception):
    """A DAAD folder, a FiftyOne dataset or an edit that curation cannot use (message says why)."""


def load_curation_doc(folder: Path) -> dict:
    """``curation.json`` of ``folder`` as a dict with ``rejected``, ``reclassed`` and ``masks`` (empty
    when there is no file). Raises :class:`CurationError` for invalid JSON or another format."""
    path = folder / CURATION_FILE
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CurationError(f"{path} is not valid JSON: {e}") from e
        if doc.get("format") != CURATION_FORMAT:
            raise CurationError(f"{path} is not a {CURATION_FORMAT} file")
    else:
        doc = {"format": CURATION_FORMAT, "version": 1}
    for key in ("rejected", "reclassed", "masks"):
        doc.setdefault(key, {})
    return doc
