"""Pooling evaluation runs: per-image histograms by target, FD filling, paired comparison."""
import json
import zlib

import numpy as np
import pytest

from cai.eval.bootstrap import save_histograms, score_histograms
from cai.eval.collect import compare, fill_fd, load_runs


def _run(folder, target, synths, strength, images=("good/a.png", "crack/b.png", "crack/c.png")):
    rng = np.random.default_rng(zlib.crc32(folder.name.encode()))  # not the tmp path: its length varies by machine
    masks = [np.zeros((16, 16), bool) for _ in images]
    masks[1][4:8, 4:8] = True
    masks[2][9:12, 2:10] = True
    for synth, s in zip(synths, strength):
        for seed in (0, 1):
            maps = [rng.normal(size=(16, 16)) + s * m for m in masks]
            save_histograms(folder / "per_image" / f"{synth}__seed{seed}.npz", *score_histograms(maps, masks), images)
    (folder / "results.json").write_text(json.dumps({
        "target": {"kind": "mvtec", "name": "mvtec_ad", "category": target},
        "synthesizers": {s: {"summary": {"pixel_ap": [0.5, 0.1]}, "fd": {"lite0": 10.0}} for s in synths[:1]}}))
    return folder


def test_runs_pool_by_target_and_compare(tmp_path):
    a = _run(tmp_path / "w1_grid", "grid", ["cai", "cutpaste"], [4.0, 0.5])
    b = _run(tmp_path / "base_grid", "grid", ["draem"], [0.2])
    targets = load_runs([a, b])
    assert set(targets) == {"grid"} and set(targets["grid"]) == {"cai", "cutpaste", "draem"}
    assert targets["grid"]["cai"].summary == {"pixel_ap": [0.5, 0.1]} and targets["grid"]["cutpaste"].summary is None
    assert targets["grid"]["cai"].pixel_ap > targets["grid"]["draem"].pixel_ap
    d = compare(targets["grid"]["cai"], targets["grid"]["draem"], n_boot=200)
    assert d["diff"] > 0 and d["n_images"] == 3


def test_fill_fd_keeps_recorded_values_and_fills_missing(tmp_path):
    run = _run(tmp_path / "w1_grid", "grid", ["cai", "cai-n"], [1.0, 1.0])
    targets = load_runs([run])
    fd_file = tmp_path / "fd.json"
    fd_file.write_text(json.dumps({"cai": 99.0, "cai-n": 12.5}))
    fill_fd(targets, [f"grid={fd_file}"])
    assert targets["grid"]["cai"].fd["lite0"] == 10.0  # recorded by the run
    assert targets["grid"]["cai-n"].fd["lite0"] == 12.5
    with pytest.raises(ValueError, match="TARGET=FILE"):
        fill_fd(targets, ["grid"])


def test_runs_on_other_test_images_are_refused(tmp_path):
    a = _run(tmp_path / "w1_grid", "grid", ["cai"], [1.0])
    b = _run(tmp_path / "w2_grid", "grid", ["draem"], [1.0], images=("good/x.png", "crack/b.png", "crack/c.png"))
    with pytest.raises(ValueError, match="other test images"):
        load_runs([a, b])


def test_on_the_fly_runs_are_named_apart_from_the_fixed_split(tmp_path):
    fixed = _run(tmp_path / "cai_grid", "grid", ["cai"], [1.0])
    otf = _run(tmp_path / "otf_grid", "grid", ["cai"], [3.0])
    results = json.loads((otf / "results.json").read_text())
    (otf / "results.json").write_text(json.dumps({**results, "on_the_fly": True}))
    targets = load_runs([fixed, otf])
    assert set(targets["grid"]) == {"cai", "cai@otf"}
    assert targets["grid"]["cai@otf"].pixel_ap > targets["grid"]["cai"].pixel_ap


def test_a_tagged_folder_names_its_synthesizers_apart(tmp_path):
    aset = _run(tmp_path / "cai_grid", "grid", ["cai"], [1.0])
    daad = _run(tmp_path / "df_grid", "grid", ["cai", "cai-n"], [3.0, 1.0])
    targets = load_runs([aset, f"{daad}@daad"])
    assert set(targets["grid"]) == {"cai", "cai@daad", "cai-n@daad"}
    assert targets["grid"]["cai@daad"].run == str(daad) and targets["grid"]["cai@daad"].summary is not None
    assert load_runs([aset, daad])["grid"]["cai"].run == str(daad)  # untagged: the last folder wins
    # a folder whose own name holds "@" is read as it is
    odd = _run(tmp_path / "x@y_grid", "grid", ["draem"], [1.0])
    assert set(load_runs([odd])["grid"]) == {"draem"}


