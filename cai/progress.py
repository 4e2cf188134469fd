"""Progress bars of the libraries a run calls (datasets' map, cast, save), off for a quiet run."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def datasets_bars(enabled: bool):
    """Within the block, datasets shows its progress bars only if ``enabled`` (and they were on); the
    setting before the block is restored after it."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
