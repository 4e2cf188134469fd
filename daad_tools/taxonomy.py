"""Map each source's own defect label to one DAAD anomaly class.

The table is ``taxonomy.csv`` next to this module, one row per ``(source, original_label)``::

    source,original_label,anomaly_class,note
    mvtec_ad,glue,stain,"grid/leather: glue residue changes the surface tone"
    kolektorsdd,*,crack,"KolektorSDD: surface cracks on commutators"

* ``anomaly_class`` is one of :data:`daad_tools.records.CLASSES`, or :data:`EXCLUDE` (``exclude``):
  a recorded decision that the label is not a transferable surface anomaly (a shape, position or
  logical defect, or a synthetic source). :func:`map_records` drops excluded records and counts them.
* ``original_label`` ``*`` is a wildcard for a single-class source (used when no exact row matches).
* Labels match after ``strip()`` and case folding. A multi-defect label such as VisA's
  ``"melt, scratch"`` maps when every comma-separated part maps to the same class.
* ``note`` says why (required reading for the judgement calls).

Sources whose layout names no defect type are deliberately absent (``btad`` with label ``ko``,
``kolektorsdd2`` with ``defect``; also VisA ``other`` and own-photo labels that are not class
names): their records need per-row overrides, ``{(source, original_file or row id): class}``,
which are applied before the table. A row id is ``<source>/<original_file>[#<label>][@<component>]``;
an override on ``original_file`` covers every row cut from that image.

Example
-------
>>> tax = load_taxonomy()
>>> tax.classify("neu_seg", "Scratches")
'scratch'
>>> tax.classify("kolektorsdd", "defect")
'crack'
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from daad_tools.records import CLASSES, RawAnomaly

DEFAULT_PATH = Path(__file__).with_name("taxonomy.csv")
COLUMNS = ("source", "original_label", "anomaly_class", "note")
EXCLUDE = "exclude"
WILDCARD = "*"
_ALLOWED = frozenset(CLASSES) | {EXCLUDE}


class TaxonomyError(ValueError):
    """The taxonomy table or an override is malformed (bad column, class or duplicate)."""


class UnmappedLabel(KeyError):
    """One or more ``(source, original_label)`` pairs have no taxonomy row.

    Attributes
    ----------
    pairs : list of (str, str)
        Every missing pair, sorted.
    counts : dict
        ``{(source, label): number of records}`` (1 each when raised by :meth:`Taxonomy.classify`).
    """

    def __init__(self, pairs, counts=None):
        self.pairs = sorted(set(pairs))
        self.counts = dict(counts) if counts else {p: 1 for p in self.pairs}
        listed = "; ".join(f"{s!r}/{l!r} ({self.counts.get((s, l), 1)} record(s))" for s, l in self.pairs)
        super().__init__(f"{len(self.pairs)} unmapped (source, original_label) pair(s): {listed}. "
                         "Add rows to the taxonomy CSV or per-row overrides.")

    @property
    def source(self) -> str:
        """The source of the first missing pair."""
        return self.pairs[0][0]

    @property
    def label(self) -> str:
        """The label of the first missing pair."""
        return self.pairs[0][1]

    def __str__(self):  # KeyError would repr() the message
        return self.args[0]


def _key(label) -> str:
    return str(label).strip().casefold()


def _check_class(value, where: str) -> str:
    value = str(value).strip()
    if value not in _ALLOWED:
        raise TaxonomyError(f"{where}: anomaly_class {value!r} is not one of {', '.join(CLASSES)} or {EXCLUDE!r}")
    return value


@dataclass
class Taxonomy:
    """A loaded mapping table plus per-row overrides.

    Attributes
    ----------
    rows : dict
        ``{(source, folded label): (anomaly_class, note)}``; the label ``*`` is the wildcard.
    overrides : dict
        ``{(source, original_file or row id): anomaly_class}``, applied first by :meth:`classify_record`.
    """

    rows: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)

    def lookup(self, source: str, original_label: str) -> str | None:
        """The class of ``(source, original_label)`` or None (no exception)."""
        source = str(source).strip()
        hit = self.rows.get((source, _key(original_label)))
        if hit is not None:
            return hit[0]
        parts = [p for p in str(original_label).split(",") if p.strip()]
        if len(parts) > 1:  # a multi-defect label: all parts must agree
            classes = {self.lookup(source, p) for p in parts}
            if len(classes) == 1 and None not in classes:
                return classes.pop()
        hit = self.rows.get((source, WILDCARD))
        return hit[0] if hit is not None else None

    def classify(self, source: str, original_label: str) -> str:
        """The DAAD class (or ``"exclude"``) of a source label; raises :class:`UnmappedLabel`."""
        found = self.lookup(source, original_label)
        if found is None:
            raise UnmappedLabel([(str(source), str(original_label))])
        return found

    def override_for(self, record: RawAnomaly) -> str | None:
        """The per-row override that applies to ``record`` (most specific key first), or None."""
        if not self.overrides:
            return None
        label, comp, name = record.original_label, record.component, record.original_file
        tails = [f"#{label}@{comp}", f"@{comp}", f"#{label}", ""]
        for tail in tails:
            for key in (f"{record.source}/{name}{tail}", f"{name}{tail}"):
                hit = self.overrides.get((record.source, key))
                if hit is not None:
                    return hit
        return None

    def classify_record(self, record: RawAnomaly) -> str:
        """Override first, then :meth:`classify` of the record's source and label."""
        return self.override_for(record) or self.classify(record.source, record.original_label)

    def note(self, source: str, original_label: str) -> str:
        """The table's note for the row that maps ``(source, original_label)`` ("" if none)."""
        hit = self.rows.get((source, _key(original_label))) or self.rows.get((source, WILDCARD))
        return hit[1] if hit else ""


