"""recipes/evaluate/choose_and_build.py on the tiny folder target of test_evaluate (three defects: it
chooses; two: it keeps the first candidate without evaluating)."""
import json
import shutil

from test_evaluate import SIZE, tiny  # noqa: F401  (the module fixture)


def test_choose_then_build(tiny, tmp_path, evaluate_recipe, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CAI_HUB_CACHE", str(tmp_path / "cache"))
    recipe = evaluate_recipe("choose_and_build")
    args = ["--normals", str(tiny / "tgt"), "--defects", str(tiny / "test"), "--daad", str(tiny / "aset"),
            "--candidates", "cai,cai+nsan50", "--seeds", "1", "--epochs", "1", "--size", str(SIZE),
            "--per-image", "2", "--quiet"]
    choice = recipe.main(args + ["--out", str(tmp_path / "three"), "--jobs", "2", "--threads", "2"])
    assert choice["defects"] == 3 and set(choice["pixel_ap"]) == {"cai", "cai+nsan50"}
    best = max(choice["pixel_ap"].values())
    assert choice["pixel_ap"][choice["chosen"]] == best
    results = json.loads((tmp_path / "three" / "choice" / "results.json").read_text())
    assert results["jobs"] == 2 and results["threads"] == 1  # torch threads per job: 2 // 2
    assert results["synthesizers"][choice["chosen"]]["summary"]["pixel_ap"][0] == best
    summary = json.loads((tmp_path / "three" / "synthetic" / "summary.json").read_text())
    assert summary["synthesizer"] == choice["chosen"] and summary["made"] == choice["made"] > 0
    assert json.loads((tmp_path / "three" / "choice.json").read_text()) == choice

    few = tmp_path / "few"
    shutil.copytree(tiny / "test", few)
    shutil.rmtree(few / "images" / "blob")
    shutil.rmtree(few / "masks" / "blob")
    kept = recipe.main([a if a != str(tiny / "test") else str(few) for a in args] + ["--out", str(tmp_path / "two")])
    assert kept == {"chosen": "cai", "defects": 2, "pixel_ap": {}, "margin": 0.0, "made": kept["made"]}
    assert kept["made"] > 0
    assert not (tmp_path / "two" / "choice").exists()


def test_choose_keeps_the_first_candidate_within_the_margin(evaluate_recipe):
    recipe = evaluate_recipe("choose_and_build")
    results = {"synthesizers": {name: {"summary": {"pixel_ap": [ap, 0.0]}} for name, ap in
                                (("cai", 0.50), ("cai+paste", 0.53), ("cai+nsanv25", 0.53))}}
    names = ["cai", "cai+paste", "cai+nsanv25"]
    assert recipe.choose(results, names)[0] == "cai+paste"  # the best, the first of ties
    assert recipe.choose(results, names, margin=0.02)[0] == "cai+paste"  # 3 points > 2
    assert recipe.choose(results, names, margin=0.05)[0] == "cai"  # 3 points <= 5: the default is kept
    assert recipe.choose(results, names, margin=0.05)[1] == {"cai": 0.50, "cai+paste": 0.53, "cai+nsanv25": 0.53}
