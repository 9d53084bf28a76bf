"""Tests of keras_lr.diagnose on scripted histories."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_lr import Diagnosis, diagnose


def decay(first, last, epochs, rate=0.6):
    """Epoch means of a loss that levels off: geometric approach to `last`."""
    e = np.arange(epochs)
    return list(last + (first - last) * rate**e)


def test_good_run_with_validation():
    loss = decay(0.8, 0.3, 8)
    val_loss = decay(0.6, 0.35, 8)
    val_acc = list(np.linspace(0.80, 0.88, 8))
    d = diagnose({"loss": loss, "val_loss": val_loss, "val_accuracy": val_acc})
    assert d.verdict == "good", str(d)
    assert d.evidence["epochs"] == 8
    assert "decay schedule" in d.action
    assert d.evidence["last_to_first_gain"] == pytest.approx(0.6**6, rel=1e-6)


def test_nan_loss_is_too_high():
    d = diagnose({"loss": [1.0, 0.8, float("nan"), float("nan")]})
    assert d.verdict == "too_high"
    assert d.evidence["loss_nonfinite_epoch"] == 3
    assert "10x" in d.action


def test_nan_val_loss_is_too_high():
    d = diagnose({"loss": decay(1, 0.3, 4), "val_loss": [0.9, 0.7, float("inf"), 0.5]})
    assert d.verdict == "too_high" and d.evidence["val_loss_nonfinite_epoch"] == 3


def test_rising_loss_is_too_high():
    d = diagnose({"loss": [1.0, 0.9, 1.2, 1.5]})
    assert d.verdict == "too_high"
    assert "rose" in d.reasons[0]
    # A loss that moves is no dead network: no word of NaN weights.
    assert "NaN weights" not in " ".join(d.reasons)


def test_oscillating_loss_is_too_high():
    loss = [1.0, 0.6, 0.75, 0.5, 0.62, 0.58]
    d = diagnose({"loss": loss})
    assert d.verdict == "too_high"
    assert d.evidence["max_rebound"] == pytest.approx(0.75 / 0.6 - 1)
    # The same jumps, but the run ends at its best: settled, not too high.
    assert diagnose({"loss": [*loss[:-1], 0.45]}).verdict != "too_high"


def test_jumps_near_zero_loss_are_not_material():
    # +60% at a loss of 0.03 gives back 3% of the progress from 0.6.
    loss = [0.6, 0.2, 0.1, 0.05, 0.03, 0.026, 0.042]
    d = diagnose({"loss": loss})
    assert d.verdict != "too_high" and d.evidence["max_rebound"] == 0.0


def test_erratic_validation_accuracy_is_too_high():
    h = {
        "loss": decay(1.0, 0.4, 6),
        "val_loss": [0.8, 0.7, 0.9, 0.65, 0.85, 0.6],
        "val_accuracy": [0.70, 0.78, 0.70, 0.80, 0.72, 0.74],
    }
    d = diagnose(h)
    assert d.verdict == "too_high"
    assert d.evidence["val_accuracy_give_back"] == pytest.approx(0.08 + 0.08)
    assert d.evidence["val_accuracy_below_best"] == pytest.approx(0.06)


def test_small_wiggles_in_validation_accuracy_are_good():
    h = {
        "loss": decay(1.0, 0.4, 6),
        "val_accuracy": [0.80, 0.84, 0.835, 0.85, 0.845, 0.86],
    }
    assert diagnose(h).verdict == "good"


def test_slow_steady_descent_is_too_low():
    d = diagnose({"loss": [2.30, 2.28, 2.26, 2.24, 2.22], "accuracy": [0.1] * 5})
    assert d.verdict == "too_low"
    assert d.evidence["relative_decrease"] == pytest.approx((2.30 - 2.22) / 2.30)
    assert "raise" in d.action


def test_no_diminishing_returns_is_too_low():
    loss = [2.2, 1.9, 1.6, 1.35, 1.1]  # large, but no levelling off
    d = diagnose({"loss": loss})
    assert d.verdict == "too_low"
    assert d.evidence["last_to_first_gain"] == pytest.approx(0.25 / 0.3)


def test_fall_back_from_a_rolled_back_blow_up_is_not_still_steep():
    # examples/divergence_recovery_fashion_mnist.py --smoke on JAX: a rate
    # spike blew the fourth epoch up, a DivergenceDetector rolled it back,
    # and the last epoch's fall from that spike read as "still gained 999%
    # of what the first gained: raise the learning rate".
    history = {
        "loss": [1.416, 0.7019, 4.3303, 1126006.125, 0.5651],
        "accuracy": [0.5153, 0.739, 0.7563, 0.099, 0.7937],
        "val_loss": [0.8427, 0.6592, 9744972.0, 0.6592, 0.5913],
        "val_accuracy": [0.682, 0.773, 0.1, 0.773, 0.776],
        "divergence_events": [0, 0, 0, 1, 0],
    }
    d = diagnose(history)
    assert d.rule != "still_steep" and d.verdict != "too_low", d
    # The gain is the last epoch's over the best before it.
    assert d.evidence["last_to_first_gain"] == pytest.approx(
        (0.7019 - 0.5651) / (1.416 - 0.7019)
    )


def test_slow_start_is_too_low():
    # The second epoch gains 90% of the first, the last little: the fast
    # initial drop was spread over the first epochs (a low rate).
    loss = [2.2, 1.7, 1.25, 0.9, 0.7, 0.6, 0.55, 0.52]
    d = diagnose({"loss": loss})
    assert d.verdict == "too_low"
    assert d.evidence["second_to_first_gain"] == pytest.approx(0.45 / 0.5)
    # The same run with the drop in its first epoch (gain ratio 0.5) is good.
    loss = [2.2, 1.2, 0.7, 0.55, 0.5, 0.47, 0.46, 0.455]
    d = diagnose({"loss": loss})
    assert d.verdict == "good"
    assert d.evidence["second_to_first_gain"] == pytest.approx(0.5)


def test_stalled_at_start_is_too_high():
    # A rate that killed the network: loss jitters where it started.
    d = diagnose({"loss": [2.45, 2.3026, 2.3027, 2.3025, 2.3026]})
    assert d.verdict == "too_high"
    assert abs(d.evidence["late_relative_decrease"]) < 1e-4
    assert "stopped learning" in d.reasons[0]
    # The same history comes from NaN weights behind a finite loss (one NaN
    # sample through ReLUs on TensorFlow): the reading says so.
    assert "NaN weights behind a finite loss" in d.reasons[0]
    # Stalled from the very start: the barely-moving rule.
    d = diagnose({"loss": [2.3027, 2.3026, 2.3027]})
    assert d.verdict == "too_high" and not d.evidence["monotone"]
    assert "np.isfinite(x).all()" in d.reasons[-1]


def test_crawl_is_not_a_stall():
    # Tiny but steady gains after the first epoch: too low, not killed.
    loss = [2.35, 2.345, 2.341, 2.337, 2.333, 2.329]
    assert diagnose({"loss": loss}).verdict == "too_low"


def test_first_epoch_blow_up_is_too_high():
    h = {"loss": [22.5, 2.32, 2.32, 2.32], "val_loss": [2.31, 2.32, 2.32, 2.32]}
    d = diagnose(h)
    assert d.verdict == "too_high"
    assert d.evidence["first_epoch_blow_up"] == pytest.approx(22.5 / 2.31)
    # A first epoch at 2x the validation loss after it is ordinary.
    h = {"loss": decay(1.2, 0.3, 5), "val_loss": decay(0.6, 0.45, 5)}
    assert diagnose(h).verdict == "good"


def test_fast_first_epoch_is_not_a_blow_up():
    # A small, easy set learnt within the first epoch: the epoch's mean loss
    # is 3.3x the validation loss after it, and its error rate 3.6x the
    # validation error: both fell alike, nothing blew up.
    h = {
        "loss": [0.7335, 0.132, 0.088, 0.069, 0.054, 0.041],
        "val_loss": [0.2238, 0.1615, 0.1562, 0.1462, 0.1381, 0.1328],
        "accuracy": [0.8054, 0.9615, 0.9777, 0.9831, 0.985, 0.987],
        "val_accuracy": [0.9457, 0.9538, 0.9557, 0.9577, 0.96, 0.962],
    }
    d = diagnose(h)
    assert d.evidence["first_epoch_blow_up"] == pytest.approx(0.7335 / 0.2238)
    assert d.evidence["first_epoch_error_fall"] == pytest.approx(
        (1 - 0.8054) / (1 - 0.9457)
    )
    assert d.verdict != "too_high", str(d)
    # A blow-up: the loss ratio is far above the error ratio.
    h = {
        "loss": [2.8, 0.74, 0.7, 0.68, 0.67],
        "val_loss": [0.85, 0.75, 0.72, 0.71, 0.70],
        "accuracy": [0.6, 0.73, 0.74, 0.745, 0.75],
        "val_accuracy": [0.70, 0.72, 0.73, 0.735, 0.74],
    }
    d = diagnose(h)
    assert d.verdict == "too_high" and "blew up" in d.reasons[-1]


def test_fast_first_epoch_without_accuracy_goes_on_falling():
    # The same healthy run compiled without an accuracy metric: no error rate
    # to weigh, but the loss went on falling 12x after the first epoch
    # (0.132 -> 0.011), which a blow-up that stalls does not.
    loss = [
        0.7335,
        0.132,
        0.088,
        0.069,
        0.054,
        0.041,
        0.032,
        0.026,
        0.02,
        0.016,
        0.014,
        0.011,
    ]
    val = [0.224, 0.162, 0.156, 0.146, 0.128, 0.113, 0.105, 0.104, 0.104,
           0.103, 0.102, 0.104]  # fmt: skip
    d = diagnose({"loss": loss, "val_loss": val})
    assert d.evidence["first_epoch_blow_up"] == pytest.approx(0.7335 / 0.224)
    assert d.evidence["later_fall"] == pytest.approx(0.132 / 0.011)
    assert "first_epoch_error_fall" not in d.evidence
    assert d.verdict == "good", str(d)
    # The reading firms up with the epochs: after 4 the later fall (1.91x)
    # is still under 3.27 / 1.5, after 5 (2.44x) it is over.
    short = diagnose({"loss": loss[:4], "val_loss": val[:4]})
    assert short.verdict == "too_high" and "blew up" in short.reasons[-1]
    assert diagnose({"loss": loss[:5], "val_loss": val[:5]}).verdict != "too_high"
    # A regression whose large starting error one epoch removes, then still
    # descending (MSE 40 -> 6 -> 1.2): not a blow-up either.
    h = {"loss": [40.0, 6.0, 3.1, 1.9, 1.2], "val_loss": [8.0, 3.5, 2.2, 1.5, 1.1]}
    d = diagnose(h)
    assert d.evidence["later_fall"] == pytest.approx(5.0)
    assert d.verdict == "too_low", str(d)  # still steep at its end: rule 8
    # ...and down to a loss of exactly 0 (a fitted hinge or MSE loss).
    h = {"loss": [4.0, 1.0, 0.5, 0.0], "val_loss": [1.0, 0.5, 0.3, 0.2]}
    d = diagnose(h)
    assert d.evidence["later_fall"] == float("inf")
    assert d.verdict == "good", str(d)
    # Blown up, then stalled at a constant prediction's loss: too high.
    h = {"loss": [22.5, 2.33, 2.32, 2.31, 2.31], "val_loss": [2.31, 2.32] * 2 + [2.3]}
    d = diagnose(h)
    assert d.verdict == "too_high" and "blew up" in d.reasons[-1]
    # ...or crawling back: the later fall (1.8x) does not account for a
    # first epoch at 4.8x the validation loss after it.
    h = {"loss": [4.3, 1.0, 0.8, 0.65, 0.55], "val_loss": [0.9, 0.8, 0.7, 0.62, 0.6]}
    d = diagnose(h)
    assert d.evidence["later_fall"] == pytest.approx(1.0 / 0.55)
    assert d.verdict == "too_high" and "blew up" in d.reasons[-1]
    # Two epochs: no later fall to speak of (1.0), the ratio alone decides.
    h = {"loss": [4.3, 1.0], "val_loss": [0.9, 0.8]}
    assert diagnose(h).verdict == "too_high"
    # Negative losses carry no ratio: the blow-up test stands alone.
    h = {"loss": [6.0, -1.0, -1.5, -1.8], "val_loss": [1.5, -1.2, -1.6, -1.9]}
    d = diagnose(h)
    assert "later_fall" not in d.evidence
    assert d.verdict == "too_high" and "blew up" in d.reasons[-1]


@pytest.mark.parametrize("later_fall, verdict_high", [(2.9, True), (3.1, False)])
def test_later_fall_factor_is_one_and_a_half(later_fall, verdict_high):
    # A first epoch at 4.5x the validation loss after it is a blow-up unless
    # the loss falls by over 4.5 / 1.5 = 3x after it.
    loss = [4.5, 1.0, 1.0 / later_fall**0.5, 1.0 / later_fall]
    h = {"loss": loss, "val_loss": [1.0, 0.7, 0.5, 0.4]}
    d = diagnose(h)
    assert d.evidence["later_fall"] == pytest.approx(later_fall)
    assert (d.verdict == "too_high" and "blew up" in d.reasons[-1]) is verdict_high


@pytest.mark.parametrize("keys", [("accuracy",), ("val_accuracy",)])
def test_one_accuracy_alone_weighs_the_later_fall(keys):
    # A training accuracy without a validation one (or the reverse) gives no
    # error rate to compare: the later fall decides, as with none.
    loss = [0.7335, 0.132, 0.088, 0.069, 0.054, 0.041]
    h = {"loss": loss, "val_loss": [0.224, 0.162, 0.156, 0.146, 0.128, 0.113]}
    h.update({k: [0.8, 0.9, 0.92, 0.93, 0.94, 0.95] for k in keys})
    d = diagnose(h)
    assert "first_epoch_error_fall" not in d.evidence
    assert d.evidence["later_fall"] == pytest.approx(0.132 / 0.041)
    assert d.verdict != "too_high", str(d)
    # A first error rate that is not finite falls back the same way.
    h = {"loss": loss, "val_loss": h["val_loss"],
         "accuracy": [None, 0.9, 0.92, 0.93, 0.94, 0.95],
         "val_accuracy": [0.94, 0.95, 0.955, 0.96, 0.96, 0.962]}  # fmt: skip
    d = diagnose(h)
    assert d.evidence["later_fall"] == pytest.approx(0.132 / 0.041)
    assert d.verdict != "too_high", str(d)


def test_training_loss_above_validation_is_too_low():
    loss = [1.9, 1.01, 0.77, 0.694, 0.65]
    val = [1.33, 0.827, 0.719, 0.664, 0.629]
    d = diagnose({"loss": loss, "val_loss": val})
    assert d.verdict == "too_low"
    assert d.evidence["train_over_val"] == pytest.approx(0.65 / 0.629 - 1)
    assert d.evidence["val_loss_last_fall"] == pytest.approx(0.035 / 0.629)
    # Within the margin (dropout-like noise): good.
    val[-1] = 0.64
    assert diagnose({"loss": loss, "val_loss": val}).verdict == "good"


def test_heavy_dropout_gap_without_a_validation_fall_is_not_underfitting():
    # Dropout 0.5: the training loss stays 20% above the validation loss
    # after it while the validation loss has levelled off (0.160 -> 0.157).
    h = {
        "loss": [1.757, 0.845, 0.559, 0.459, 0.368, 0.317, 0.259, 0.258, 0.242,
                 0.238, 0.204, 0.189],
        "accuracy": [0.458, 0.791, 0.842, 0.874, 0.895, 0.915, 0.932, 0.932,
                     0.928, 0.926, 0.938, 0.950],
        "val_loss": [1.042, 0.527, 0.390, 0.304, 0.260, 0.229, 0.210, 0.195,
                     0.177, 0.171, 0.160, 0.157],
        "val_accuracy": [0.819, 0.899, 0.922, 0.948, 0.962, 0.960, 0.962, 0.964,
                         0.968, 0.966, 0.970, 0.974],
    }  # fmt: skip
    d = diagnose(h)
    assert d.evidence["train_over_val"] == pytest.approx(0.189 / 0.157 - 1)
    assert d.evidence["val_loss_last_fall"] < 0.5 * d.evidence["train_over_val"]
    assert d.verdict == "good", str(d)
    # The same gap with the validation loss still falling fast: underfitting.
    h["val_loss"][-1] = 0.130
    assert diagnose(h).verdict == "too_low"


def test_overfitting():
    h = {
        "loss": decay(0.8, 0.05, 10, rate=0.7),
        "val_loss": [0.6, 0.45, 0.40, 0.39, 0.41, 0.45, 0.5, 0.56, 0.6, 0.65],
        "val_accuracy": [0.8, 0.85, 0.86, 0.865, 0.86, 0.855, 0.85, 0.85, 0.845, 0.84],
    }
    d = diagnose(h)
    assert d.verdict == "overfitting", str(d)
    assert d.evidence["val_loss_best_epoch"] == 4
    assert d.evidence["val_loss_rise"] == pytest.approx(0.65 / 0.39 - 1)
    assert "not a learning-rate problem" in d.action
    # The same losses with the accuracy held within 2 points of its best:
    # over-confidence, noted, not a verdict of its own.
    h["val_accuracy"] = [0.8, 0.85, 0.86, 0.865, 0.864, 0.862, 0.86, 0.858, 0.857, 0.85]
    d = diagnose(h)
    assert d.verdict == "good", str(d)
    assert "over-confident" in d.reasons[0]
    # Without accuracies the rising validation loss decides.
    del h["val_accuracy"]
    assert diagnose(h).verdict == "overfitting"


def test_late_jumps_after_fitting_the_training_data_are_good():
    # Adaptive optimizers late in a run: the loss climbs back from near zero
    # once the model has fitted its training data (accuracy 100%).
    loss = [0.91, 0.23, 0.12, 0.064, 0.032, 0.018, 0.011, 0.008]
    loss += [0.01, 0.035, 0.07, 0.118]
    acc = [0.73, 0.92, 0.96, 0.98, 0.99, 0.994, 0.998, 1.0, 0.998, 0.99, 0.98, 0.962]
    val_acc = [0.90, 0.93, 0.95, 0.96, 0.965, 0.97, 0.972, 0.974, 0.97, 0.96]
    val_acc += [0.955, 0.962]
    d = diagnose({"loss": loss, "accuracy": acc, "val_accuracy": val_acc})
    assert d.verdict == "good", str(d)
    assert d.evidence["fitted_training_data"] is True
    assert d.evidence["max_rebound"] == 0.0
    assert "fitted its training data" in d.reasons[-1]
    # The same losses from a model that never fitted its data: too high.
    acc = [a * 0.9 for a in acc]
    d = diagnose({"loss": loss, "accuracy": acc, "val_accuracy": val_acc})
    assert d.verdict == "too_high" and d.evidence["fitted_training_data"] is False
    # Without accuracies, a loss down to 2% of the first epoch's has fitted.
    d = diagnose({"loss": loss})
    assert d.verdict == "good" and d.evidence["fitted_training_data"] is True
    # A jump that gives back half the progress still counts.
    d = diagnose({"loss": [*loss[:-1], 0.6], "accuracy": [*acc[:-1], 0.8]})
    assert d.verdict == "too_high"


def test_erratic_validation_accuracy_that_ends_near_its_best_is_not_too_high():
    h = {
        "loss": decay(1.0, 0.4, 6),
        "val_accuracy": [0.70, 0.78, 0.70, 0.80, 0.72, 0.785],
    }
    d = diagnose(h)
    assert d.evidence["val_accuracy_give_back"] == pytest.approx(0.16)
    assert d.evidence["val_accuracy_below_best"] == pytest.approx(0.015)
    assert d.verdict != "too_high"


def test_one_epoch():
    d = diagnose({"loss": [0.7], "val_loss": [0.6]})
    assert d.verdict == "good" and d.evidence["epochs"] == 1
    assert "one epoch" in d.reasons[0]
    assert diagnose({"loss": [float("nan")]}).verdict == "too_high"


def test_no_validation_data_and_other_accuracy_keys():
    d = diagnose({"loss": decay(1.0, 0.2, 5)})
    assert d.verdict == "good"
    assert "val_loss_last" not in d.evidence
    h = {
        "loss": decay(1.0, 0.2, 5),
        "val_sparse_categorical_accuracy": [0.9, 0.7, 0.9, 0.7, 0.7],
    }
    assert diagnose(h).verdict == "too_high"


def test_accepts_history_object_and_str():
    class FakeHistory:
        def __init__(self):
            self.history = {"loss": [2.3, 2.29, 2.28]}

    d = diagnose(FakeHistory())
    assert isinstance(d, Diagnosis) and d.verdict == "too_low"
    text = str(d)
    assert text.startswith("Learning rate: too low.") and "Recommended:" in text


def test_bad_input():
    with pytest.raises(TypeError, match="history"):
        diagnose([1.0, 2.0])
    with pytest.raises(ValueError, match="'loss'"):
        diagnose({"val_loss": [1.0]})
    with pytest.raises(ValueError, match="'loss'"):
        diagnose({"loss": []})


def test_verdict_does_not_depend_on_loss_scale():
    rng = np.random.default_rng(0)
    for _ in range(20):
        loss = np.array(decay(rng.uniform(0.5, 3), rng.uniform(0.01, 0.4), 6))
        for scale in (1e-3, 1.0, 1e3):
            assert (
                diagnose({"loss": list(scale * loss)}).verdict
                == diagnose({"loss": list(loss)}).verdict
            )
    assert not math.isnan(diagnose({"loss": decay(1, 0.1, 5)}).evidence["loss_last"])


def test_network_predicting_a_constant_is_too_high():
    # Blown up in the first epoch, then settled at ln(10) with chance-level
    # accuracy: the loss "fell" 63% and even steadily, but the network is
    # dead.
    loss = [6.68, 3.19, 2.64, 2.63, 2.62, 2.58, 2.54, 2.50, 2.48, 2.46]
    acc = [0.091, 0.09, 0.111, 0.102, 0.111, 0.115, 0.105, 0.11, 0.11, 0.109]
    d = diagnose({"loss": loss, "accuracy": acc})
    assert d.verdict == "too_high", str(d)
    assert d.evidence["accuracy_times_exp_loss"] == pytest.approx(
        0.109 * math.exp(2.46)
    )
    assert "constant" in d.reasons[-1]
    # Without the accuracy there is no telling: the loss alone looks healthy.
    assert diagnose({"loss": loss}).verdict != "too_high"
    # Accuracy rising from chance (a slow start) is not a dead network.
    acc = [0.10, 0.12, 0.15, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3]
    assert diagnose({"loss": loss, "accuracy": acc}).verdict != "too_high"
    # A binary classifier at 90% with a loss of 0.3 (a exp(L) = 1.2) is fine.
    h = {"loss": decay(0.5, 0.3, 6), "accuracy": [0.9] * 6}
    assert diagnose(h).verdict != "too_high"


def test_evaluation_still_catching_up_is_too_low():
    # A BatchNorm CNN at a low rate: training accuracy 73%, validation still
    # near chance but its loss falling at the end: not converged.
    h = {
        "loss": [1.43, 0.955, 0.806],
        "accuracy": [0.561, 0.695, 0.730],
        "val_loss": [4.55, 6.26, 4.52],
        "val_accuracy": [0.121, 0.132, 0.226],
    }
    d = diagnose(h)
    assert d.verdict == "too_low", str(d)
    assert d.evidence["train_over_val_accuracy"] == pytest.approx(0.730 - 0.226)
    assert "caught up" in d.reasons[-1]
    # Caught up (validation within 10 points): the rule does not apply.
    h["val_accuracy"] = [0.5, 0.66, 0.70]
    h["val_loss"] = [1.2, 0.95, 0.85]
    d = diagnose(h)
    assert d.evidence["train_over_val_accuracy"] == pytest.approx(0.03)
    assert "caught up" not in " ".join(d.reasons)
    # A large gap with the validation loss rising is overfitting, not lag.
    h = {
        "loss": decay(0.8, 0.05, 6, rate=0.5),
        "accuracy": [0.8, 0.9, 0.95, 0.98, 0.99, 0.995],
        "val_loss": [0.5, 0.45, 0.5, 0.6, 0.7, 0.8],
        "val_accuracy": [0.84, 0.86, 0.85, 0.84, 0.83, 0.82],
    }
    assert diagnose(h).verdict == "overfitting"


def test_dropout_crawl_is_too_low_not_a_stall():
    # Dropout makes the training loss jitter while the validation loss
    # (dropout off) falls at every epoch: a slow crawl, not a dead network.
    loss = [2.405, 2.412, 2.401, 2.390, 2.370, 2.372, 2.354, 2.360, 2.334, 2.299]
    val = [2.373, 2.366, 2.359, 2.352, 2.345, 2.338, 2.332, 2.325, 2.318, 2.311]
    d = diagnose({"loss": loss, "val_loss": val})
    assert d.verdict == "too_low", str(d)
    assert d.evidence["val_loss_monotone"] is True and d.evidence["monotone"] is False
    # Without a steady validation loss the jitter reads as a stall.
    assert diagnose({"loss": loss}).verdict == "too_high"


def test_confidently_wrong_dead_network_is_too_high():
    # Blown up to huge logits: chance accuracy with a loss far above ln(10),
    # so not a constant's score, but neither accuracy ever rose.
    h = {
        "loss": [3.8e5, 11.4, 7.02, 7.17, 8.05, 5.10, 6.22, 7.54, 7.22, 6.41],
        "accuracy": [
            0.102,
            0.095,
            0.105,
            0.092,
            0.105,
            0.105,
            0.094,
            0.089,
            0.104,
            0.102,
        ],
        "val_loss": [3.6e8, 3.1e6, 4.8, 8.2, 5.7, 5.2, 8.8, 7.2, 3.5, 10.2],
        "val_accuracy": [
            0.109,
            0.119,
            0.087,
            0.091,
            0.097,
            0.119,
            0.093,
            0.097,
            0.093,
            0.113,
        ],
    }
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    # Read by rule 2b: a exp(L) = 0.102 exp(6.41), far over 20.
    assert d.evidence["log_accuracy_times_exp_loss"] == pytest.approx(
        6.41 + math.log(0.102)
    )
    assert "confidently wrong" in d.reasons[-1]
    # With its later losses nearer ln(10), a exp(L) is between a constant's
    # score (under 1.5) and 20: the accuracies tell that it is dead.
    h["loss"] = [3.8e5, 3.2, 3.1, 3.15, 3.0, 2.95, 3.0, 2.9, 2.92, 2.9]
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    assert 1.5 < d.evidence["accuracy_times_exp_loss"] < 20
    assert "no better than a constant" in d.reasons[-1]
    # The same losses with validation accuracy climbing are not flagged dead.
    h["val_accuracy"] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.65]
    assert "no better than a constant" not in " ".join(diagnose(h).reasons)


def test_confidently_wrong_on_training_data_is_too_high():
    # A blow-up the network is still recovering from after the first epoch
    # (so the first epoch's mean is not 3x the validation loss after it).
    h = {
        "loss": [195.3, 71.7, 49.9, 47.2, 35.3],
        "accuracy": [0.133, 0.157, 0.198, 0.185, 0.216],
        "val_loss": [83.1, 37.0, 49.4, 56.0, 18.9],
        "val_accuracy": [0.191, 0.104, 0.222, 0.143, 0.275],
    }
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    assert d.evidence["first_epoch_blow_up"] < 3
    assert "confidently wrong" in d.reasons[-1]
    # A slow healthy run at the same accuracies: a exp(L) near 1-5.
    slow = {"loss": [2.30, 2.2, 2.1, 2.0, 1.9], "accuracy": h["accuracy"]}
    assert diagnose(slow).verdict == "too_low"
    assert diagnose(slow).evidence["log_accuracy_times_exp_loss"] < math.log(20)
    # A run over 50% accuracy is not read by this rule (its loss may hold a
    # regularisation penalty).
    high = {"loss": [8.0, 7.0, 6.5, 6.3, 6.2], "accuracy": [0.6] * 5}
    assert "log_accuracy_times_exp_loss" not in diagnose(high).evidence


def test_a_weight_penalty_in_a_slow_loss_is_not_confidently_wrong():
    # Found in QA: a digits MLP with an L2 penalty (0.03) at SGD 1e-3. The
    # penalty adds about 3 to every loss, so a exp(L) = 0.143 exp(5.315) =
    # 29 > 20, and the run was called too high. Its loss falls at every
    # epoch from a first epoch not blown up, and its accuracy rises: slow.
    h = {
        "loss": [5.416, 5.382, 5.348, 5.315],
        "accuracy": [0.115, 0.119, 0.129, 0.143],
        "val_loss": [5.397, 5.364, 5.331, 5.299],
        "val_accuracy": [0.136, 0.153, 0.156, 0.169],
    }
    d = diagnose(h)
    assert d.verdict == "too_low", str(d)
    assert d.evidence["log_accuracy_times_exp_loss"] > math.log(20)


def test_a_per_output_accuracy_is_weighed_against_its_own_loss():
    # A multi-output model's `loss` sums every output's; the a exp(L) test
    # takes the loss of the output whose accuracy it reads. Here the other
    # output's noise floor lifts the total loss to 6.4 while the digits'
    # own cross-entropy sits at 2.2.
    h = {
        "loss": [6.62, 6.59, 6.56, 6.53, 6.51],
        "digit_loss": [2.32, 2.29, 2.26, 2.23, 2.21],
        "digit_accuracy": [0.082, 0.109, 0.129, 0.145, 0.156],
    }
    d = diagnose(h)
    assert d.rule != "confidently_wrong", str(d)
    assert d.evidence["log_accuracy_times_exp_loss"] == pytest.approx(
        2.21 + math.log(0.156)
    )
    # Its own loss blown up (after a first epoch already blown up): too high.
    h["digit_loss"] = [40.0, 30.0, 25.0, 24.0, 23.0]
    h["loss"] = [v + 4.3 for v in h["digit_loss"]]
    d = diagnose(h)
    assert (d.verdict, d.rule) == ("too_high", "confidently_wrong"), str(d)


def test_validation_every_k_epochs_is_matched_with_its_epochs():
    # fit(validation_freq=2): validation after epochs 2, 4, ..., 10.
    loss = decay(0.8, 0.05, 10, rate=0.7)
    every = [0.6, 0.45, 0.40, 0.39, 0.41, 0.45, 0.5, 0.56, 0.6, 0.65]
    acc = [0.8, 0.85, 0.86, 0.865, 0.86, 0.855, 0.85, 0.85, 0.845, 0.84]
    h = {"loss": loss, "val_loss": every[1::2], "val_accuracy": acc[1::2]}
    d = diagnose(h)
    assert d.verdict == "overfitting", str(d)
    assert d.evidence["validation_epochs"] == [2, 4, 6, 8, 10]
    assert d.evidence["val_loss_best_epoch"] == 4  # the 2nd value, after epoch 4
    # The same, named explicitly, and a mismatch.
    d = diagnose(h, validation_epochs=(2, 4, 6, 8, 10))
    assert d.evidence["val_loss_best_epoch"] == 4
    d = diagnose(h, validation_epochs=[1, 2, 3, 4, 10])
    assert d.evidence["val_loss_best_epoch"] == 2


def test_sparse_validation_compares_training_figures_of_the_same_epoch():
    # A slow first epoch, validated only after epochs 3 and 6: the first
    # training loss must not be read against a later validation loss (it
    # would look like a 3.5x blow-up), and the last validation value (after
    # epoch 6) must be compared with epoch 6's training loss, not epoch 7's.
    h = {
        "loss": [3.5, 1.6, 1.2, 1.05, 0.98, 0.95, 0.94],
        "accuracy": [0.3, 0.5, 0.6, 0.65, 0.67, 0.68, 0.685],
        "val_loss": [1.0, 0.97],
        "val_accuracy": [0.62, 0.64],
    }
    d = diagnose(h, validation_epochs=[3, 6])
    assert "first_epoch_blow_up" not in d.evidence
    assert d.evidence["train_over_val"] == pytest.approx(0.95 / 0.97 - 1)
    assert d.evidence["train_over_val_accuracy"] == pytest.approx(0.68 - 0.64)
    # Two values for seven epochs read as validation_freq=3 by default.
    assert diagnose(h).evidence == d.evidence


def test_bad_validation_epochs():
    h = {"loss": [1.0, 0.8, 0.7, 0.65], "val_loss": [0.9, 0.75]}
    with pytest.raises(ValueError, match="validation_epochs"):
        diagnose(h, validation_epochs=[2])
    with pytest.raises(ValueError, match="validation_epochs"):
        diagnose(h, validation_epochs=[4, 2])
    with pytest.raises(ValueError, match="validation_epochs"):
        diagnose(h, validation_epochs=[2, 5])
    with pytest.raises(TypeError, match="validation_epochs"):
        diagnose(h, validation_epochs="2,4")
    with pytest.raises(TypeError, match="validation_epochs"):
        diagnose(h, validation_epochs=[2.0, 4.0])
    with pytest.raises(ValueError, match="longer"):
        diagnose({"loss": [1.0, 0.8], "val_loss": [0.9, 0.7, 0.6]})
    with pytest.raises(ValueError, match="same length"):
        diagnose({"loss": [1.0, 0.8], "val_loss": [0.9, 0.7], "val_accuracy": [0.5]})
    with pytest.raises(ValueError, match="one value per epoch"):
        diagnose({"loss": [1.0, 0.8], "accuracy": [0.5]})


def test_validation_freq_not_dividing_the_epochs():
    # fit(epochs=7, validation_freq=3): validation after epochs 3 and 6 only;
    # 7 // k == 2 holds for k = 3 alone.
    loss = [1.0, 0.8, 0.7, 0.65, 0.62, 0.6, 0.59]
    h = {"loss": loss, "val_loss": [0.72, 0.61]}
    assert diagnose(h).evidence["validation_epochs"] == [3, 6]
    # fit(epochs=11, validation_freq=2): 5 values, after epochs 2, 4, ..., 10.
    h = {"loss": decay(1.0, 0.3, 11), "val_loss": decay(0.9, 0.35, 5)}
    assert diagnose(h).evidence["validation_epochs"] == [2, 4, 6, 8, 10]


@pytest.mark.parametrize(
    ("epochs", "size", "freqs", "options"),
    [
        (5, 1, "3, 4, 5", r"\[3\] or \[4\] or \[5\]"),
        (8, 2, "3, 4", r"\[3, 6\] or \[4, 8\]"),
        (4, 1, "3, 4", r"\[3\] or \[4\]"),
    ],
)
def test_ambiguous_validation_epochs_are_not_guessed(epochs, size, freqs, options):
    h = {"loss": decay(1.0, 0.3, epochs), "val_loss": decay(0.9, 0.35, size)}
    match = rf"several `validation_freq` values \({freqs}\).*after epochs {options}"
    with pytest.raises(ValueError, match=match) as info:
        diagnose(h)
    assert "validation_epochs=" in str(info.value)
    # Named explicitly, they are used as given.
    given = list(range(epochs - size + 1, epochs + 1))
    d = diagnose(h, validation_epochs=given)
    assert d.evidence["validation_epochs"] == given


def test_validation_series_no_fixed_freq_fits():
    # 3 values over 5 epochs: 5 // k is 5, 2, 1, ...: never 3.
    h = {"loss": decay(1.0, 0.3, 5), "val_loss": [0.9, 0.8, 0.7]}
    with pytest.raises(ValueError, match="do not come from a fixed `validation_freq`"):
        diagnose(h)
    d = diagnose(h, validation_epochs=[1, 3, 5])
    assert d.evidence["validation_epochs"] == [1, 3, 5]


def test_validation_epochs_as_a_numpy_array():
    h = {"loss": decay(1.0, 0.3, 8), "val_loss": [0.8, 0.6]}
    for given in (np.array([3, 6]), np.array([3, 6], dtype=np.int32), (3, 6)):
        d = diagnose(h, validation_epochs=given)
        assert d.evidence["validation_epochs"] == [3, 6]
    d = diagnose(h, validation_epochs=(np.int64(4), np.int64(8)))
    assert d.evidence["validation_epochs"] == [4, 8]
    with pytest.raises(ValueError, match="must be 1-D"):
        diagnose(h, validation_epochs=np.array([[3, 6]]))
    with pytest.raises(TypeError, match="must hold ints"):
        diagnose(h, validation_epochs=np.array([3.0, 6.0]))
    with pytest.raises(TypeError, match="must hold ints"):
        diagnose(h, validation_epochs=np.array([True, False]))


def test_validation_epochs_without_validation_values():
    h = {"loss": decay(1.0, 0.3, 4)}
    with pytest.raises(ValueError, match="has no validation values"):
        diagnose(h, validation_epochs=[2, 4])
    with pytest.raises(ValueError, match="has no validation values"):
        diagnose(h, validation_epochs=[])
    assert diagnose(h).verdict in ("good", "too_low")


# Regressions (stop 13) ------------------------------------------------------


def test_a_blown_up_first_epoch_is_no_reference_for_a_fitted_loss():
    # Without an accuracy, a loss down to 2% of the first epoch's counted as
    # "fitted", which exempted the run from the blow-up rule; against a
    # blown-up first epoch any recovery qualified.
    h = {
        "loss": [1.5e17, 0.5544, 0.0101, 0.0101, 0.0101],
        "val_loss": [6.481, 0.00947, 0.009472, 0.009472, 0.009472],
    }
    d = diagnose(h)
    assert d.verdict == "too_high"
    assert d.evidence["fitted_training_data"] is False
    assert d.evidence["first_epoch_blow_up"] > 1e15


def test_a_slow_steady_run_is_not_read_as_a_dead_network():
    h = {
        "loss": [1.157, 1.137, 1.118, 1.1, 1.082, 1.066, 1.05, 1.034],
        "accuracy": [0.417, 0.417, 0.417, 0.417, 0.427, 0.427, 0.427, 0.427],
    }
    d = diagnose(h)
    assert d.verdict == "too_low"
    assert not any("validation" in r for r in d.reasons)


def test_validation_epochs_in_reasons_are_epochs_not_positions():
    loss = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3]
    d = diagnose({"loss": loss, "val_loss": [0.9, 0.5, float("nan")]})
    assert d.evidence["val_loss_nonfinite_epoch"] == 6
    assert "from epoch 6" in d.reasons[0]
    d = diagnose(
        {"loss": loss, "val_loss": [0.9, 0.4, 1.0]}, validation_epochs=[2, 4, 6]
    )
    assert d.verdict == "overfitting"
    assert d.evidence["val_loss_best_epoch"] == 4
    assert "minimum at epoch 4" in d.reasons[0]


def test_negative_losses_read_as_their_positive_shift():
    shape = np.array([-0.1, -0.9, -0.4, -0.91, -0.915])
    negative = diagnose({"loss": list(shape)})
    positive = diagnose({"loss": list(shape + 2.0)})
    assert negative.verdict == positive.verdict == "good"
    assert negative.evidence["fitted_training_data"] is False


def test_history_of_a_resumed_fit_places_its_validations():
    import keras

    # fit(initial_epoch=1, epochs=5, validation_freq=2) validates after
    # epochs 2 and 4 (1-based, from the origin), the 1st and 3rd entries.
    history = keras.callbacks.History()
    history.epoch = [1, 2, 3, 4]
    history.history = {"loss": [1.0, 0.7, 0.6, 0.55], "val_loss": [0.8, 0.6]}
    d = diagnose(history)
    assert d.evidence["validation_epochs"] == [1, 3]
    # The same figures as a dict (no epoch numbers): every 2nd epoch.
    d = diagnose(history.history)
    assert d.evidence["validation_epochs"] == [2, 4]


@pytest.mark.parametrize(
    "value, error",
    [
        ("abc", TypeError),
        (1.0, TypeError),
        (None, TypeError),
        (["a", "b"], TypeError),
        ([[1.0, 0.5], [0.3, 0.2]], ValueError),
    ],
)
def test_malformed_series_name_the_key(value, error):
    with pytest.raises(error, match=r"history\['loss'\]"):
        diagnose({"loss": value})


def test_a_dead_network_crawling_back_to_chance_is_too_high():
    # After an early blow-up the loss falls steadily towards ln(10) while
    # the accuracy stays at chance: dead, not slow.
    d = diagnose(
        {
            "loss": [2.9, 2.6, 2.45, 2.39, 2.36],
            "accuracy": [0.100, 0.100, 0.101, 0.100, 0.100],
            "val_loss": [2.5, 2.4, 2.37, 2.35, 2.34],
            "val_accuracy": [0.1, 0.1, 0.1, 0.1, 0.1],
        }
    )
    assert d.verdict == "too_high"


def test_a_loss_drifting_by_float_rounding_is_not_a_steady_descent():
    # SGD at 2.0 killed the network: the loss sits above ln(10) and moves by
    # float32 rounding only.
    loss = [2.3828, 2.3827998, 2.3827996, 2.3827994, 2.3827992]
    d = diagnose({"loss": loss, "accuracy": [0.102] * 5})
    assert d.verdict == "too_high"
    assert d.evidence["monotone"] is False


def test_dead_network_drifting_down_by_rounding_is_not_a_crawl():
    # A network killed at the first step: its training loss drifts down at
    # every epoch by 1e-5 to 4e-4 (relative), but its validation loss does
    # not fall and its training accuracy falls.
    dead = {
        "loss": [2.304904, 2.304170, 2.304141, 2.304105, 2.304011],
        "accuracy": [0.1305, 0.1019, 0.0995, 0.0976, 0.0966],
        "val_loss": [2.303347, 2.303805, 2.303714, 2.303487, 2.303503],
        "val_accuracy": [0.098, 0.0985, 0.0985, 0.0985, 0.0985],
    }
    d = diagnose(dead)
    assert d.evidence["monotone"] is True
    assert d.verdict == "too_high", str(d)
    # A crawl at a tiny rate: the validation loss does not fall either (the
    # BatchNorm statistics settle), but the training accuracy rises.
    crawl = {
        "loss": [2.393, 2.383, 2.373, 2.365],
        "accuracy": [0.158, 0.163, 0.169, 0.175],
        "val_loss": [2.322, 2.342, 2.336, 2.332],
        "val_accuracy": [0.100, 0.182, 0.183, 0.173],
    }
    assert diagnose(crawl).verdict == "too_low"
    # ... and without its accuracy rising it would read as a stall.
    crawl["accuracy"] = [0.158] * 4
    assert diagnose(crawl).verdict == "too_high"


def test_dead_network_after_a_blown_up_first_epoch_is_too_high():
    # The first epoch's mean accuracy is depressed by its blow-up, so the
    # accuracy "rose" 2.6 points since then; since the second epoch it has
    # not moved, and validation accuracy is the same at every epoch.
    h = {
        "loss": [8.660, 3.425, 3.289, 3.226, 3.122, 3.244, 3.182, 3.392, 3.258],
        "accuracy": [0.082, 0.094, 0.106, 0.107, 0.103, 0.115, 0.107, 0.106, 0.108],
        "val_loss": [3.632, 3.252, 3.228, 2.869, 2.840, 3.039, 3.372, 3.254, 3.317],
        "val_accuracy": [0.099] * 9,
    }
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    assert "no better than a constant" in d.reasons[-1]
    # A run that learns slowly after such a first epoch is not dead.
    h["accuracy"] = [0.082, 0.094, 0.11, 0.13, 0.15, 0.17, 0.19, 0.21, 0.23]
    h["val_accuracy"] = [0.099, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.24]
    assert "no better than a constant" not in " ".join(diagnose(h).reasons)


def test_training_loss_jump_with_validation_accuracy_at_its_best_is_not_too_high():
    # A late jump of the training loss (Lion at a high rate) while the
    # validation accuracy ends within a point of its best: settled.
    h = {
        "loss": [0.593, 0.134, 0.133, 0.079, 0.162, 0.255, 0.325, 0.306, 0.285, 0.378],
        "accuracy": [0.818, 0.965, 0.965, 0.981, 0.972, 0.969, 0.979, 0.976, 0.979,
                     0.983],
        "val_loss": [0.206, 0.333, 0.455, 0.894, 1.074, 1.374, 2.007, 1.451, 2.039,
                     2.152],
        "val_accuracy": [0.946, 0.948, 0.936, 0.944, 0.936, 0.958, 0.932, 0.958,
                         0.952, 0.954],
    }  # fmt: skip
    d = diagnose(h)
    assert d.verdict != "too_high", str(d)
    assert d.evidence["max_rebound"] > 3
    # Jumps with an erratic validation accuracy (8.6 points given back
    # between epochs) that happens to end near its best: oscillation.
    erratic = {
        "loss": [1.193, 0.711, 0.537, 0.819, 0.708, 0.751],
        "accuracy": [0.642, 0.820, 0.859, 0.842, 0.838, 0.852],
        "val_loss": [0.492, 0.498, 1.112, 0.681, 0.629, 0.620],
        "val_accuracy": [0.859, 0.861, 0.775, 0.811, 0.849, 0.853],
    }
    d = diagnose(erratic)
    assert d.verdict == "too_high", str(d)
    assert "jumped back up" in d.reasons[-1]
    # The same jump with validation accuracy ending 3 points below its best
    # is oscillation.
    h["val_accuracy"] = [*h["val_accuracy"][:-1], 0.928]
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    assert "jumped back up" in d.reasons[-1]


def test_a_tiny_steady_fall_is_too_low():
    # SGD at 1e-7 (real run): training and validation losses fall by about
    # 1e-6 at every epoch, the accuracies do not move. Before: not a "fall"
    # (under a tolerance of 1e-5 of the loss), read as a stall: too high,
    # "lower the rate 10x".
    h = {
        "loss": [1.2448174, 1.2448163, 1.2448151, 1.2448142, 1.2448132],
        "accuracy": [0.3095703] * 5,
        "val_loss": [1.2701277, 1.2701266, 1.2701257, 1.2701247, 1.2701237],
        "val_accuracy": [0.2695312] * 5,
    }
    d = diagnose(h)
    assert d.verdict == "too_low", str(d)
    assert d.evidence["monotone"] is True
    assert "crawling" in d.reasons[-1] and "0.0%" not in d.reasons[-1]
    # The training loss alone reads the same.
    assert diagnose({"loss": h["loss"]}).verdict == "too_low"


@pytest.mark.parametrize(
    "loss, verdict",
    [([0.0, 0.0, 0.0], "good"), ([1.0, 1.0, 1.0], "too_low"), ([2.3] * 5, "too_low")],
)
def test_a_loss_that_does_not_move_is_not_too_high_without_a_stall(loss, verdict):
    # Before: "stalled where it started", too high, with nothing in the
    # history showing a jump, a rise or a dead network.
    d = diagnose({"loss": loss})
    assert d.verdict == verdict, str(d)
    assert "lower" not in d.action
    # A rise at any epoch, a validation loss that rose, or a constant
    # prediction's accuracy shows a stall.
    assert diagnose({"loss": [*loss[:-1], loss[-1] + 1e-4]}).verdict == "too_high"
    d = diagnose({"loss": loss, "val_loss": [2.3, *[2.31] * (len(loss) - 1)]})
    assert d.verdict == "too_high" and "validation loss rose" in d.reasons[-1]
    if loss[-1] > 0:
        d = diagnose({"loss": loss, "accuracy": [0.1] * len(loss)})
        assert d.verdict == "too_high" and "constant" in d.reasons[-1]


def test_accuracy_of_a_multi_output_model_is_read():
    loss = [2.0, 1.2, 0.9, 0.8, 0.75]
    erratic = [0.5, 0.6, 0.7, 0.6, 0.5]
    h = {
        "loss": loss,
        "out_loss": loss,
        "out_accuracy": [0.5, 0.6, 0.7, 0.75, 0.78],
        "val_loss": [1.9, 1.1, 0.85, 0.8, 0.76],
        "val_out_accuracy": erratic,
    }
    # Before: no accuracy read, "good".
    d = diagnose(h)
    assert d.verdict == "too_high", str(d)
    assert d.evidence["val_accuracy_last"] == 0.5
    assert diagnose({"loss": loss, "val_cls_acc": erratic}).verdict == "too_high"
    # A top-k accuracy is not the prediction's accuracy.
    assert diagnose({"loss": loss, "val_top_k_accuracy": erratic}).verdict == "good"
    # Several: none is read, and the reasons say so.
    two = {**h, "val_aux_accuracy": erratic, "aux_accuracy": erratic}
    d = diagnose(two)
    assert d.verdict == "good"
    assert d.evidence["accuracies_not_read"] == ["aux_accuracy", "out_accuracy"]
    assert "none of them was read" in d.reasons[0]


def test_none_in_a_series_reads_as_nan():
    d = diagnose({"loss": [1.0, None, 0.5]})
    assert d.verdict == "too_high"
    assert d.evidence["loss_nonfinite_epoch"] == 2
    # Finite again at the end: the reason does not say "from epoch 2".
    assert "not finite at epoch 2" in d.reasons[0]
    assert "finite again by the last epoch" in d.reasons[0]
    d = diagnose({"loss": [1.0, None, float("nan")]})
    assert "not finite from epoch 2: it diverged" in d.reasons[0]


def test_a_gap_after_fitting_the_training_data_is_not_still_converging():
    # Found in QA (a digits MLP, Adam 3e-2, 450 training images): 100%
    # training accuracy, validation accuracy flat at 87.3%, and a last
    # validation loss 1.3% under the one before read as "inference mode has
    # not caught up" (rule 7c): too low, raise the rate. It hung on that
    # noise: a last value 0.7% up instead gave good.
    h = {
        "loss": [1.4503, 0.3823, 0.1912, 0.1077, 0.0862, 0.0549, 0.0319, 0.0226,
                 0.0194, 0.0153, 0.0117, 0.0099],
        "val_loss": [0.832, 0.5168, 0.5695, 0.5509, 0.4755, 0.4411, 0.4851,
                     0.4339, 0.4301, 0.4531, 0.4498, 0.4438],
        "accuracy": [0.556, 0.88, 0.947, 0.978, 0.98, 0.989, 0.996, 0.998,
                     0.998, 1.0, 1.0, 1.0],
        "val_accuracy": [0.773, 0.86, 0.8, 0.84, 0.847, 0.867, 0.86, 0.873,
                         0.873, 0.873, 0.873, 0.873],
    }  # fmt: skip
    d = diagnose(h)
    assert d.evidence["fitted_training_data"] is True
    assert d.verdict == "good"
    assert diagnose(dict(h, val_loss=[*h["val_loss"][:-1], 0.4531])).verdict == "good"
    # Not fitted (training accuracy 98.5%, 11 points over validation):
    # still converging, as before.
    slow = dict(h, accuracy=[min(a, 0.985) for a in h["accuracy"]])
    assert diagnose(slow).verdict == "too_low"


def test_a_plateau_at_a_fitted_loss_is_not_a_killed_network():
    # Found in QA: converged in the first epochs, then flat at 100% training
    # accuracy, read by rule 4 as "the network stopped learning".
    h = {"loss": [0.5, 0.01, 0.0101, 0.0099, 0.01], "accuracy": [0.9, 1, 1, 1, 1]}
    assert diagnose(h).verdict == "good"
    # The same plateau at chance accuracy is the killed network.
    dead = {"loss": [5.0, 2.31, 2.3102, 2.3099, 2.31], "accuracy": [0.1] * 5}
    assert diagnose(dead).verdict == "too_high"


def test_history_without_loss_and_with_odd_keys_is_a_clear_error():
    # Found in QA: a bare TypeError from sorting keys of mixed types.
    with pytest.raises(ValueError, match=r"non-empty 'loss' series"):
        diagnose({1: [0.5], "accuracy": [0.5]})


def test_every_verdict_names_its_rule():
    # `Diagnosis.rule` names the reading that decided, and `RULES` maps it to
    # the verdict it gives: checked over random histories of every shape.
    from keras_lr.diagnose import RULES

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        n = int(rng.integers(1, 12))
        loss = np.exp(np.cumsum(rng.normal(-0.1, 0.3, n))) * 2.3
        history = {"loss": list(loss)}
        if rng.random() < 0.7:
            history["val_loss"] = list(loss * np.exp(rng.normal(0, 0.2, n)))
        if rng.random() < 0.5:
            acc = np.clip(1 - loss / 2.5 + rng.normal(0, 0.05, n), 0.01, 1.0)
            history["accuracy"] = list(acc)
            if "val_loss" in history:
                history["val_accuracy"] = list(
                    np.clip(acc + rng.normal(0, 0.05, n), 0.01, 1)
                )
        if rng.random() < 0.05:
            history["loss"][-1] = float("nan")
        d = diagnose(history)
        assert RULES[d.rule] == d.verdict, (d.rule, d.verdict)
        seen.add(d.rule)
    assert len(seen) >= 12
