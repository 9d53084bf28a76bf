import math

import numpy as np
import pytest

from keras_lr import suggest
from keras_lr._detect import ema_smooth

LRS = np.geomspace(1e-6, 10.0, 100)


def curve(center=-3.0, seed=None, noise=0.0):
    """A classic range-test curve: plateau, descent around 10**center, then a
    blow-up that sets in about a decade and a half above it."""
    x = np.log10(LRS)
    losses = (
        2.3 - 2.0 / (1 + np.exp(-3 * (x - center))) + np.exp(3 * (x - center - 1.5))
    )
    if seed is not None:
        losses = losses * np.random.default_rng(seed).lognormal(0, noise, LRS.size)
    return losses


def brute_force_lds_valley(lrs, smoothed):
    """Independent O(n^2) longest decreasing run, written from the description."""
    n = len(smoothed)
    best_len, best_end = 1, 0
    lengths = [1] * n
    for i in range(n):
        for j in range(i):
            if smoothed[j] > smoothed[i]:
                lengths[i] = max(lengths[i], lengths[j] + 1)
        if lengths[i] > best_len:
            best_len, best_end = lengths[i], i
    start = best_end - best_len
    width = best_end - start
    return lrs[start + width // 3 + int(width / 6)]


def test_valley_matches_independent_implementation():
    for seed in range(5):
        losses = curve(seed=seed, noise=0.05)
        smoothed = ema_smooth(losses, 0.98)
        n = len(LRS)
        lrs_t, sm_t = LRS[n // 10 : n - 5], smoothed[n // 10 : n - 5]
        assert suggest.valley(LRS, losses) == pytest.approx(
            brute_force_lds_valley(lrs_t, sm_t)
        )


def test_minimum_is_a_tenth_of_the_argmin():
    losses = (np.log10(LRS) + 2.0) ** 2  # minimum exactly at 1e-2
    got = suggest.minimum(LRS, losses, smoothing=0.0)
    assert got == pytest.approx(LRS[np.argmin(losses)] / 10)


def test_steep_and_steepest_find_the_steepest_descent():
    losses = 2.0 - np.tanh(np.log10(LRS) + 3.0)  # steepest at 1e-3
    assert suggest.steep(LRS, losses, smoothing=0.0) == pytest.approx(1e-3, rel=0.15)
    assert suggest.steepest(LRS, losses, smoothing=0.0) == pytest.approx(1e-3, rel=0.15)


@pytest.mark.parametrize("center", [-4.0, -3.0, -2.0, -1.0])
def test_default_lies_inside_the_descent(center):
    got = suggest.default(LRS, curve(center))
    # Below the minimum, above the plateau's end.
    assert 10 ** (center - 1.0) < got < 10 ** (center + 1.0)


def test_default_is_below_a_sharp_minimum():
    # Found in QA (the 1cycle example's sweep on PyTorch): a sharp V at the
    # minimum. The slope cut to the descent before differentiating took a
    # one-sided difference at the minimum, the steepest of the segment, and
    # the suggestion was the minimum's own rate.
    losses = [2.341, 2.367, 2.378, 2.369, 2.33, 2.351, 2.314, 2.318, 2.319, 2.354]
    losses += [2.33, 2.342, 2.372, 2.324, 2.315, 2.349, 2.31, 2.36, 2.27, 2.329]
    losses += [2.293, 2.273, 2.258, 2.2, 2.228, 2.167, 2.128, 2.044, 1.774, 1.854]
    losses += [4.652, 2.291, 2.278, 2.458, 2.323, 2.314, 2.338, 2.323, 2.334, 2.446]
    lrs = np.geomspace(1e-5, 10.0, 40)
    _, i_min, smoothed = suggest._descent(lrs, np.asarray(losses))
    got = suggest.default(lrs, losses)
    assert got < lrs[i_min] / 1.1
    # The steepest point by central differences of the smoothed curve.
    i_start, _, _ = suggest._descent(lrs, np.asarray(losses))
    slope = np.gradient(smoothed, np.log(lrs))
    i_steep = i_start + int(np.argmin(slope[i_start : i_min + 1]))
    assert got == pytest.approx(np.sqrt(lrs[i_steep] * lrs[i_min]))


def test_default_follows_the_curve_when_it_shifts():
    a = suggest.default(LRS, curve(-4.0))
    b = suggest.default(LRS, curve(-2.0))
    assert b / a == pytest.approx(100.0, rel=0.35)


def test_default_is_stable_under_noise():
    clean = suggest.default(LRS, curve())
    for seed in range(10):
        noisy = suggest.default(LRS, curve(seed=seed, noise=0.1))
        assert abs(np.log10(noisy / clean)) < 0.5


@pytest.mark.parametrize("rule", sorted(suggest.RULES))
def test_rules_are_safe_with_nan_zero_and_negative(rule):
    fn = suggest.RULES[rule]
    losses = curve()
    with_nan = losses.copy()
    with_nan[80:] = np.nan
    assert np.isfinite(fn(LRS, with_nan))
    assert fn(LRS, with_nan) <= LRS[79]
    assert np.isfinite(fn(LRS, losses - 5.0))  # negative losses
    assert np.isfinite(fn(LRS, np.zeros_like(losses)))  # flat zero


@pytest.mark.parametrize("rule", sorted(suggest.RULES))
def test_rules_refuse_too_short_curves(rule):
    with pytest.raises(ValueError, match="finite points"):
        suggest.RULES[rule](LRS[:2], np.array([1.0, np.nan]))


def test_clean_curve_checks_shapes_and_rates():
    with pytest.raises(ValueError, match="same length"):
        suggest.clean_curve([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="positive"):
        suggest.clean_curve([0.0, 0.2], [1.0, 1.0])


def test_candidates_are_a_ladder_holding_the_default():
    losses = curve(-3.0)
    cands = suggest.candidates(LRS, losses, num=4)
    assert cands == sorted(cands) and 2 <= len(cands) <= 4
    assert any(c == pytest.approx(suggest.default(LRS, losses)) for c in cands)
    # The ladder brackets the rate at the curve's minimum, half-decade rungs.
    assert min(cands) < LRS[np.argmin(losses)] < max(cands)
    assert max(cands) / min(cands) == pytest.approx(10**1.5, rel=0.3)


def test_race_winner_is_the_vertex_of_a_numpy_parabola():
    lrs = np.array([1e-4, 10**-3.5, 1e-3, 10**-2.5])
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.uniform(0.5, 1.0, size=4)
        i = int(np.argmin(scores))
        got = suggest.race_winner(lrs, scores)
        if i == 0:
            assert got == lrs[0]
            continue
        if i == 3:  # the top of the ladder: halfway back to its neighbour
            assert got == pytest.approx(math.sqrt(lrs[3] * lrs[2]), rel=1e-12)
            continue
        x = np.log(lrs[i - 1 : i + 2])
        a, b, _ = np.polyfit(x, scores[i - 1 : i + 2], 2)
        expected = np.exp(np.clip(-b / (2 * a), x[0], x[2]))
        assert got == pytest.approx(expected, rel=1e-9)
        assert lrs[i - 1] <= got <= lrs[i + 1]


def test_race_winner_recovers_the_minimum_of_a_quadratic():
    lrs = np.geomspace(1e-4, 1e-1, 4)
    true = 3e-3
    scores = (np.log(lrs) - np.log(true)) ** 2
    assert suggest.race_winner(lrs, scores) == pytest.approx(true, rel=1e-9)


def test_race_winner_one_standard_error_rule_on_paired_samples():
    lrs = [1e-3, 1e-2, 1e-1]
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 0.3, size=8)  # chunk difficulty, common to all
    best = 0.5 + shared
    scores = [None, float(best.mean()), 0.9]
    # Below the best by noise that its paired differences cannot tell from
    # zero: mean(d) <= std(d) / sqrt(8), so the lower rate.
    noise = rng.normal(0.0, 0.05, size=8)
    noise -= noise.mean() - 0.005  # mean difference 0.005
    below = tied_below = best + noise
    d = below - best
    assert d.mean() <= d.std(ddof=1) / np.sqrt(8)
    scores[0] = float(below.mean())
    samples = [below, best, best + 0.4]
    assert suggest.race_winner(lrs, scores, samples) == 1e-3
    # Consistently worse by 0.05 on every chunk: the paired test sees it
    # (an unpaired comparison, against the chunks' spread of 0.3, would not).
    below = best + 0.05 + rng.normal(0.0, 0.005, size=8)
    assert below.mean() - best.mean() < best.std(ddof=1) / np.sqrt(8)
    scores[0] = float(below.mean())
    samples = [below, best, best + 0.4]
    without = suggest.race_winner(lrs, scores)
    assert suggest.race_winner(lrs, scores, samples) == without
    assert without > 1e-3  # the parabola's vertex, between the candidates
    # No samples for a candidate, samples of different lengths, a NaN: the
    # rule does not apply.
    tied = [tied_below, best, best + 0.4]
    scores = [float(v.mean()) for v in tied]
    assert suggest.race_winner(lrs, scores, tied) == 1e-3
    for broken in (
        [None, best, best + 0.4],
        [best[:4], best, best + 0.4],
        [np.r_[best[:7], np.nan], best, best + 0.4],
    ):
        assert suggest.race_winner(lrs, scores, broken) == suggest.race_winner(
            lrs, scores
        )
    # The best at the bottom: nothing below it.
    assert suggest.race_winner(lrs, [0.4, 0.5, 0.6], tied) == 1e-3


def test_race_winner_treats_divergence_as_worst():
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    # A NaN neighbour: no interpolation, the best finite candidate itself.
    assert suggest.race_winner(lrs, [0.8, 0.5, np.nan, np.inf]) == 1e-2
    assert suggest.race_winner(lrs, [np.inf, 0.6, 0.5, 0.7]) < 1e-1 * 1.0001
    # Ties: flat scores have no vertex; the best (first) candidate is kept.
    assert suggest.race_winner(lrs, [0.5, 0.5, 0.5, 0.5]) == 1e-3
    # The top wins next to a diverged neighbour: still halfway back.
    assert suggest.race_winner(lrs, [0.8, 0.7, np.inf, 0.5]) == pytest.approx(
        math.sqrt(0.1), rel=1e-12
    )
    # One candidate, or two: the same rules.
    assert suggest.race_winner([2e-3], [0.4]) == 2e-3
    assert suggest.race_winner([1e-3, 4e-3], [0.5, 0.4]) == pytest.approx(2e-3)


def test_race_winner_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        suggest.race_winner([1e-3, 1e-2], [0.5])
    with pytest.raises(ValueError, match="same length"):
        suggest.race_winner([], [])
    with pytest.raises(ValueError, match="increasing"):
        suggest.race_winner([1e-2, 1e-3], [0.5, 0.4])
    with pytest.raises(ValueError, match="No finite score"):
        suggest.race_winner([1e-3, 1e-2], [np.nan, np.inf])


def _rule_calls():
    """Each rule, called with (lrs, losses)."""
    yield from suggest.RULES.values()
    yield suggest.candidates
    yield suggest.clean_curve


@pytest.mark.parametrize("fn", list(_rule_calls()), ids=lambda f: f.__name__)
def test_rules_refuse_rates_out_of_order(fn):
    losses = curve()
    with pytest.raises(ValueError, match=r"strictly increasing.*lrs\[0\]=10\.0"):
        fn(LRS[::-1], losses[::-1])
    repeated = np.repeat(LRS[::2], 2)
    with pytest.raises(ValueError, match=r"strictly increasing.*lrs\[0\].*lrs\[1\]"):
        fn(repeated, losses)
    with pytest.raises(ValueError, match="same length"):
        fn(LRS, losses[:-1])


def test_steep_on_repeated_rates_does_not_divide_by_zero():
    # Before: a slope of -inf at a repeated rate picked that rate silently.
    with np.errstate(all="raise"), pytest.raises(ValueError, match="increasing"):
        suggest.steep(np.repeat(LRS[::2], 2), curve(), smoothing=0.0)


@pytest.mark.parametrize("num", [0, -1])
def test_candidates_num_must_be_at_least_one(num):
    with pytest.raises(ValueError, match=f"`num` must be >= 1. Received: num={num}"):
        suggest.candidates(LRS, curve(), num=num)


@pytest.mark.parametrize("num", [2.0, "3", None, True])
def test_candidates_num_must_be_an_int(num):
    with pytest.raises(TypeError, match="`num` must be an integer"):
        suggest.candidates(LRS, curve(), num=num)


def test_candidates_with_one_rung():
    (only,) = suggest.candidates(LRS, curve(), num=1)
    assert only == pytest.approx(suggest.default(LRS, curve()))


@pytest.mark.parametrize("rule", ["valley", "steep", "minimum", "steepest"])
@pytest.mark.parametrize("smoothing", [1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_smoothing_must_be_in_the_unit_interval(rule, smoothing):
    # smoothing=1.0 gave an all-NaN smoothed curve and a meaningless rate.
    with pytest.raises(ValueError, match=r"`smoothing` must be in \[0.0, 1.0\)"):
        suggest.RULES[rule](LRS, curve(), smoothing=smoothing)


@pytest.mark.parametrize("rule", ["valley", "steep", "minimum", "steepest"])
def test_smoothing_must_be_a_number(rule):
    with pytest.raises(TypeError, match="`smoothing` must be a number"):
        suggest.RULES[rule](LRS, curve(), smoothing="0.9")
    assert np.isfinite(suggest.RULES[rule](LRS, curve(), smoothing=np.float32(0.5)))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"skip_start": -1}, ValueError),
        ({"skip_end": -2}, ValueError),
        ({"skip_start": 1.5}, TypeError),
        ({"skip_end": "5"}, TypeError),
    ],
)
def test_steepest_checks_its_skips(kwargs, error):
    lrs = np.geomspace(1e-5, 1.0, 60)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3.0)
    name = next(iter(kwargs))
    with pytest.raises(error, match=f"`{name}`"):
        suggest.steepest(lrs, losses, **kwargs)


def test_candidates_are_floats():
    assert all(type(c) is float for c in suggest.candidates(LRS, curve(-3.0)))
