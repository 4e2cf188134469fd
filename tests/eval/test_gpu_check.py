"""recipes/evaluate/gpu_check.sh runs on CPU (tiny settings) and writes both targets' tables."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def test_gpu_check_script_runs_on_cpu_with_one_epoch(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    env = dict(os.environ, ANOMALY_SET=str(REPO / "cai/data/default/anomalies"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "gc"
    proc = subprocess.run(["bash", "recipes/evaluate/gpu_check.sh", str(out), "--epochs", "1", "--max-normals", "2",
                           "--per-image", "2", "--size", "64", "--device", "cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for target in ("grid", "ksdd"):
        res = json.loads((out / target / "results.json").read_text())
        assert res["profile"]["name"] == "paper" and res["profile"]["config"]["epochs"] == 1
        assert set(res["synthesizers"]) == {"cai", "cai-paste", "draem", "glass-las"}
        assert "cai-paste" in res["bootstrap"]["vs_reference"]
