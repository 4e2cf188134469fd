"""``cai-hub daad curate`` and ``cai-hub daad sync``: click commands over :mod:`daad_tools.fiftyone_backend`
and :mod:`daad_tools.sync`.

Register them on a group with ``group.add_command(curate_cmd)`` / ``group.add_command(sync_cmd)``
(or ``for cmd in COMMANDS: group.add_command(cmd)``).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading

import click

from cai.cli_options import require_extra


ANALYTICS_ENV = "FIFTYONE_DO_NOT_TRACK"  # our commands default it to "true"; set it to "false" to opt back in


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so ``kill`` unwinds the
    same clean-up path: the App session closes and FiftyOne stops the mongod it started. The previous
    handler is restored on exit. Outside the main thread it does nothing (signals go to that thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fiftyone_defaults() -> None:
    """FiftyOne's usage analytics off unless the user chose otherwise (before fiftyone is imported)."""
    os.environ.setdefault(ANALYTICS_ENV, "true")


def _port(ctx, param, value):
    if not 1 <= value <= 65535:
        raise click.BadParameter("expected a TCP port 1-65535")
    return value


@click.command("curate")
@click.option("--folder", default="daad", show_default=True, type=click.Path(file_okay=False),
              help="Hub-ready DAAD folder (data/train-*.parquet).")
@click.option("--name", default="daad", show_default=True, help="FiftyOne dataset name.")
@click.option("--port", type=int, default=5151, show_default=True, callback=_port, help="App port.")
@click.option("--address", default="127.0.0.1", show_default=True, help="App address to bind.")
@click.option("--media-dir", default=None, type=click.Path(file_okay=False),
              help="Where image/mask files go (default: under FiftyOne's default_dataset_dir).")
@click.option("--overwrite", is_flag=True, help="Reload from the folder, dropping unsynced edits.")
@click.option("--no-launch", "no_launch", is_flag=True, help="Only load; do not serve the App.")
def curate_cmd(folder, name, port, address, media_dir, overwrite, no_launch):
    """Load a DAAD folder into FiftyOne and serve the App to review it.

    In the App, tag a sample `reject` to drop it, `reclass:<class>` to change its anomaly class,
    or edit its mask file; then run `sync`. Rerunning without --overwrite reopens the same
    dataset with its edits.
    """
    _fiftyone_defaults()
    require_extra("curate", "cai-hub daad curate")
    from .curation import CurationError
    from .fiftyone_backend import launch_app, load_into_fiftyone

    try:
        with sigterm_as_interrupt():
            dataset = load_into_fiftyone(folder, name=name, media_dir=media_dir, overwrite=overwrite)
            click.echo(f"FiftyOne dataset {dataset.name!r}: {len(dataset)} samples, "
                       f"saved views {dataset.list_saved_views()}")
            if not no_launch:
                launch_app(dataset, port=port, address=address, wait=True)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except (CurationError, ImportError) as e:
        raise click.ClickException(str(e)) from None


@click.command("sync")
@click.option("--folder", default="daad", show_default=True, type=click.Path(file_okay=False),
              help="Hub-ready DAAD folder to update.")
@click.option("--name", default="daad", show_default=True, help="FiftyOne dataset name.")
def sync_cmd(folder, name):
    """Write the FiftyOne edits back into the DAAD folder (shards + curation.json); prints a JSON report."""
    _fiftyone_defaults()
    require_extra("curate", "cai-hub daad sync")
    from .curation import CurationError
    from .sync import sync_from_fiftyone

    try:
        report = sync_from_fiftyone(name, folder)
    except (CurationError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(report.to_dict(), indent=2))


COMMANDS = (curate_cmd, sync_cmd)
