"""``build-synthetic --engine ray``: the same synthesis function on Ray Data workers.

The driver (the machine running ``cai-hub``) keeps everything that makes a run resumable and
reproducible: it claims the output folder, prepares the patterns, splits the normals in shards and
writes each shard's parquet and marker exactly as the local run does (:mod:`cai.runloop`). Only the
synthesis of a shard's normals runs on the cluster: ``ray.data.from_items`` over the normals (image
bytes, file name, index), ``map_batches`` of the local run's batch function
(``cai.build.synthesize_batch``, passed in) with its arguments, rows back to the driver as Arrow IPC
in normal-index order. The prepared patterns (and
their refined masks) go to the object store once per run (``ray.put``), as PNG crops; the first worker
of a node unpacks them to a local folder named by the object reference, where the first to open them
decodes them once into the memory-mapped files of :func:`cai.anomaly_set.decoded_patterns`: every
worker process of the node maps the same pages. Same seed, same bytes as the local run.

Needs the ``ray`` extra: ``pip install 'cai-hub[ray]'``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import datasets
import numpy as np

from .schema import MAP_FEATURES


def _ray():
    from .extras import require
    require("ray", "build-synthetic --engine ray")
    import ray
    return ray


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (``None``: ``$RAY_ADDRESS``, else a local one); nothing when
    this process is already connected."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)


def pack_folder(path: str) -> dict:
    """The files of a saved patterns folder (``save_to_disk`` + ``report.json`` + refined masks) as
    ``{"key": folder name, "files": {relative path: bytes}}``; without the decoded ``*.u8`` files (about
    three times the PNG crops' size, made again where they are used) and hidden temporary files."""
    root = Path(path)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file() and p.suffix != ".u8" and not p.name.startswith(".")}
    return {"key": root.name, "files": files}


_UNPACKED: dict = {}  # object ref id -> local folder, per worker process


def _patterns_folder(packed_ref, key: str) -> str:
    """Unpack the shared patterns once per node (the folder is named by the object reference: one
    per run's patterns, never stale); the folder :func:`open_pattern_bank` opens."""
    import shutil

    import ray

    ref_id = packed_ref.hex()
    if ref_id not in _UNPACKED:
        root = Path(tempfile.gettempdir()) / "cai-hub-ray" / f"{key}-{ref_id[:24]}"
        if not (root / "state.json").is_file():
            packed = ray.get(packed_ref)
            tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            for rel, data in packed["files"].items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
            try:
                os.replace(tmp, root)  # atomic; a worker that finished first keeps its (equal) copy
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        _UNPACKED[ref_id] = str(root)
    return _UNPACKED[ref_id]


_POOLS: dict = {}  # object ref id -> NormalsPool, per worker process


def _pool(pool_ref):
    """The run's pool of normals (a mixture's NSA slots read it), fetched once per worker process."""
    import ray

    ref_id = pool_ref.hex()
    if ref_id not in _POOLS:
        _POOLS.clear()  # one run's pool at a time
        _POOLS[ref_id] = ray.get(pool_ref)
    return _POOLS[ref_id]


def _task(batch: dict, packed: list, fn, fn_kwargs: dict) -> dict:
    """Ray ``map_batches`` function: a batch of normals (``image`` bytes, ``file``, ``normal_index``)
    -> ``fn``'s slot rows as one Arrow IPC stream (``ipc``, one element) and its first normal index.
    ``packed`` is [patterns ref, patterns folder name] or, for a mixture, also the pool's ref."""
    import pyarrow as pa

    path = _patterns_folder(packed[0], packed[1])
    if len(packed) > 2:
        fn_kwargs = {**fn_kwargs, "pool": _pool(packed[2])}
    rows = fn({"image": [{"bytes": bytes(b), "path": None} for b in batch["image"]],
                             "file": [str(f) for f in batch["file"]],
                             "normal_index": [int(i) for i in batch["normal_index"]]},
                            patterns_path=path, **fn_kwargs)
    table = datasets.Dataset.from_dict(rows, features=MAP_FEATURES).data.table
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"first": np.array([int(batch["normal_index"][0])]),
            "ipc": np.array([sink.getvalue().to_pybytes()], dtype=object)}


def synthesize_shard(shard: datasets.Dataset, fn, patterns_path: str, fn_kwargs: dict, batch_size: int = 2,
                     packed_ref=None, pool_ref=None) -> datasets.Dataset:
    """Slot rows (``MAP_FEATURES``) of ``shard``'s normals, made on the Ray cluster.

    Parameters
    ----------
    shard : datasets.Dataset
        Columns ``image`` (undecoded ``datasets.Image``: bytes, or a path readable here), ``file``,
        ``normal_index``.
    fn : callable
        The batch function, :func:`cai.build.synthesize_batch` (``batch, patterns_path=..., **fn_kwargs``
        -> dict of ``MAP_FEATURES`` columns); importable by name on the workers.
    patterns_path : str
        The prepared patterns folder (on this machine); shipped through the object store unless
        ``packed_ref`` (from :func:`share_patterns`) is given.
    fn_kwargs : dict
        :func:`cai.build.synthesize_batch`'s keyword arguments other than ``patterns_path`` (``pool``:
        None; a mixture's pool goes as ``pool_ref``, from :func:`share_pool`).

    Returns
    -------
    datasets.Dataset
        The rows the local ``Dataset.map`` makes, in the same order.
    """
    import pyarrow as pa

    ray = _ray()
    from .anomaly_set import _value_bytes

    if packed_ref is None:
        packed_ref = share_patterns(patterns_path)
    images = shard.cast_column("image", datasets.Image(decode=False))["image"]
    items = [{"image": _value_bytes(v), "file": f, "normal_index": int(i)}
             for v, f, i in zip(images, shard["file"], shard["normal_index"])]
    kwargs = {k: v for k, v in fn_kwargs.items() if k not in ("patterns_path", "pool")}
    packed = [packed_ref, Path(patterns_path).name] + ([pool_ref] if pool_ref is not None else [])
    out = ray.data.from_items(items).map_batches(
        _task, batch_size=batch_size, batch_format="numpy",
        fn_kwargs={"packed": packed, "fn": fn, "fn_kwargs": kwargs})
    parts = sorted(((int(r["first"]), r["ipc"]) for r in out.iter_rows()), key=lambda p: p[0])
    tables = [pa.ipc.open_stream(blob).read_all() for _, blob in parts]
    table = pa.concat_tables(tables) if tables else MAP_FEATURES.arrow_schema.empty_table()
    return datasets.Dataset(table).cast(MAP_FEATURES)


def share_patterns(patterns_path: str):
    """Put the prepared patterns folder in Ray's object store once; the reference tasks unpack."""
    return _ray().put(pack_folder(patterns_path))


def share_pool(pool):
    """Put a mixture's pool of normals in Ray's object store once, with every image's encoded bytes in it
    (:meth:`cai.build.NormalsPool.embedded`: workers need not read the driver's files)."""
    return _ray().put(pool.embedded())
