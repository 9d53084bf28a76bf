"""Momentum cycling: keras_lr.optimizers against numpy updates, compiled."""

from __future__ import annotations

import _schedule_reference as ref
import keras
import numpy as np
import pytest

import keras_lr
from keras_lr import schedules as S

pytestmark = pytest.mark.multibackend

TOTAL = 12


def spe(n):
    """`steps_per_execution`: PyTorch's trainer only takes 1."""
    return 1 if keras.backend.backend() == "torch" else n


def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(TOTAL * 4, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    return x, y


def train(optimizer, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(
        optimizer=optimizer, loss="mse", steps_per_execution=spe(steps_per_execution)
    )
    w0 = model.get_weights()[0].astype(np.float64)
    x, y = data()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return w0, model.get_weights()[0].astype(np.float64)


def grads(w, t):
    x, y = data()
    xb, yb = x[4 * t : 4 * t + 4].astype(np.float64), y[4 * t : 4 * t + 4]
    return 2.0 / 4 * xb.T @ (xb @ w - yb)


def lr_at(t):
    return ref.one_cycle(t, 0.05, TOTAL, 0.3)


def mom_at(t):
    return ref.one_cycle(t, 0.05, TOTAL, 0.3, points=[0.95, 0.85, 0.95])


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("spe", [1, 4])
def test_sgd_with_cycled_momentum(nesterov, spe):
    one_cycle = S.OneCycle(0.05, TOTAL)
    opt = keras_lr.optimizers.SGD(
        one_cycle, momentum=one_cycle.momentum(), nesterov=nesterov
    )
    w0, w = train(opt, spe)
    ws, v = w0.copy(), np.zeros_like(w0)
    for t in range(TOTAL):
        g, lr, mu = grads(ws, t), lr_at(t), mom_at(t)
        v = mu * v - lr * g
        ws = ws + (mu * v - lr * g if nesterov else v)
    np.testing.assert_allclose(w, ws, rtol=2e-5, atol=1e-6)
    # Not what a constant momentum gives.
    _, w_const = train(keras.optimizers.SGD(one_cycle, momentum=0.9, nesterov=nesterov))
    assert np.max(np.abs(w_const - w)) > 1e-4


def test_cycled_momentum_stays_in_phase_with_gradient_accumulation():
    # Keras calls the rate's schedule with the raw step counter, which counts
    # every batch; the momentum schedule used `iterations`, which counts the
    # applied updates only (the raw count / k), so under accumulation the
    # momentum moved k times slower than the rate.
    k = 2
    one_cycle = S.OneCycle(0.05, TOTAL)
    opt = keras_lr.optimizers.SGD(
        one_cycle, momentum=one_cycle.momentum(), gradient_accumulation_steps=k
    )
    w0, w = train(opt)

    def simulate(momentum_step):
        ws, v = w0.copy(), np.zeros_like(w0)
        for j in range(TOTAL // k):
            # The update at the k-th batch of a group: the mean gradient of
            # its batches, the rate at that batch's raw step.
            g = np.mean([grads(ws, j * k + i) for i in range(k)], axis=0)
            step = j * k + k - 1
            v = mom_at(momentum_step(j, step)) * v - lr_at(step) * g
            ws = ws + v
        return ws

    np.testing.assert_allclose(w, simulate(lambda j, step: step), rtol=2e-5, atol=1e-6)
    assert np.max(np.abs(w - simulate(lambda j, step: j))) > 1e-4


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_with_cycled_beta_1(kind):
    one_cycle = S.OneCycle(0.05, TOTAL)
    if kind == "adam":
        opt = keras_lr.optimizers.Adam(one_cycle, beta_1=one_cycle.momentum())
    else:
        opt = keras_lr.optimizers.AdamW(
            one_cycle, beta_1=one_cycle.momentum(), weight_decay=0.0
        )
    w0, w = train(opt, spe := 3)
    assert spe == 3
    ws, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    b2, eps = 0.999, 1e-7
    for t in range(TOTAL):
        g, lr, b1 = grads(ws, t), lr_at(t), mom_at(t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        alpha = lr * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        ws = ws - alpha * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(w, ws, rtol=1e-4, atol=1e-6)


def test_float_momentum_is_keras_own_update():
    schedule = S.CyclicLR(0.01, 0.05, 3)
    _, a = train(keras_lr.optimizers.SGD(schedule, momentum=0.9))
    _, b = train(keras.optimizers.SGD(schedule, momentum=0.9))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    _, a = train(keras_lr.optimizers.Adam(schedule, beta_1=0.8))
    _, b = train(keras.optimizers.Adam(schedule, beta_1=0.8))
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_a_string_or_int_rate_is_a_type_error(cls):
    optimizer = getattr(keras_lr.optimizers, cls)
    for value in ("0.1", 1):
        with pytest.raises(TypeError, match="`learning_rate` must be a float"):
            optimizer(value)
    assert float(optimizer(np.float32(0.1)).learning_rate) == pytest.approx(0.1)


def test_bad_momentum():
    with pytest.raises(TypeError, match="`momentum` must be a float or"):
        keras_lr.optimizers.SGD(0.1, momentum=lambda: 0.9)
    with pytest.raises(TypeError, match="`beta_1` must be a float or"):
        keras_lr.optimizers.Adam(0.1, beta_1=lambda: 0.9)


@pytest.mark.parametrize(
    "value,error,match",
    [
        ("0.9", TypeError, "must be a number"),
        (None, TypeError, "must be a number"),
        (1.0, ValueError, r"must be in \[0.0, 1.0\)"),
        (-0.1, ValueError, r"must be in \[0.0, 1.0\)"),
        (float("nan"), ValueError, r"must be in \[0.0, 1.0\)"),
    ],
)
def test_momentum_out_of_range_or_not_a_number(value, error, match):
    with pytest.raises(error, match=f"`momentum` {match}"):
        keras_lr.optimizers.SGD(0.1, momentum=value)
    for cls in (keras_lr.optimizers.Adam, keras_lr.optimizers.AdamW):
        with pytest.raises(error, match=f"`beta_1` {match}"):
            cls(0.1, beta_1=value)
    # Ints are numbers: SGD(momentum=0) is plain SGD.
    assert keras_lr.optimizers.SGD(0.1, momentum=0).momentum == 0.0
