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
    # 0 is refused now, not replaced by the default when the probe is made.
    with pytest.raises(ValueError, match="`step_size_up` must be >= 1"):
        CyclicLRScheduler(0.01, 0.1, step_size_up=0)
    # A string flag would read as True.
    with pytest.raises(TypeError, match="`log_every_step` must be a bool"):
        OneCycleScheduler(log_every_step="no")
    with pytest.raises(TypeError, match="`every_step` must be a bool"):
        LearningRateLogger(every_step="no")


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


@pytest.mark.parametrize("every_step", [False, True])
def test_learning_rate_logger_keeps_asynchronous_dispatch(every_step):
    # A per-epoch logger must not make Keras wait for the device every step.
    from keras.src import backend as keras_backend

    callbacks = keras.callbacks.CallbackList(
        [LearningRateLogger(every_step=every_step)],
        model=linear_model(keras.optimizers.SGD(0.1)),
    )
    expected = keras_backend.IS_THREAD_SAFE and not every_step
    assert getattr(callbacks, "_async_train", False) is expected


def _host(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


class _OptimizerCopy(keras.callbacks.Callback):
    """The optimizer's own variables (not a tracked `Scaled` factor) at each
    epoch end."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        own = [v for v in optimizer.variables if v.name != "lr_factor"]
        self.values.append(_host(own))


@pytest.mark.parametrize(
    "make",
    [
        lambda: (keras.optimizers.SGD(0.05, momentum=0.9), OneCycleScheduler()),
        lambda: (keras.optimizers.SGD(0.05, momentum=0.9), WarmupScheduler()),
        lambda: (
            keras_lr.optimizers.SGD(0.05, momentum=0.9),
            OneCycleScheduler(cycle_momentum=True),
        ),
    ],
    ids=["one_cycle", "warmup", "one_cycle_momentum"],
)
def test_checkpoint_written_during_fit_keeps_the_optimizer_state(tmp_path, make):
    optimizer, scheduler = make()
    model = linear_model(optimizer)
    path = str(tmp_path / "ck_{epoch}.keras")
    copy = _OptimizerCopy()
    fit(model, callbacks=[scheduler, keras.callbacks.ModelCheckpoint(path), copy])
    # The file of epoch 1 (8 steps in, mid-schedule) has the optimizer state
    # of that epoch end, bitwise, and the rate the user compiled with.
    loaded = keras.models.load_model(str(tmp_path / "ck_1.keras"))
    values = copy.values[0]
    assert len(loaded.optimizer.variables) == len(values) == 3
    for expected, got in zip(values, _host(loaded.optimizer.variables)):
        np.testing.assert_array_equal(got, expected)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 8
    assert isinstance(loaded.optimizer._learning_rate, keras.Variable)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.05)
    assert loaded.optimizer.momentum == pytest.approx(0.9)
    # After fit, the user's optimizer describes itself as before.
    assert type(model.optimizer).get_config(model.optimizer) == (
        model.optimizer.get_config()
    )
    assert "get_config" not in vars(model.optimizer)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


class _Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(keras_lr._rate.current_rate(self.model.optimizer))


@pytest.mark.parametrize("backup_first", [True, False])
def test_resumed_fit_continues_the_schedule_at_the_global_step(tmp_path, backup_first):
    def run(extra, backup_dir):
        model = linear_model(keras.optimizers.SGD(0.05))
        rates = _Rates()
        scheduler = OneCycleScheduler()
        order = [scheduler]
        if backup_dir is not None:
            backup = keras.callbacks.BackupAndRestore(backup_dir)
            order = [backup, scheduler] if backup_first else [scheduler, backup]
        try:
            fit(model, epochs=4, callbacks=[*order, rates, *extra])
        except RuntimeError:
            pass
        return model, rates.rates

    reference, expected = run([], None)
    assert len(expected) == 32
    backup_dir = str(tmp_path / "backup")
    _, first = run([_Interrupt()], backup_dir)
    assert first == expected[:16]
    model, resumed = run([], backup_dir)
    assert resumed == expected[16:]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(model.optimizer._learning_rate, keras.Variable)


@pytest.mark.parametrize("backup_first", [True, False])
def test_resumed_fit_of_unknown_length_does_not_depend_on_callback_order(
    tmp_path, backup_first
):
    # Before: with no number of steps per epoch, the schedule continued
    # when the scheduler came before `BackupAndRestore` (it read the step
    # count before the restore) and started again, silently, when it came
    # after. Now it starts again either way, with a warning.
    import tensorflow as tf

    x, y = data()

    def dataset():  # `filter`: a dataset of unknown length
        ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda *_: True)
        return ds.batch(BS)

    def run(extra):
        model = linear_model(keras.optimizers.SGD(0.05))
        rates = _Rates()
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        scheduler = CyclicLRScheduler(0.01, 0.1, step_size_up=3)
        order = [backup, scheduler] if backup_first else [scheduler, backup]
        try:
            model.fit(dataset(), epochs=4, verbose=0, shuffle=False,
                      callbacks=[*order, rates, *extra])  # fmt: skip
        except RuntimeError:
            pass
        return rates.rates

    first = run([_Interrupt()])
    with pytest.warns(UserWarning, match="starts its schedule again at epoch 3"):
        resumed = run([])
    # Epochs 3 and 4 start the cycle again, as epochs 1 and 2 did.
    assert resumed == first
    assert first[:6] == pytest.approx([ref.cyclic(t, 0.01, 0.1, 3) for t in range(6)])


def test_initial_epoch_places_the_schedule_at_its_epoch():
    model = linear_model(keras.optimizers.SGD(0.05))
    x, y = data()
    rates = _Rates()
    cb = OneCycleScheduler()
    model.fit(
        x,
        y,
        batch_size=BS,
        epochs=2,
        initial_epoch=1,
        shuffle=False,
        verbose=0,
        callbacks=[cb, rates],
    )
    assert cb.schedule.total_steps == 16
    assert rates.rates == [float(cb.schedule(t)) for t in range(8, 16)]


@pytest.mark.parametrize("detector_first", [True, False])
def test_divergence_detector_rolls_back_a_scheduled_fit(detector_first):
    x, y = data()
    x = np.concatenate([x, x])
    y = np.concatenate([y, y])
    x[5 * BS] = np.nan  # batch 5 of 16
    model = linear_model(keras.optimizers.SGD(0.05, momentum=0.9))
    lr_variable = model.optimizer._learning_rate
    det = keras_lr.callbacks.DivergenceDetector(
        check_every=2, snapshot_every=2, verbose=0
    )
    scheduler = OneCycleScheduler()
    order = [det, scheduler] if detector_first else [scheduler, det]
    # One epoch: the NaN batch is met once.
    model.fit(x, y, batch_size=BS, epochs=1, shuffle=False, verbose=0, callbacks=order)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert len(det.events) == 1, det.events
    assert det.events[0]["action"] == "rollback"
    assert model.optimizer._learning_rate is lr_variable
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_every_step_logging_reads_a_tracked_factor():
    # The `Scaled` factor of the user's schedule is tracked during fit (on
    # JAX it has no host value between syncs); the per-step log still reads it.
    scaled = S.Scaled(0.05, factor=0.5)
    model = linear_model(keras.optimizers.SGD(scaled))
    seen = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(logs["learning_rate"])
    )
    cb = WarmupScheduler(warmup_steps=4, log_every_step=True)
    fit(model, epochs=1, callbacks=[cb, recorder])
    expected = [0.025 * min(t, 4) / 4 for t in range(8)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=1e-9)
    assert model.optimizer._learning_rate is scaled


def test_every_step_logging_of_a_float_rate():
    # On JAX a float rate's variable has no host value during fit: the
    # per-step logger used to crash reading it.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    h = model.fit(
        np.ones((N, 2), "float32"), np.ones((N, 1), "float32"), batch_size=BS,
        epochs=1, verbose=0, callbacks=[LearningRateLogger(every_step=True)],
    )  # fmt: skip
    np.testing.assert_allclose(h.history["learning_rate"], [0.05], rtol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="torch has no steps_per_execution"
)
def test_every_step_logging_of_a_partial_last_execution():
    # 8 steps in executions of 3: the last execution runs steps 6-7, which
    # Keras reports as ending at step 8; the log must hold step 7's rate.
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["learning_rate"])

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.05), loss="mse", steps_per_execution=3
    )
    model.fit(
        np.ones((64, 2), "float32"), np.ones((64, 1), "float32"), batch_size=8,
        epochs=1, verbose=0,
        callbacks=[OneCycleScheduler(total_steps=16, log_every_step=True), Record()],
    )  # fmt: skip
    expected = S.OneCycle(0.05, 16)
    np.testing.assert_allclose(seen, [float(expected(s)) for s in (2, 5, 7)], rtol=1e-6)


def test_cycle_momentum_refuses_an_sgd_without_momentum_on_every_backend():
    # TensorFlow builds the optimizer only when it traces the first step:
    # the check must not depend on it being built.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras_lr.optimizers.SGD(0.05), loss="mse")
    with pytest.raises(ValueError, match="momentum > 0"):
        model.fit(
            np.ones((N, 2), "float32"), np.ones((N, 1), "float32"),
            batch_size=BS, epochs=1, verbose=0,
            callbacks=[OneCycleScheduler(cycle_momentum=True)],
        )  # fmt: skip


def test_on_train_end_after_an_interrupted_fit_puts_the_rate_back():
    # Keras does not call `on_train_end` when `fit` raises: the schedule
    # stays installed (a later plain fit would train with it) until the
    # callback's `on_train_end` is called, as documented.
    model = linear_model(keras.optimizers.SGD(0.05))
    rate = model.optimizer._learning_rate
    scheduler = OneCycleScheduler()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, epochs=4, callbacks=[scheduler, _Interrupt()])
    assert model.optimizer._learning_rate is not rate
    scheduler.on_train_end()
    assert model.optimizer._learning_rate is rate
    rates = _Rates()
    fit(model, epochs=1, callbacks=[rates])
    assert rates.rates == pytest.approx([0.05] * 8)
