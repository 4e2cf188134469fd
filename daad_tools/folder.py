"""Reading a built DAAD folder: its published rows and their counts."""

from collections import Counter
from pathlib import Path



from .records import CLASSES


from .recipe import BuildError


def read_columns(folder, columns=None):
    """The published rows of a DAAD folder as one pyarrow table (``columns`` to read only some)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(folder) / "data").glob("train-*.parquet"))
    if not files:
        raise BuildError(f"--folder {folder}: has no data/train-*.parquet shards, so it is not a built DAAD folder "
                         "(give the --out of `cai-hub daad build`)")
    missing = sorted(set(columns or ()) - set(pq.read_schema(files[0]).names))
    if missing:
        raise BuildError(f"--folder {folder}: not a built DAAD folder (its shards lack column(s) {missing}); give "
                         "the --out of `cai-hub daad build`")
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)


def _class_name(value) -> str:
    return CLASSES[value] if isinstance(value, int) else str(value)


def card_counts(folder) -> dict:
    """Counts of the published rows: per class (all classes, zeros included), per source, per licence,
    and the licences of each source."""
    table = read_columns(folder, ["anomaly_class", "source", "license"])
    classes = [_class_name(c) for c in table.column("anomaly_class").to_pylist()]
    sources = table.column("source").to_pylist()
    licenses = table.column("license").to_pylist()
    per_class = Counter(classes)
    source_licenses = {}
    for s, lic in zip(sources, licenses):
        source_licenses.setdefault(s, set()).add(lic)
    return {"rows": len(classes), "per_class": {c: per_class.get(c, 0) for c in CLASSES},
            "per_source": dict(sorted(Counter(sources).items())), "per_license": dict(sorted(Counter(licenses).items())),
            "source_licenses": {s: ", ".join(sorted(v)) for s, v in sorted(source_licenses.items())}}