def test_cluster_labels_take_the_first_group_and_leave_unmatched_names_alone():
    from cai.eval.collect import cluster_labels
    names = ["pitting/01_200902053521_305000_090_crop_1_w0.png", "pitting/01_200905041126_305000_090_crop_1_w0.png",
             "good/01_200905041126_305000_090_crop_2_w3.png", "other.png"]
    assert cluster_labels(names, r"_(\d+_\d{3}_crop_\d_w\d)\.") == [
        "305000_090_crop_1_w0", "305000_090_crop_1_w0", "305000_090_crop_2_w3", "other.png"]
    assert cluster_labels(["ab12", "cd12"], r"\d+") == ["12", "12"]


def test_compare_runs_aliases_and_clusters(tmp_path, monkeypatch, capsys, evaluate_recipe):
    import sys
    module = evaluate_recipe("compare_runs")
    images = ("good/01_200901010000_1_000_crop_1_w0.png", "crack/01_200901010000_2_000_crop_1_w0.png",
              "crack/01_200901020000_2_000_crop_1_w0.png")
    run = _run(tmp_path / "x_grid", "grid", ["cai+long+aug", "cai"], [3.0, 0.5], images=images)
    out = tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", ["compare_runs", str(run), "--reference", "cai", "--alias", "cai+long+aug=cai@long",
                                      "--cluster", r"grid=_(\d+_\d{3}_crop_\d_w\d)\.", "--n-boot", "50",
                                      "--json", str(out)])
    module.main()
    text = capsys.readouterr().out
    assert "2 clusters" in text and "cai@long" in text and "cai+long+aug" not in text
    assert json.loads(out.read_text())["per_target"]["grid"]["cai@long"]["vs_reference"]["n_clusters"] == 2
    monkeypatch.setattr(sys, "argv", ["compare_runs", str(run), "--cluster", "ksdd=x"])
    with pytest.raises(SystemExit, match="among the runs"):
        module.main()


def test_folder_targets_are_named_after_their_common_folder(tmp_path):
    from cai.eval.collect import target_name
    for name, root, test_root in (("a", "/d/bsdata/normals", "/d/bsdata/test"), ("b", "/x/normals", "/y/test")):
        run = tmp_path / name
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"target": {"kind": "folder", "name": "normals", "category": None,
                                                                 "root": root, "test_root": test_root}}))
    assert target_name(tmp_path / "a") == "bsdata"
    assert target_name(tmp_path / "b") == "normals"  # nothing in common but "/": the normals' folder name


def test_collect_tables_tags_the_old_default_and_resamples_clusters(tmp_path, monkeypatch, capsys, evaluate_recipe):
    import re
    import sys
    module = evaluate_recipe("collect_tables")
    new = _run(tmp_path / "n_grid", "grid", ["cai", "cutpaste"], [3.0, 0.5])
    old = _run(tmp_path / "o_grid", "grid", ["cai"], [1.0])
    window = _run(tmp_path / "w_bsdata", "bsdata_target", ["cai", "draem"], [2.0, 1.0])
    monkeypatch.setattr(sys, "argv", ["collect_tables", str(new), f"{old}@paste", str(window), "--n-boot", "50"])
    module.main()
    text = capsys.readouterr().out
    table1 = text.split("### Table 3")[0]
    assert "| cai@paste | 2 |" in table1 and "| cutpaste | 2 |" in table1
    assert "**BSData spindle pits" in table1 and "| draem | 2 |" in table1
    assert "KolektorSDD" not in text and "carpet" not in text  # targets without runs are left out
    table1 = table1.split("**BSData")[0]

    def cutpaste_interval(out):
        row = next(line for line in out.splitlines() if line.startswith("| cutpaste |"))
        return [float(v) for v in re.search(r"\[([-+][\d.]+), ([-+][\d.]+)\]", row).groups()]

    lo, hi = cutpaste_interval(table1)
    assert lo < hi
    # every test image in one cluster: each resample draws that cluster, the interval collapses to a point
    monkeypatch.setattr(sys, "argv", ["collect_tables", str(new), "--n-boot", "50", "--cluster", r"grid=(\.png)$"])
    module.main()
    lo, hi = cutpaste_interval(capsys.readouterr().out.split("### Table 3")[0])
    assert lo == hi
    monkeypatch.setattr(sys, "argv", ["collect_tables", str(new), "--cluster", "ksdd=x"])
    with pytest.raises(SystemExit, match="among the runs"):
        module.main()


