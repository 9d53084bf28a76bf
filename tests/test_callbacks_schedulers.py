"""Callback forms: in-graph install for one fit, restore, logging."""

from __future__ import annotations

import csv

import _schedule_reference as ref
import keras
import numpy as np
import pytest

import keras_lr
from keras_lr import schedules as S
from keras_lr.callbacks import (
    CyclicLRScheduler,
    LearningRateLogger,
    OneCycleScheduler,
    WarmupScheduler,
)

pytestmark = pytest.mark.multibackend

N, BS = 32, 4  # 8 steps an epoch


def spe(n):
    return 1 if keras.backend.backend() == "torch" else n


def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    return x, y


def linear_model(optimizer, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(
        optimizer=optimizer,
        loss="mse",
        steps_per_execution=spe(steps_per_execution),
        jit_compile=keras.backend.backend() != "torch",  # XLA on TF and JAX
    )
    return model


def replay_sgd(w0, lrs, epochs, momenta=None):
    """Plain (or momentum) SGD on the same batches, in numpy."""
    x, y = data()
    w, v, t = w0.astype(np.float64), 0.0, 0
    for _ in range(epochs):
        for b in range(N // BS):
            xb, yb = x[b * BS : (b + 1) * BS], y[b * BS : (b + 1) * BS]
            g = 2.0 / BS * xb.T @ (xb @ w - yb)
            if momenta is None:
                w = w - lrs[t] * g
            else:
                v = momenta[t] * v - lrs[t] * g
                w = w + v
            t += 1
    return w


def fit(model, epochs=2, callbacks=()):
    x, y = data()
    return model.fit(
        x,
        y,
        batch_size=BS,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )


def test_one_cycle_scheduler_in_graph_and_restored():
    opt = keras.optimizers.SGD(0.05)
    lr_variable = opt._learning_rate
    model = linear_model(opt, steps_per_execution=4)
    w0 = model.get_weights()[0]
    cb = OneCycleScheduler()
    history = fit(model, callbacks=[cb])
    # Length and peak from fit and the optimizer.
    assert cb.schedule.total_steps == 16 and cb.schedule.max_lr == 0.05
    lrs = [ref.one_cycle(t, 0.05, 16) for t in range(16)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 2), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        history.history["learning_rate"], [lrs[7], lrs[15]], rtol=1e-5
    )
    # The optimizer's own rate is back, untouched.
    assert model.optimizer._learning_rate is lr_variable
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    w1 = model.get_weights()[0]
    fit(model, epochs=1)
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w1, [0.05] * 8, 1), rtol=1e-5, atol=1e-6
    )


def test_schedule_starts_at_the_current_step_of_a_later_fit():
    model = linear_model(keras.optimizers.SGD(0.05))
    fit(model, epochs=1)
    w0 = model.get_weights()[0]
    cb = OneCycleScheduler(max_lr=0.08, total_steps=8, anneal="linear")
    history = fit(model, epochs=1, callbacks=[cb])
    lrs = [ref.one_cycle(t, 0.08, 8, anneal="linear") for t in range(8)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 1), rtol=1e-5, atol=1e-6
    )
    assert history.history["learning_rate"][0] == pytest.approx(lrs[7], rel=1e-5)


def test_cyclic_scheduler_every_step_logging_and_csv(tmp_path):
    model = linear_model(keras.optimizers.SGD(0.05), steps_per_execution=2)
    seen = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(logs["learning_rate"])
    )
    path = tmp_path / "log.csv"
    cb = CyclicLRScheduler(0.01, 0.1, cycles=2, log_every_step=True)
    fit(model, callbacks=[cb, recorder, keras.callbacks.CSVLogger(str(path))])
    assert cb.schedule.step_size_up == 4
    every = spe(2)
    expected = [ref.cyclic(t, 0.01, 0.1, 4) for t in range(16)][every - 1 :: every]
    np.testing.assert_allclose(seen, expected, rtol=1e-5)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(
        [ref.cyclic(7, 0.01, 0.1, 4), ref.cyclic(15, 0.01, 0.1, 4)], rel=1e-5
    )


def test_warmup_scheduler_wraps_the_optimizer_schedule():
    decay = keras.optimizers.schedules.ExponentialDecay(0.05, 4, 0.5)
    model = linear_model(keras.optimizers.SGD(decay))
    w0 = model.get_weights()[0]
    cb = WarmupScheduler()  # one epoch of warmup
    fit(model, callbacks=[cb])
    assert cb.schedule.warmup_steps == 8
    lrs = [ref.warmup(t, lambda k: 0.05 * 0.5 ** (k / 4), 8) for t in range(16)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 2), rtol=1e-5, atol=1e-6
    )
    assert model.optimizer._learning_rate is decay


def test_cycle_momentum_from_the_callback():
    opt = keras_lr.optimizers.SGD(0.05, momentum=0.9)
    model = linear_model(opt)
    w0 = model.get_weights()[0]
    cb = OneCycleScheduler(cycle_momentum=True)
    fit(model, callbacks=[cb])
    lrs = [ref.one_cycle(t, 0.05, 16) for t in range(16)]
    moms = [ref.one_cycle(t, 0.05, 16, points=[0.95, 0.85, 0.95]) for t in range(16)]
    np.testing.assert_allclose(
        model.get_weights()[0],
        replay_sgd(w0, lrs, 2, momenta=moms),
        rtol=1e-5,
        atol=1e-6,
    )
    assert opt.momentum == 0.9


def test_cycle_momentum_needs_a_keras_lr_optimizer():
    model = linear_model(keras.optimizers.SGD(0.05, momentum=0.9))
    with pytest.raises(ValueError, match=r"keras_lr\.optimizers\.SGD, Adam or AdamW"):
        fit(model, callbacks=[OneCycleScheduler(cycle_momentum=True)])


def test_scheduler_arguments_are_checked_at_construction():
    with pytest.raises(ValueError, match="`pct_start`"):
        OneCycleScheduler(pct_start=1.5)
    with pytest.raises(ValueError, match="`max_lr` must be >= `base_lr`"):
        CyclicLRScheduler(0.1, 0.01)
    with pytest.raises(ValueError, match="`warmup_steps` must be >= 0"):
        WarmupScheduler(-3)


def test_one_cycle_scheduler_needs_a_peak_for_a_scheduled_optimizer():
    model = linear_model(keras.optimizers.SGD(S.InverseSqrt(0.1, 4)))
    with pytest.raises(ValueError, match="Argument `max_lr` is needed"):
        fit(model, callbacks=[OneCycleScheduler()])


def test_learning_rate_logger_on_a_schedule():
    model = linear_model(keras.optimizers.SGD(S.CyclicLR(0.01, 0.1, 3)))
    history = fit(model, callbacks=[LearningRateLogger()])
    assert history.history["learning_rate"] == pytest.approx(
        [ref.cyclic(7, 0.01, 0.1, 3), ref.cyclic(15, 0.01, 0.1, 3)], rel=1e-5
    )
