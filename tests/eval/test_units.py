"""Evaluation runs kept per (synthesizer, seed): resumed after an interruption, redone when an option
changes, the same numbers from worker processes (``jobs``) as from one process with their thread count."""
import json

import numpy as np
import pytest

import cai.eval.evaluate as ev
from cai.eval import units

from test_evaluate import _run, tiny  # noqa: F401  (fixture; tests/eval is on sys.path under pytest)


def _numbers(out) -> dict:
    """Every metric of results.json (timings left out) and the per-image histograms' bytes."""
    res = json.loads((out / "results.json").read_text())
    keep = {name: {"fd": s["fd"], "runs": [{k: v for k, v in r.items() if not k.endswith("seconds")}
                                           for r in s["runs"]]} for name, s in res["synthesizers"].items()}
    keep["bootstrap"] = res["bootstrap"]
    hist = {p.name: p.read_bytes() for p in sorted((out / "per_image").glob("*.npz"))}
    return {"results": keep, "histograms": hist}


def test_worker_processes_give_the_numbers_of_one_process_with_their_threads(tiny, tmp_path):  # noqa: F811
    one = _run(tiny, tmp_path / "one", seeds=(0, 1), threads=1)
    two = _run(tiny, tmp_path / "two", seeds=(0, 1), threads=2, jobs=2)
    assert two["jobs"] == 2 and two["threads"] == one["threads"] == 1
    assert _numbers(tmp_path / "two") == _numbers(tmp_path / "one")
    lines = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert [e["desc"] for e in lines] == [f"{s} seed {k}" for s in ("cai-n", "cutpaste") for k in (0, 1) for _ in "ab"]


def test_an_interrupted_evaluation_resumes_with_the_runs_it_had_not_made(tiny, tmp_path, monkeypatch):  # noqa: F811
    fresh = tmp_path / "fresh"
    _run(tiny, fresh, seeds=(0, 1))
    out = tmp_path / "stopped"
    made = []
    real = ev._run_unit

    def stop_at_third(inp, o, config, name, seed, first, progress):
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append((name, seed))
        return real(inp, o, config, name, seed, first, progress)

    monkeypatch.setattr(ev, "_run_unit", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, out, seeds=(0, 1))
    kept = sorted(p.name for p in (out / ".cache" / "units").glob("*.npz"))
    assert kept == ["cai-n__seed0.npz", "cai-n__seed1.npz"] and not (out / "results.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (out / ".cache" / "units").glob("*.npz")}

    made.clear()
    monkeypatch.setattr(ev, "_run_unit", lambda *a: made.append(a[3:5]) or real(*a))
    _run(tiny, out, seeds=(0, 1))
    assert made == [("cutpaste", 0), ("cutpaste", 1)]  # only the runs not made before
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert _numbers(out) == _numbers(fresh)


def test_a_changed_option_or_a_damaged_file_makes_the_runs_again(tiny, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    _run(tiny, out, synths=("cutpaste",), seeds=(0, 1))
    made = []
    real = ev._run_unit
    monkeypatch.setattr(ev, "_run_unit", lambda *a: made.append(a[3:5]) or real(*a))
    _run(tiny, out, synths=("cutpaste",), seeds=(0, 1))
    assert made == []  # the same options: everything is loaded
    _run(tiny, out, synths=("cai-n", "cutpaste"), seeds=(0, 1))
    assert made == [("cai-n", 0), ("cai-n", 1)]  # a synthesizer added: only its runs (the anomaly set is not
    made.clear()                                 # part of cutpaste's fingerprint)
    _run(tiny, out, synths=("cutpaste",), seeds=(0, 1), max_normals=4)
    assert made == [("cutpaste", 0), ("cutpaste", 1)]  # another option: made again
    made.clear()
    (out / ".cache" / "units" / "cutpaste__seed1.npz").write_bytes(b"not a zip file")
    _run(tiny, out, synths=("cutpaste",), seeds=(0, 1), max_normals=4)
    assert made == [("cutpaste", 1)]
    made.clear()
    _run(tiny, out, synths=("cutpaste",), seeds=(1, 0), max_normals=4)
    assert made == [("cutpaste", 1)]  # seed 1 now comes first: its curves and examples are needed


def test_unit_files_round_trip_and_refuse_another_key(tmp_path):
    rng = np.random.default_rng(0)
    result = {"run": {"seed": 3, "pixel_ap": 0.25}, "history": [{"epoch": 1, "loss": 0.5}], "fd": {"lite0": 1.5},
              "pos": rng.integers(0, 9, 50), "neg": rng.integers(0, 9, 50),
              "curve_pr": rng.random((2, 7)), "curve_pro": rng.random((2, 7)),
              "example_maps": [rng.random((4, 5)).astype(np.float32)],
              "pseudo": [(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8), rng.random((4, 5)) > 0.5)]}
    units.save_unit(tmp_path, "cai+paste", 3, result, key="k1")
    back = units.load_unit(tmp_path, "cai+paste", 3, "k1", needs_extras=True)
    assert back["run"] == result["run"] and back["history"] == result["history"] and back["fd"] == result["fd"]
    for k in ("pos", "neg", "curve_pr", "curve_pro"):
        assert np.array_equal(back[k], result[k])
    assert np.array_equal(back["example_maps"][0], result["example_maps"][0])
    assert all(np.array_equal(a, b) for a, b in zip(back["pseudo"][0], result["pseudo"][0]))
    assert units.load_unit(tmp_path, "cai+paste", 3, "k2", needs_extras=False) is None
    plain = {k: result[k] for k in ("run", "history", "fd", "pos", "neg")}
    units.save_unit(tmp_path, "cutpaste", 0, plain, key="k1")
    assert units.load_unit(tmp_path, "cutpaste", 0, "k1", needs_extras=True) is None
    assert units.load_unit(tmp_path, "cutpaste", 0, "k1", needs_extras=False)["run"] == plain["run"]
    assert units.fingerprint({"a": 1, "b": 2}) == units.fingerprint({"b": 2, "a": 1}) != units.fingerprint({"a": 2})
