"""``build-synthetic --engine ray`` writes the same bytes as the local run (a local Ray, 2 CPUs)."""
from __future__ import annotations

import hashlib

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _digest(folder):
    h = hashlib.sha256()
    files = sorted((folder / "data").glob("*.parquet"))
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return len(files), h.hexdigest()


def _build(out, **kw):
    from cai.build import BuildOptions, build_synthetic
    return build_synthetic(BuildOptions(out=str(out), seed=4, **kw), progress=False)


def test_ray_equals_local_on_embedded_sample(tmp_path, local_ray, monkeypatch):
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    local = _build(tmp_path / "local", shard_size=4)
    remote = _build(tmp_path / "ray", shard_size=4, engine="ray")
    assert remote["made"] == local["made"] > 0 and remote["engine"] == "ray"
    n, digest = _digest(tmp_path / "local")
    assert n == 2 and _digest(tmp_path / "ray") == (n, digest)


def test_ray_equals_local_for_a_mixture_with_in_domain_slots(tmp_path, local_ray, monkeypatch):
    """The NSA slots read other normals: Ray workers get them from the object store, as bytes."""
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    local = _build(tmp_path / "local", shard_size=4, synthesizer="cai+nsan50")
    remote = _build(tmp_path / "ray", shard_size=4, synthesizer="cai+nsan50", engine="ray")
    assert remote["made"] == local["made"] > 0 and remote["mixture"]["synthesizer"] == "nsa-n"
    assert _digest(tmp_path / "ray") == _digest(tmp_path / "local")


@pytest.mark.shared_data
def test_ray_equals_local_on_mvtec_grid(tmp_path, local_ray, shared_data, monkeypatch):
    from cai.engine.config import CAIConfig

    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    kw = dict(target="mvtec", root=str(shared_data / "mvtec_ad"), category="grid", shard_size=10,
              config=CAIConfig(mode="normal"))
    local = _build(tmp_path / "local", **kw)
    remote = _build(tmp_path / "ray", engine="ray", **kw)
    assert remote["made"] == local["made"] > 0
    assert _digest(tmp_path / "ray") == _digest(tmp_path / "local")
