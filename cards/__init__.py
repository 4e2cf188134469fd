"""Card templates (Jinja + YAML metadata) rendered with huggingface_hub's card API."""
from pathlib import Path

TEMPLATES = Path(__file__).parent


def template_path(name: str) -> str:
    """Path of the template ``name`` (e.g. ``"synthetic_dataset.md"``)."""
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"no card template {name!r} in {TEMPLATES}")
    return str(path)
