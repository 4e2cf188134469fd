from collections import Counter

import numpy as np
import pytest

from cai.baselines import SlotMixture, VisibleOnly, make_synthesizer
from cai.baselines._common import SlotSynthesizer
from cai.baselines.mixture import MIX_STREAM
from cai.baselines.registry import uses_normals
from cai.engine.synthesizer import PseudoAnomaly, Skipped
from tests.baselines.test_baselines import FULL, _disk, _key


def _brute_force_other(seed, i, k, share):
    return np.random.default_rng([seed, i, k, MIX_STREAM]).random() < share


@pytest.mark.parametrize("name,main,other", [("cai+nsan25", "cai", "nsa-n"), ("cai+nsam50", "cai", "nsa-m"),
                                             ("cai-n+paste+nsan40", "cai-n+paste", "nsa-n")])
def test_each_slot_is_exactly_one_of_the_two_synthesizers(name, main, other, bank, normals):
    mix = make_synthesizer(name, bank=bank, normals=normals)
    assert isinstance(mix, SlotMixture) and mix.name == name
    share = int(name[-2:]) / 100
    alone_main = make_synthesizer(main, bank=bank, normals=normals)
    alone_other = make_synthesizer(other, normals=normals)
    picked = {"main": 0, "other": 0}
    for i, seed in [(0, 3), (1, 3), (2, 8), (3, 11)]:
        got = mix.synthesize(normals[i], FULL, i, seed)
        want_main = alone_main.synthesize(normals[i], FULL, i, seed)
        want_other = alone_other.synthesize(normals[i], FULL, i, seed)
        assert len(got) == 10
        for k, r in enumerate(got):
            from_other = _brute_force_other(seed, i, k, share)
            assert _key(r) == _key((want_other if from_other else want_main)[k])
            picked["other" if from_other else "main"] += 1
    assert picked["main"] and picked["other"]  # both synthesizers are used in these 40 slots


def test_share_of_slots_follows_the_modifier(bank, normals):
    mix = make_synthesizer("cai+nsan25", bank=bank, normals=normals)
    draws = [mix.uses_other(i, seed, k) for seed in range(20) for i in range(10) for k in range(10)]
    # 2000 Bernoulli(0.25) draws: mean within 4.5 standard errors (0.0097)
    assert abs(np.mean(draws) - 0.25) < 0.044
    assert make_synthesizer("cai+nsam10", bank=bank, normals=normals).share == pytest.approx(0.10)
    assert make_synthesizer("cai+nsan99", bank=bank, normals=normals).share == pytest.approx(0.99)


def test_mixture_grey_object_target_and_empty_foreground(bank, normals):
    mix = make_synthesizer("cai+nsan50", bank=bank, normals=normals)
    fg = _disk()
    results = mix.synthesize(normals[1], fg, 1, 2, is_grey=True)
    made = [r for r in results if isinstance(r, PseudoAnomaly)]
    assert {r.anomaly_class for r in made} >= {"nsa-n"} and len(made) >= 8
    for r in made:
        assert r.image.shape == fg.shape and r.image.dtype == np.uint8
        assert not (r.mask & ~fg).any()
    empty = mix.synthesize(normals[1], np.zeros_like(fg), 1, 2)
    assert [type(r) for r in empty] == [Skipped] * 10
    assert {r.reason for r in empty} == {"empty_foreground"}


def test_mixture_is_independent_of_call_order(bank, normals):
    a = make_synthesizer("cai+nsam25", bank=bank, normals=normals)
    runs = {i: a.synthesize(normals[i], FULL, i, 5) for i in (2, 0, 1)}
    alone = make_synthesizer("cai+nsam25", bank=bank, normals=normals).synthesize(normals[1], FULL, 1, 5)
    assert [_key(r) for r in alone] == [_key(r) for r in runs[1]]


