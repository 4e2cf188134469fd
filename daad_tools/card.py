"""The DAAD dataset card (``cards/daad_dataset.md``) rendered for a built folder."""

import json
from pathlib import Path



from .records import CLASSES

from .folder import card_counts


def _size_category(n: int) -> str:
    for limit, name in ((1000, "n<1K"), (10000, "1K<n<10K"), (100000, "10K<n<100K"), (1000000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def render_card(folder, report: dict | None = None, load_id: str | None = None, note: str | None = None):
    """Render ``README.md`` of a DAAD folder from ``cards/daad_dataset.md`` (counts from its shards,
    build and QA summary from ``report``, by default its ``qa_report.json``)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from cards import template_path

    folder = Path(folder)
    if report is None:
        report = json.loads((folder / "qa_report.json").read_text())
    counts = card_counts(folder)
    from .stats import write_mosaics
    mosaics = write_mosaics(folder, folder / "mosaics")
    card_data = DatasetCardData(
        pretty_name=report.get("recipe", {}).get("name", "DAAD"),
        license="other",
        task_categories=["image-segmentation"],
        tags=["anomaly-detection", "industrial-inspection", "defect-segmentation", "daad", "cai-hub"],
        size_categories=[_size_category(counts["rows"])],
    )
    # no `configs:` block (see cai/outputs.py): the default `data/train-*` pattern finds the shards
    card = DatasetCard.from_template(
        card_data, template_path=template_path("daad_dataset.md"),
        rows=counts["rows"], classes=list(CLASSES), per_class=counts["per_class"], per_source=counts["per_source"],
        per_license=counts["per_license"], source_licenses=counts["source_licenses"],
        qa=report, recipe_text=report.get("recipe", {}).get("text", ""), load_id=load_id or folder.name,
        note=note, shards=len(list((folder / "data").glob("train-*.parquet"))), mosaics=mosaics,
    )
    path = folder / "README.md"
    card.save(path)
    return path
