"""Tests of keras_lr._rate: reading and lowering an optimizer's rate."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lr import _rate


class FactorSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Test double of the `keras_lr.schedules.Scaled` contract."""

    def __init__(self, base: float, decay_steps: int = 10):
        self.base = base
        self.decay_steps = decay_steps
        self.factor = keras.Variable(1.0, dtype="float32", trainable=False)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.factor * self.base / (1.0 + step / self.decay_steps)

    def get_config(self):
        return {"base": self.base, "decay_steps": self.decay_steps}


@pytest.mark.multibackend
def test_float_rate_is_scaled_in_place():
    opt = keras.optimizers.Adam(0.02)
    assert _rate.scale_variable(opt) is opt._learning_rate
    before, after = _rate.scale_rate(opt, 0.5)
    assert np.float32(before) == np.float32(0.02)
    assert np.float32(after) == np.float32(0.01)
    assert np.float32(_rate.current_rate(opt)) == np.float32(0.01)


@pytest.mark.multibackend
def test_loss_scale_optimizer_is_unwrapped():
    inner = keras.optimizers.SGD(0.1)
    opt = keras.optimizers.LossScaleOptimizer(inner)
    assert _rate.scale_variable(opt) is inner._learning_rate
    _rate.scale_rate(opt, 0.1)
    np.testing.assert_allclose(float(opt.learning_rate), 0.01, rtol=1e-6)


@pytest.mark.multibackend
def test_schedule_with_factor_is_scaled_through_it():
    sched = FactorSchedule(0.1)
    opt = keras.optimizers.SGD(sched)
    assert _rate.scale_variable(opt) is sched.factor
    assert _rate.can_scale(opt)
    _rate.scale_rate(opt, 0.25)
    np.testing.assert_allclose(float(np.asarray(sched.factor.value)), 0.25)
    # At iteration 0 the rate is factor * base.
    np.testing.assert_allclose(_rate.current_rate(opt), 0.025, rtol=1e-6)


def test_plain_schedule_cannot_be_scaled():
    sched = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5)
    opt = keras.optimizers.SGD(sched)
    assert _rate.scale_variable(opt) is None and not _rate.can_scale(opt)
    with pytest.raises(ValueError, match=r"keras_lr.schedules.Scaled"):
        _rate.scale_rate(opt, 0.5)
    np.testing.assert_allclose(_rate.current_rate(opt), 0.1, rtol=1e-6)


def test_bad_factor():
    opt = keras.optimizers.SGD(0.1)
    with pytest.raises(TypeError, match="factor"):
        _rate.scale_rate(opt, "0.5")
    with pytest.raises(ValueError, match=r"`factor` must be > 0"):
        _rate.scale_rate(opt, 0.0)
    np.testing.assert_allclose(_rate.current_rate(opt), 0.1, rtol=1e-6)


def test_is_tracked():
    opt = keras.optimizers.SGD(FactorSchedule(0.1))
    opt.build([keras.Variable(np.zeros(2, "float32"))])
    assert not _rate.is_tracked(opt, opt._learning_rate.factor)
    opt2 = keras.optimizers.SGD(0.1)
    opt2.build([keras.Variable(np.zeros(2, "float32"))])
    assert _rate.is_tracked(opt2, opt2._learning_rate)