def test_mixture_name_errors(bank, normals):
    with pytest.raises(ValueError, match="must come last"):
        make_synthesizer("cai+nsan25+refine", bank=bank, normals=normals)
    with pytest.raises(ValueError, match="must come last"):
        make_synthesizer("cai+nsan25+nsam25", bank=bank, normals=normals)
    with pytest.raises(ValueError, match="unknown modifier"):
        make_synthesizer("cai+nsan0", bank=bank, normals=normals)
    with pytest.raises(ValueError, match="unknown modifier"):
        make_synthesizer("cai+nsan100", bank=bank, normals=normals)
    with pytest.raises(ValueError, match="cai-\\* synthesizers only"):
        make_synthesizer("nsa-n+nsan25", normals=normals)
    with pytest.raises(ValueError, match="normal images"):
        make_synthesizer("cai+nsan25", bank=bank)
    with pytest.raises(ValueError, match="PatternBank"):
        make_synthesizer("cai+nsan25", normals=normals)
    with pytest.raises(ValueError, match="share"):
        SlotMixture(make_synthesizer("cai", bank=bank), make_synthesizer("nsa-n", normals=normals), 1.0, "x")
    with pytest.raises(ValueError, match="one slot at a time"):
        SlotMixture(make_synthesizer("cai", bank=bank), make_synthesizer("cai", bank=bank), 0.5, "x")


def test_uses_normals():
    assert uses_normals("nsa-n") and uses_normals("cai+nsan25") and uses_normals("cai-n+refine+nsam10")
    assert not uses_normals("cai") and not uses_normals("cai+paste75") and not uses_normals("draem")
    assert not uses_normals("cai+nsan0")


def _stands(r, normal, rng_after_try):
    from cai.engine.visibility import stands_out
    return stands_out(normal, r.image, r.placed_mask, FULL, rng_after_try)


def _novel(r, normal, rng_after_try):
    from cai.engine.visibility import is_novel
    return is_novel(normal, r.image, r.placed_mask, FULL, rng_after_try)


def _distinct(r, normal, rng_after_try):
    from cai.engine.visibility import is_novel
    return is_novel(normal, r.image, r.placed_mask, FULL, rng_after_try, quantile=1.0, factor=2.0)


@pytest.mark.parametrize("letter,passes,tries", [("v", _stands, 8), ("u", _novel, 8), ("d", _distinct, 1)])
def test_visible_mixture_slots_are_cai_or_nsa_patches_that_pass_the_gate(bank, normals, letter, passes, tries):
    if letter == "d":  # the strict gate passes patches that break a lattice, almost never a noise texture's
        y, x = np.mgrid[:64, :64]
        normals = [np.repeat(np.where(((y + i) % 8 < 2) | ((x + 3 * i) % 8 < 2), 200, 50).astype(np.uint8)[..., None],
                             3, axis=2) for i in range(4)]
    gated = make_synthesizer(f"cai+nsan{letter}50", bank=bank, normals=normals)
    plain = make_synthesizer("cai+nsan50", bank=bank, normals=normals)
    alone_main = make_synthesizer("cai", bank=bank)
    nsa = make_synthesizer("nsa-n", normals=normals)
    assert isinstance(gated.other, VisibleOnly) and gated.keep_main_when_skipped
    kinds = Counter()
    for i, seed in [(0, 1), (1, 4), (2, 9), (3, 2)]:
        got = gated.synthesize(normals[i], FULL, i, seed)
        want_main = alone_main.synthesize(normals[i], FULL, i, seed)
        want_plain = plain.synthesize(normals[i], FULL, i, seed)
        for k, r in enumerate(got):
            if not gated.uses_other(i, seed, k):
                assert _key(r) == _key(want_main[k])
                kinds["cai"] += 1
                continue
            # brute force: NSA's own slot generator, tried up to 8 times, each try judged on a null drawn after it
            rng = np.random.default_rng([seed, i, k])
            want = want_main[k]
            for t in range(tries):
                made = nsa._one(normals[i], FULL, i, k, rng)
                if not isinstance(made, PseudoAnomaly):
                    break  # NSA itself failed: the slot keeps CAI's result
                if passes(made, normals[i], rng):
                    want = made
                    break
            assert _key(r) == _key(want)
            if want is want_main[k]:
                kinds["fallback"] += 1
            elif t == 0:
                assert _key(r) == _key(want_plain[k])  # first try: the ungated mixture's slot, byte for byte
                kinds["first"] += 1
            else:
                kinds["later"] += 1
    assert kinds["cai"] and kinds["first"] and kinds["fallback"] and bool(kinds["later"]) == (tries > 1), kinds