def test_compare_runs_worst_margin_criterion_prefers_the_candidate_that_never_loses(tmp_path, monkeypatch, capsys,
                                                                                      evaluate_recipe):
    import sys
    module = evaluate_recipe("compare_runs")
    # pixel AP (grid / hazelnut / ksdd): cai 1.00 / 1.00 / 0.20, cai-n 0.57 / 0.65 / 0.41, cutpaste 0.20 / 0.16 / 0.34
    strengths = {"grid": (8.0, 2.0, 1.0), "hazelnut": (8.0, 2.0, 1.0), "ksdd": (1.0, 2.0, 1.2)}
    runs = [str(_run(tmp_path / f"r_{t}", t, ["cai", "cai-n", "cutpaste"], list(v))) for t, v in strengths.items()]
    fd = tmp_path / "fd.json"
    fd.write_text(json.dumps({"cai-n": 10.0}))
    out = tmp_path / "out.json"
    chosen = {}
    for criterion in ("mean", "worst-margin"):
        monkeypatch.setattr(sys, "argv", ["compare_runs", *runs, "--candidates", "cai,cai-n", "--baselines", "cutpaste",
                                          "--fd-tolerance", "100", "--criterion", criterion, "--n-boot", "20",
                                          "--json", str(out), *[f"--fd={t}={fd}" for t in strengths]])
        module.main()
        loo = json.loads(out.read_text())["loo"]
        chosen[criterion] = {t: fold["chosen"] for t, fold in loo.items()}
        grid = loo["grid"]["score_on_others"]  # chosen on hazelnut + ksdd
        targets = json.loads(out.read_text())["per_target"]
        ap = {t: {s: row["ap"] for s, row in rows.items()} for t, rows in targets.items()}
        expect = {c: (ap["hazelnut"][c] + ap["ksdd"][c]) / 2 if criterion == "mean"
                  else min(ap[t][c] - ap[t]["cutpaste"] for t in ("hazelnut", "ksdd")) for c in ("cai", "cai-n")}
        assert grid == pytest.approx(expect)
    # holding out grid: cai has the higher mean on hazelnut + ksdd, but loses to cutpaste on ksdd
    assert chosen["mean"]["grid"] == "cai" and chosen["worst-margin"]["grid"] == "cai-n"
    assert "worst margin over the best baseline" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["compare_runs", *runs, "--candidates", "cai", "--baselines", "draem",
                                      "--criterion", "worst-margin"])
    with pytest.raises(SystemExit, match="none of the baselines"):
        module.main()


def test_choose_with_few_defects_prints_each_target_and_k(tmp_path, monkeypatch, capsys, evaluate_recipe):
    import sys
    module = evaluate_recipe("choose_with_few_defects")
    images = ("good/a.png", "crack/b.png", "crack/c.png", "good/d.png")  # _run marks b and c defective
    run = _run(tmp_path / "w1_grid", "grid", ["cai", "cai-n"], [0.2, 4.0], images=images)
    out = tmp_path / "choice.json"
    monkeypatch.setattr(sys, "argv", ["choose", str(run), "--candidates", "cai,cai-n", "--k", "1,2",
                                      "--draws", "50", "--json", str(out)])
    module.main()
    text = capsys.readouterr().out
    assert "| grid | 1 | 2 |" in text
    assert "k must be in [1, 1]" in text  # k = 2 would leave no defect held out: reported, not a crash
    figures = json.loads(out.read_text())["targets"]["grid"]["k"]
    assert set(figures) == {"1"} and figures["1"]["chosen"]["cai-n"] == 1.0  # the far stronger one
    assert figures["1"]["gain_mean"] > 0 and figures["1"]["picked_best"] == 1.0
    assert "k=1: smallest mean gain +" in text and "k=2: drawn on no target" in text
    lines = module.rule_lines({"a": {"k": {1: {"gain_mean": 0.02, "loss_share": 0.0}, 2: {"gain_mean": 0.01, "loss_share": 0.1}}},
                               "b": {"k": {1: {"gain_mean": -0.004, "loss_share": 0.12}}}}, [1, 2], 5.0)
    assert lines == ["k=1: smallest mean gain -0.40 (b); largest share of draws losing > 5: 12.0% (b)",
                     "k=2: smallest mean gain +1.00 (a); largest share of draws losing > 5: 10.0% (a); not drawn on b"]
    monkeypatch.setattr(sys, "argv", ["choose", str(run), "--candidates", "cai-n", "--default", "cai"])
    with pytest.raises(SystemExit, match="--default"):
        module.main()