def read_table(path) -> dict:
    """``{(source, folded label): (class, note)}`` from one taxonomy CSV, validated.

    Raises
    ------
    TaxonomyError
        Wrong header, empty source/label, a class outside ``CLASSES`` + ``exclude``, or the same
        (source, label) twice with different classes.
    """
    path = Path(path)
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:4]) != COLUMNS:
            raise TaxonomyError(f"{path}: header must be {','.join(COLUMNS)}, got {header}")
        for line_no, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) < 3:
                raise TaxonomyError(f"{path}:{line_no}: expected {len(COLUMNS)} columns, got {row}")
            source, label, cls = row[0].strip(), row[1].strip(), row[2]
            note = row[3].strip() if len(row) > 3 else ""
            if not source or not label:
                raise TaxonomyError(f"{path}:{line_no}: empty source or original_label")
            cls = _check_class(cls, f"{path}:{line_no}")
            key = (source, _key(label))
            if key in rows and rows[key][0] != cls:
                raise TaxonomyError(f"{path}:{line_no}: {source}/{label} maps to {rows[key][0]!r} earlier and {cls!r} here")
            rows[key] = (cls, note)
    return rows


def load_taxonomy(path=None, overrides: Mapping | None = None) -> Taxonomy:
    """Load the taxonomy table(s) and per-row overrides.

    Parameters
    ----------
    path : path or sequence of paths, optional
        CSV table(s) with columns ``source,original_label,anomaly_class,note``; default the packaged
        ``taxonomy.csv``. With several, a later table's row replaces an earlier one's.
    overrides : mapping, optional
        ``{(source, original_file or row id): anomaly_class}`` applied before the table.

    Raises
    ------
    TaxonomyError
        A malformed table or an override whose class is not a DAAD class or ``exclude``.
    """
    paths = [DEFAULT_PATH] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    rows = {}
    for p in paths:
        rows.update(read_table(p))
    checked = {}
    for key, cls in (overrides or {}).items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TaxonomyError(f"override key {key!r} must be (source, original_file or row id)")
        checked[(str(key[0]), str(key[1]))] = _check_class(cls, f"override {key!r}")
    return Taxonomy(rows=rows, overrides=checked)


def map_records(records: Iterable[RawAnomaly], taxonomy: Taxonomy, unmapped: str = "error"):
    """Give every record its DAAD class.

    Parameters
    ----------
    records : iterable of RawAnomaly
    taxonomy : Taxonomy
    unmapped : {"error", "skip"}
        ``"error"``: after looking at every record, raise ONE :class:`UnmappedLabel` listing all
        unmapped (source, label) pairs with their record counts. ``"skip"``: drop those records and
        report them.

    Returns
    -------
    mapped : list of (RawAnomaly, str)
        Records in input order with their class; excluded records are left out.
    report : dict
        ``mapped`` (count), ``by_class`` ({class: count}), ``overridden`` (count), ``excluded``
        ({(source, label): count}), ``unmapped`` ({(source, label): count}), ``skipped`` (count).
    """
    if unmapped not in ("error", "skip"):
        raise ValueError(f"unmapped must be 'error' or 'skip', got {unmapped!r}")
    mapped, by_class, excluded, missing, overridden = [], Counter(), Counter(), Counter(), 0
    for record in records:
        cls = taxonomy.override_for(record)
        overridden += cls is not None
        cls = cls or taxonomy.lookup(record.source, record.original_label)
        pair = (record.source, record.original_label)
        if cls is None:
            missing[pair] += 1
        elif cls == EXCLUDE:
            excluded[pair] += 1
        else:
            by_class[cls] += 1
            mapped.append((record, cls))
    if missing and unmapped == "error":
        raise UnmappedLabel(list(missing), missing)
    report = {"mapped": len(mapped), "by_class": dict(sorted(by_class.items())), "overridden": overridden,
              "excluded": dict(sorted(excluded.items())), "unmapped": dict(sorted(missing.items())),
              "skipped": sum(missing.values())}
    return mapped, report