def test_visible_only_tries_then_skips(normals):
    calls = []

    class Faint(SlotSynthesizer):
        per_image = 3
        name = "faint"

        def _one(self, normal, foreground, normal_index, k, rng):
            calls.append(k)
            rng.random()
            mask = np.zeros(normal.shape[:2], bool)
            mask[28:34, 28:34] = True
            return PseudoAnomaly(image=normal.copy(), mask=mask, placed_mask=mask, k=k, anomaly_class="faint", scale="",
                                 str_ratio=0.0, resize_ratio=1.0, center=(30, 30), source_id="", source="normal",
                                 attempts=1, fidelity={}, resamples={})

    class Glaring(Faint):
        name = "glaring"

        def _one(self, normal, foreground, normal_index, k, rng):
            made = super()._one(normal, foreground, normal_index, k, rng)
            image = made.image.copy()
            image[made.mask] = 0 if normal[made.mask].mean() > 128 else 255
            return PseudoAnomaly(**{**made.__dict__, "image": image})

    gate = VisibleOnly(Faint(), tries=5)
    assert gate.per_image == 3 and gate.name == "faint+visible"
    out = gate.synthesize(normals[0], FULL, 0, 0)
    assert [(r.k, r.reason) for r in out] == [(0, "not_visible"), (1, "not_visible"), (2, "not_visible")]
    assert calls == [0] * 5 + [1] * 5 + [2] * 5  # an unchanged patch never stands out: every try is used

    class Fails(Faint):
        def _one(self, normal, foreground, normal_index, k, rng):
            return Skipped(k, "max_attempts")

    assert [r.reason for r in VisibleOnly(Fails()).synthesize(normals[0], FULL, 0, 0)] == ["max_attempts"] * 3
    assert VisibleOnly(Faint(), per_image=1).per_image == 1
    for bad, why in [({"tries": 0}, "tries"), ({"quantile": 1.0}, "quantile"), ({"null_places": 0}, "null_places"),
                     ({"footprint": "ring"}, "footprint")]:
        with pytest.raises(ValueError, match=why):
            VisibleOnly(Faint(), **bad)
    with pytest.raises(ValueError, match="one slot at a time"):
        VisibleOnly(object())
    with pytest.raises(ValueError, match="gate"):
        VisibleOnly(Faint(), gate="bright")
    for bad, why in [({"quantile": 1.0}, "quantile"), ({"factor": 2.0}, "factor"),
                     ({"gate": "novel", "factor": 0.5}, "factor"), ({"gate": "novel", "quantile": 1.5}, "quantile")]:
        with pytest.raises(ValueError, match=why):
            VisibleOnly(Faint(), **bad)
    assert VisibleOnly(Faint(), gate="novel", quantile=1.0, factor=2.0).factor == 2.0
    calls.clear()
    fg = np.zeros_like(FULL)
    fg[8:56, 8:56] = True  # the window (rows and columns 24-37: the mask + 4 px) lies inside; then it does not
    bright = VisibleOnly(Glaring(), tries=3, within_foreground=True)
    assert all(isinstance(r, PseudoAnomaly) for r in bright.synthesize(normals[0], fg, 0, 0))
    fg[:, 37:] = False
    assert [r.reason for r in bright.synthesize(normals[0], fg, 0, 0)] == ["not_visible"] * 3
    calls.clear()
    novel = VisibleOnly(Faint(), tries=2, gate="novel")
    assert novel.name == "faint+novel"  # an unchanged window repeats nowhere better than ordinary ones do
    assert [r.reason for r in novel.synthesize(normals[0], FULL, 0, 0)] == ["not_novel"] * 3 and len(calls) == 6


