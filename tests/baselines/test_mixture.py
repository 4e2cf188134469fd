import numpy as np
import pytest

from cai.baselines import SlotMixture, make_synthesizer
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