def test_renames_apply_in_order_and_refuse_a_clash(tmp_path):
    from cai.eval.collect import rename_synthesizers
    targets = load_runs([_run(tmp_path / "r_grid", "grid", ["cai", "cai+paste75", "draem"], [1.0, 2.0, 0.5])])
    entries = dict(targets["grid"])
    rename_synthesizers(targets, ["cai=cai+paste50", "cai+paste75=cai"])  # the old default first, then the new
    assert targets["grid"]["cai"] is entries["cai+paste75"] and targets["grid"]["cai+paste50"] is entries["cai"]
    assert sorted(targets["grid"]) == ["cai", "cai+paste50", "draem"]
    with pytest.raises(ValueError, match="already has a synthesizer named draem"):
        rename_synthesizers(targets, ["cai=draem"])
    with pytest.raises(ValueError, match="NAME=AS"):
        rename_synthesizers(targets, ["cai"])
    rename_synthesizers(targets, ["nsa-n=x"])  # a name no target has: nothing to do
    assert sorted(targets["grid"]) == ["cai", "cai+paste50", "draem"]


def test_a_rename_can_name_its_target(tmp_path):
    from cai.eval.collect import rename_synthesizers
    targets = load_runs([_run(tmp_path / "r_grid", "grid", ["cai", "draem"], [1.0, 0.5]),
                         _run(tmp_path / "r_ksdd", "ksdd", ["cai", "draem"], [2.0, 0.7])])
    ksdd_cai = targets["ksdd"]["cai"]
    rename_synthesizers(targets, ["ksdd:cai=cai+paste75"])  # runs made under another default, one target only
    assert sorted(targets["grid"]) == ["cai", "draem"]
    assert sorted(targets["ksdd"]) == ["cai+paste75", "draem"] and targets["ksdd"]["cai+paste75"] is ksdd_cai
    with pytest.raises(ValueError, match="no target 'hazelnut'"):
        rename_synthesizers(targets, ["hazelnut:cai=x"])
    with pytest.raises(ValueError, match="TARGET:NAME=AS"):
        rename_synthesizers(targets, [":cai=x"])
    with pytest.raises(ValueError, match="already has a synthesizer named draem"):
        rename_synthesizers(targets, ["grid:cai=draem"])


def test_collect_tables_takes_renames(tmp_path, monkeypatch, capsys, evaluate_recipe):
    import sys
    module = evaluate_recipe("collect_tables")
    run = _run(tmp_path / "r_grid", "grid", ["cai", "cai+paste75", "cutpaste"], [1.0, 3.0, 0.5])
    own = _run(tmp_path / "r_own", "my_parts", ["cai", "draem"], [1.0, 0.5])  # a target the recipe has no title for
    monkeypatch.setattr(sys, "argv", ["collect_tables", str(run), str(own), "--n-boot", "50", "--alias",
                                      "cai=cai+paste50", "--alias", "cai+paste75=cai"])
    module.main()
    table1 = capsys.readouterr().out.split("### Table 3")[0]
    assert "| cai | 2 |" in table1 and "| cutpaste | 2 |" in table1 and "cai+paste75" not in table1
    assert table1.index("**MVTec grid**") < table1.index("**my_parts**") and "| draem | 2 |" in table1
    monkeypatch.setattr(sys, "argv", ["collect_tables", str(run), "--alias", "cai=cutpaste"])
    with pytest.raises(SystemExit, match="already has"):
        module.main()
