"""The curate command's process behaviour: SIGTERM unwinds like Ctrl-C; analytics off by default."""
from __future__ import annotations

import os
import signal

import pytest

from daad_tools import curate_cli


def test_sigterm_raises_keyboard_interrupt_inside_and_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with curate_cli.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0) if hasattr(signal, "sigtimedwait") else None
            pytest.fail("SIGTERM did not interrupt")
    assert signal.getsignal(signal.SIGTERM) is before


def test_analytics_off_by_default_but_user_choice_kept(monkeypatch):
    monkeypatch.delenv(curate_cli.ANALYTICS_ENV, raising=False)
    curate_cli._fiftyone_defaults()
    assert os.environ[curate_cli.ANALYTICS_ENV] == "true"
    monkeypatch.setenv(curate_cli.ANALYTICS_ENV, "false")
    curate_cli._fiftyone_defaults()
    assert os.environ[curate_cli.ANALYTICS_ENV] == "false"
