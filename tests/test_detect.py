"""Tests of keras_lr._detect: the streaming divergence tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_lr._detect import LossWatch, ema_smooth, first_divergence


def healthy_curve(rng, steps=3000, start=2.3, floor=0.25, tau=400.0, sigma=0.35):
    """A noisy but healthy per-step loss curve, as small batches give.

    Exponential decay to a floor, times log-normal noise (right-skewed, like
    the mean loss of a small batch), plus rare outlier batches at 3x.
    """
    t = np.arange(steps)
    level = floor + (start - floor) * np.exp(-t / tau)
    noise = rng.lognormal(mean=-0.5 * sigma**2, sigma=sigma, size=steps)
    outliers = np.where(rng.random(steps) < 0.005, 3.0, 1.0)
    return level * noise * outliers


def detector_watch(**overrides):
    # The DivergenceDetector's defaults (kept in sync by
    # tests/test_callbacks_divergence.py::test_default_watch_matches).
    kwargs = dict(
        smoothing=0.95,
        best_ratio=3.0,
        spike_ratio=10.0,
        z_threshold=8.0,
        window=100,
        grace_steps=20,
        patience=3,
        log_z=True,
        rise_fraction=0.5,
        confirm=9,
        warmup=20,
    )
    kwargs.update(overrides)
    return LossWatch(**kwargs)


def test_ema_smooth_matches_closed_form():
    x = np.array([3.0, 1.0, 2.0, 5.0])
    beta = 0.7
    m, expected = 0.0, []
    for t, v in enumerate(x, start=1):
        m = beta * m + (1 - beta) * v
        expected.append(m / (1 - beta**t))
    np.testing.assert_allclose(ema_smooth(x, beta), expected)


def test_first_divergence_ratio_and_nonfinite():
    assert first_divergence([1.0, 0.5, 0.4, 1.7], smoothing=0.0, threshold=4.5) is None
    event = first_divergence([1.0, 0.5, 0.4, 1.7], smoothing=0.0, threshold=4.0)
    assert event.step == 3 and event.reason == "above_best"
    assert math.isclose(event.score, 1.7 / 0.4)
    event = first_divergence([1.0, float("inf")], smoothing=0.5, threshold=4.0)
    assert (event.step, event.reason) == (1, "nonfinite")


@pytest.mark.parametrize("seed", range(12))
def test_no_false_alarm_on_noisy_healthy_curves(seed):
    rng = np.random.default_rng(seed)
    sigma = [0.2, 0.35, 0.5][seed % 3]
    losses = healthy_curve(rng, sigma=sigma)
    assert detector_watch().update(losses) is None


def test_no_false_alarm_near_zero_loss():
    # Memorisation regime: losses ~1e-3 with batches 50x larger now and then.
    rng = np.random.default_rng(0)
    losses = np.concatenate([np.linspace(2.3, 0.01, 300), np.full(3000, 1e-3)])
    losses = losses * rng.lognormal(0, 0.5, losses.size)
    outlier = rng.random(losses.size) < 0.01
    outlier[:300] = False
    losses[outlier] *= 50
    assert detector_watch().update(losses) is None


def test_each_test_fires_on_its_fault():
    rng = np.random.default_rng(1)
    base = healthy_curve(rng, steps=600, sigma=0.2)
    # A sustained rise: loss x10 from step 500.
    bad = base.copy()
    bad[500:] *= 10
    event = detector_watch().update(bad)
    assert event is not None and 500 <= event.step <= 505
    # NaN: immediate, even in the grace period.
    bad = base.copy()
    bad[5] = np.nan
    event = detector_watch().update(bad)
    assert (event.step, event.reason) == (5, "nonfinite")
    # A gradual explosion.
    bad = base.copy()
    bad[400:] = bad[400] * np.exp(np.arange(200) / 10)
    event = detector_watch().update(bad)
    assert event is not None and 400 < event.step < 450


def test_patience_ignores_isolated_spikes():
    losses = np.full(200, 1.0)
    losses[100] = 50.0
    watch = LossWatch(smoothing=0.9, spike_ratio=5.0, patience=2)
    assert watch.update(losses) is None
    losses[101] = 50.0
    event = LossWatch(smoothing=0.9, spike_ratio=5.0, patience=2).update(losses)
    assert (event.step, event.reason) == (101, "spike")


def test_grace_period_and_rebase():
    watch = LossWatch(smoothing=0.0, spike_ratio=2.0, grace_steps=5)
    assert watch.in_grace
    assert watch.update([1.0, 5.0, 1.0, 1.0, 1.0]) is None  # spike in grace
    assert not watch.in_grace
    assert watch.update([5.0]).step == 5
    watch.rebase()
    assert watch.step == 6 and watch.in_grace
    assert watch.update([1.0, 5.0]) is None
    watch.rebase(step=100)
    assert watch.step == 100 and watch.update([1.0] * 5 + [5.0]).step == 105


def test_rise_fraction_gate_and_reference_kept_on_rebase():
    # Loss fell from 2 to 0.1; a 4x spike (0.4) gives back little progress.
    losses = [2.0] * 3 + [0.1] * 20 + [0.4] * 3
    plain = LossWatch(smoothing=0.0, spike_ratio=3.0)
    assert plain.update(losses).reason == "spike"
    gated = LossWatch(smoothing=0.0, spike_ratio=3.0, rise_fraction=0.5)
    assert gated.update(losses) is None
    assert gated.reference == 2.0
    # Giving back more than half of the progress fires.
    assert gated.update([1.5]).reason == "spike"
    gated.rebase()
    assert gated.reference == 2.0


def test_log_z_score():
    rng = np.random.default_rng(3)
    losses = [*rng.lognormal(0.0, 0.1, 60), np.e**1.5]
    event = LossWatch(smoothing=0.0, z_threshold=6.0, window=50, log_z=True).update(
        losses
    )
    assert event is not None and event.reason == "zscore" and event.step == 60
    # z on log-loss: a median of ~1 and a MAD of ~0.067 in log units.
    assert event.score > 6.0
    assert math.isclose(event.baseline, 1.0, rel_tol=0.1)
    # A non-positive loss switches the log test off rather than failing.
    watch = LossWatch(smoothing=0.0, z_threshold=6.0, window=10, log_z=True)
    assert watch.update([0.0] * 20 + [5.0]) is None


def test_healthy_flag_tracks_pending_violations():
    watch = LossWatch(smoothing=0.0, spike_ratio=2.0, patience=3)
    watch.update([1.0, 1.0])
    assert watch.healthy
    watch.update([5.0])
    assert not watch.healthy
    watch.update([1.0])
    assert watch.healthy


def test_steady_flag_refuses_a_rise_the_tests_have_yet_to_confirm():
    # A healthy descent, then losses 5x and more over the best: before the
    # tests confirm the rise (median of the last 9 halfway up, patience) the
    # watch is healthy, but no state to keep a snapshot of.
    watch = detector_watch()
    rng = np.random.default_rng(0)
    watch.update(np.linspace(2.3, 1.0, 60) * rng.lognormal(0, 0.05, 60))
    assert watch.healthy and watch.steady
    assert watch.update([5.0, 6.5]) is None
    assert watch.healthy and not watch.steady
    # Over healthy noisy curves, with their rare 3x outlier batches, it is
    # steady at all but a few steps (a snapshot is only put off a little).
    for seed in range(3):
        watch = detector_watch()
        unsteady = 0
        for x in healthy_curve(np.random.default_rng(seed))[:1500]:
            assert watch.update([x]) is None
            unsteady += not watch.steady
        assert unsteady < 0.05 * 1500


# Range-test rule and LossWatch basics ---------------------------------------
def test_ema_matches_closed_form():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, size=50)
    beta = 0.9
    got = ema_smooth(x, beta)
    # Closed form: s_t = sum_k (1-b) b^(t-k) x_k / (1 - b^t)
    for t in range(1, 51):
        k = np.arange(1, t + 1)
        expected = np.sum((1 - beta) * beta ** (t - k) * x[:t]) / (1 - beta**t)
        assert got[t - 1] == pytest.approx(expected, rel=1e-12)


def test_ema_zero_smoothing_is_identity():
    x = np.array([3.0, -1.0, 0.0])
    np.testing.assert_array_equal(ema_smooth(x, 0.0), x)


def test_divergence_on_ratio_to_best():
    losses = [2.0, 1.5, 1.0, 1.2, 3.9, 3.99]
    assert first_divergence(losses, smoothing=0.0, threshold=4.0) is None
    event = first_divergence([*losses, 4.5], smoothing=0.0, threshold=4.0)
    assert event.step == 6 and event.reason == "above_best"
    assert event.score == pytest.approx(4.5)


def test_divergence_on_nan_and_inf():
    for bad in (np.nan, np.inf):
        event = first_divergence([1.0, 0.9, bad, 0.1], smoothing=0.5, threshold=4.0)
        assert event.step == 2 and event.reason == "nonfinite"


def test_negative_and_zero_losses_do_not_false_alarm():
    losses = np.linspace(-1.0, -3.0, 40)  # a falling negative loss
    assert first_divergence(losses, smoothing=0.5, threshold=4.0) is None
    zeros = np.zeros(30)
    assert first_divergence(zeros, smoothing=0.9, threshold=4.0) is None
    # A negative loss that climbs far above its best does diverge.
    climbing = np.concatenate([np.linspace(-1, -2, 10), np.full(5, 5.0)])
    assert first_divergence(climbing, smoothing=0.0, threshold=4.0).step == 10


def test_noisy_healthy_curve_has_no_event():
    rng = np.random.default_rng(1)
    steps = np.arange(2000)
    # A falling loss with 30% multiplicative noise, as at batch size 16.
    losses = (0.3 + 2.0 * np.exp(-steps / 400)) * rng.lognormal(0.0, 0.3, size=2000)
    watch = LossWatch(smoothing=0.98, best_ratio=4.0, grace_steps=20, patience=3)
    assert watch.update(losses) is None


def test_spike_and_zscore_tests_with_patience():
    base = np.full(60, 1.0) + np.random.default_rng(2).normal(0, 0.01, 60)
    watch = LossWatch(smoothing=0.9, spike_ratio=3.0, grace_steps=5, patience=2)
    assert watch.update(base) is None
    assert watch.update([5.0]) is None  # one violation: patience not reached
    event = watch.update([5.0])
    assert event.reason == "spike" and event.step == 61
    z = LossWatch(smoothing=0.9, z_threshold=6.0, window=50)
    assert z.update(base) is None
    assert z.update([1.5]).reason == "zscore"


def test_grace_period_skips_ratio_tests_but_not_nan():
    watch = LossWatch(smoothing=0.0, spike_ratio=2.0, grace_steps=3)
    assert watch.update([1.0, 10.0, 1.0]) is None
    assert watch.update([np.nan]).reason == "nonfinite"


def test_blow_up_in_the_grace_period_is_an_event():
    # Adam at 300x its usual rate: the first update throws the loss up
    # ~900x, then the network sits dead at its starting loss. By the end of
    # the grace period the EMA has averaged the blow-up down to ~27x its best.
    rng = np.random.default_rng(3)
    dead = 2.3 + 0.05 * rng.random(60)
    losses = np.concatenate([[2.3, 2084.0, 7.5, 2.7, 2.6], dead])
    event = detector_watch().update(losses)
    assert event is not None and event.reason == "above_best"
    assert event.step == 3  # patience 3: steps 1, 2 and 3 in violation
    assert event.baseline == 2.3 and event.score > 100
    # The same blow-up two orders of magnitude smaller is left to the
    # regular tests after the grace period.
    smaller = np.concatenate([[2.3, 20.84, 7.5, 2.7, 2.6], dead])
    assert detector_watch().update(smaller) is None


def test_one_outlier_batch_in_the_grace_period_is_no_event():
    # Heavy-tailed targets: one batch's squared error 100x the others', at
    # any step of the grace period, falls short of patience or of 27x.
    rng = np.random.default_rng(4)
    for at in range(1, 20):
        losses = 1.0 + 0.1 * rng.random(60)
        losses[at] = 100.0
        assert detector_watch().update(losses) is None, at


def test_rebase_restarts_baselines():
    watch = LossWatch(smoothing=0.0, best_ratio=2.0)
    watch.update([1.0, 0.1])
    watch.rebase()
    assert watch.update([1.0, 1.1]) is None
    assert watch.step == 4


def test_lucky_first_batch_of_a_trained_model_rarely_alarms():
    # A model that already fits its data (fit resumed): log-normal batch
    # losses (median 0.01) and a lucky first batch, which sets the best
    # smoothed loss. Without the median confirmation and the provisional
    # best the ratio test fires on every stream. With them it used to fire
    # on 4 of these 40 streams at log-sd 0.75 and 12 at log-sd 1: all the
    # last 9 losses over 3x the lucky best is common when the ordinary
    # level is 2.5x it. A provisional best that is an ordinary draw of the
    # stream's noise is now confirmed against the median of the losses.
    ours = {0.75: 0, 1.0: 0}
    bare = 0
    for seed in range(40):
        for sd in ours:
            rng = np.random.default_rng(seed)
            losses = np.exp(rng.normal(math.log(0.01), sd, size=1000))
            losses[0] = 0.004
            ours[sd] += detector_watch().update(losses) is not None
            if sd == 0.75:
                bare += (
                    detector_watch(confirm=None, warmup=1).update(losses) is not None
                )
    assert bare >= 38
    assert ours[0.75] == 0
    # The heavier tail still alarms now and then (the z-score test, built
    # for it, and the settled best): half as often as before.
    assert ours[1.0] <= 7


def test_divergence_from_the_first_step_fires_against_a_provisional_best():
    # Loss 2.3 at the first step, then 8-30 (a rate far too high): the best
    # is set at step 0 before the EMA settles, and every later batch is
    # more than 3x over it.
    rng = np.random.default_rng(0)
    losses = np.concatenate([[2.36], rng.uniform(8.0, 30.0, size=200)])
    event = detector_watch().update(losses)
    assert event is not None and event.reason == "above_best"
    assert event.baseline == pytest.approx(2.36)
    assert 20 <= event.step < 50


def test_settled_best_needs_the_median_of_recent_losses():
    # A healthy level of 1.0 after warm-up, then a sustained rise to 5
    # fires; isolated 5x batches (fewer than half of any 9) do not.
    watch = detector_watch(z_threshold=None, spike_ratio=None, rise_fraction=None)
    base = np.full(200, 1.0)
    isolated = base.copy()
    isolated[100::3] = 20.0  # a third of the batches: EMA 3-9x, median not
    assert watch.update(isolated) is None
    watch = detector_watch(z_threshold=None, spike_ratio=None, rise_fraction=None)
    event = watch.update(np.concatenate([base, np.full(100, 5.0)]))
    assert event is not None and event.reason == "above_best" and event.step >= 200


@pytest.mark.parametrize("smoothing", [1.0, 1.01, -0.5, math.nan])
def test_ema_smooth_refuses_smoothing_outside_the_unit_interval(smoothing):
    # 1.0 used to give all NaN (0 / 0), other values garbage.
    with pytest.raises(ValueError, match=r"`smoothing` must be in \[0.0, 1.0\)"):
        ema_smooth([1.0, 2.0], smoothing)


def test_ema_smooth_refuses_a_non_number():
    with pytest.raises(TypeError, match="`smoothing` must be a number"):
        ema_smooth([1.0, 2.0], None)