def test_visible_mixture_names(bank, normals):
    from cai.baselines.registry import parse_synthesizer_name
    assert parse_synthesizer_name("cai+nsanv25") == ("cai", [], ("nsa-n", 0.25, "stands_out", False))
    assert parse_synthesizer_name("cai+paste+nsamv10") == ("cai", ["paste"], ("nsa-m", 0.10, "stands_out", False))
    assert parse_synthesizer_name("cai+nsan25")[2] == ("nsa-n", 0.25, None, False)
    assert parse_synthesizer_name("cai+nsanvs25")[2] == ("nsa-n", 0.25, "stands_out", True)
    assert parse_synthesizer_name("cai+nsams5")[2] == ("nsa-m", 0.05, None, True)
    assert parse_synthesizer_name("cai+nsanus25")[2] == ("nsa-n", 0.25, "novel", True)
    novel = make_synthesizer("cai+nsanus25", bank=bank, normals=normals)
    assert novel.other.gate == "novel" and novel.other.inner.half_width == (0.03, 0.1) and novel.keep_main_when_skipped
    with pytest.raises(ValueError, match="unknown modifier"):
        make_synthesizer("cai+nsanvu25", bank=bank, normals=normals)  # one gate
    distinct = make_synthesizer("cai+nsands25", bank=bank, normals=normals).other
    assert (distinct.gate, distinct.tries, distinct.quantile, distinct.factor) == ("novel", 1, 1.0, 2.0)
    inside = make_synthesizer("cai+nsanis25", bank=bank, normals=normals).other
    assert inside.within_foreground and not distinct.within_foreground
    assert {f: getattr(inside, f) for f in ("gate", "tries", "quantile", "factor")} == {
        f: getattr(distinct, f) for f in ("gate", "tries", "quantile", "factor")}
    with pytest.raises(ValueError, match="unknown modifier"):
        make_synthesizer("cai+nsansv25", bank=bank, normals=normals)  # v before s
    assert uses_normals("cai+nsanv25") and not uses_normals("cai+nsanv0")
    with pytest.raises(ValueError, match="must come last"):
        make_synthesizer("cai+nsanv25+refine", bank=bank, normals=normals)
    with pytest.raises(ValueError, match="unknown modifier"):
        make_synthesizer("cai+nsanx25", bank=bank, normals=normals)


def test_gate_on_the_placed_region_refuses_retextured_patches_that_a_label_gate_lets_through():
    """A rectangle of fresh noise on a noise texture: nothing stands out, so the placed region passes about
    as often as the texture's own 10 % tail; the label (the pixels that changed most) is a set of bright
    specks whose mean is above its ring's by construction, so a label gate passes nearly all."""
    passed = Counter()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        normal = np.clip(rng.normal(128, 20, (64, 64)), 0, 255).astype(np.uint8)
        image = normal.copy()
        image[16:48, 16:48] = np.clip(rng.normal(128, 20, (32, 32)), 0, 255).astype(np.uint8)
        placed = np.zeros((64, 64), bool)
        placed[16:48, 16:48] = True
        label = (image.astype(int) - normal > 25) & placed
        made = PseudoAnomaly(image=image, mask=label, placed_mask=placed, k=0, anomaly_class="x", scale="",
                             str_ratio=0.0, resize_ratio=1.0, center=(32, 32), source_id="", source="normal",
                             attempts=1, fidelity={}, resamples={})

        class Retexture(SlotSynthesizer):
            per_image = 1
            name = "retexture"

            def _one(self, normal_, foreground, normal_index, k, rng_, made=made):
                return made

        for footprint in ("placed", "label"):
            out = VisibleOnly(Retexture(), tries=1, footprint=footprint).synthesize(normal, FULL, 0, seed)[0]
            passed[footprint] += isinstance(out, PseudoAnomaly)
    assert passed["placed"] <= 10 and passed["label"] >= 36, passed


def test_small_patch_mixture_draws_half_sides_in_the_small_bounds(bank, normals):
    from cai.baselines.registry import NSA_SMALL_HALF_WIDTH
    small = make_synthesizer("cai+nsans50", bank=bank, normals=normals)
    gated = make_synthesizer("cai+nsanvs50", bank=bank, normals=normals)
    assert small.other.half_width == NSA_SMALL_HALF_WIDTH and gated.other.inner.half_width == NSA_SMALL_HALF_WIDTH
    wide = make_synthesizer("cai+nsan50", bank=bank, normals=normals)
    areas = {"small": [], "wide": []}
    for name, mix in (("small", small), ("wide", wide)):
        for i in range(4):
            for k, r in enumerate(mix.synthesize(normals[i], FULL, i, 7)):
                if mix.uses_other(i, 7, k) and isinstance(r, PseudoAnomaly):
                    h = np.nonzero(r.placed_mask.any(axis=1))[0]
                    w = np.nonzero(r.placed_mask.any(axis=0))[0]
                    # side = 2 * half * image side, times NSA's resize in [0.7, 1.3]
                    assert h.size <= 1.3 * 2 * NSA_SMALL_HALF_WIDTH[1] * 64 + 1 or name == "wide"
                    assert w.size <= 1.3 * 2 * NSA_SMALL_HALF_WIDTH[1] * 64 + 1 or name == "wide"
                    areas[name].append(r.placed_mask.mean())
    assert areas["small"] and np.median(areas["small"]) < np.median(areas["wide"])
