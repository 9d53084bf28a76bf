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


_RACE_UNDER_DATA_PARALLEL = """
import numpy as np

import keras_lr

x = np.random.default_rng(0).normal(size=(1024, 8)).astype("float32")
y = x @ np.linspace(-1, 1, 8, dtype="float32")[:, None]


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse", metrics=["mae"])
    return m


def host(m):
    variables = m.variables + m.optimizer.variables + m.metrics_variables
    return [np.array(v.value) for v in variables]


kwargs = dict(batch_size=32, num_steps=30, verbose=0)
distributed = model()
before = host(distributed)
lr = keras_lr.find_best_learning_rate(distributed, (x, y), **kwargs)
assert all(a.tobytes() == b.tobytes() for a, b in zip(before, host(distributed)))
keras.distribution.set_distribution(None)
np.testing.assert_allclose(
    lr, keras_lr.find_best_learning_rate(model(), (x, y), **kwargs), rtol=1e-3
)
print("ok", lr)
"""


@pytest.mark.slow
def test_retrace_before_fit_under_jax_data_parallel():
    # Before: under a JAX `DataParallel`, the race of `find_best_learning_rate`
    # made its train function before `fit` built the compiled metrics, for
    # a state without them, and `fit` failed ("pytree structure error ...
    # out_shardings"). Now the function is made at its first call.
    from conftest import run_jax_data_parallel

    assert run_jax_data_parallel(_RACE_UNDER_DATA_PARALLEL).startswith("ok")
