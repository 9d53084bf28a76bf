import numpy as np
import pytest

from keras_lr._detect import LossWatch, ema_smooth, first_divergence


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


def test_rebase_restarts_baselines():
    watch = LossWatch(smoothing=0.0, best_ratio=2.0)
    watch.update([1.0, 0.1])
    watch.rebase()
    assert watch.update([1.0, 1.1]) is None
    assert watch.step == 4
