"""ReduceLROnPlateau on floats and on Scaled schedules; the factor reaching
the compiled step (JAX included)."""

from __future__ import annotations

import warnings

import _schedule_reference as ref
import keras
import numpy as np
import pytest
from test_callbacks_schedulers import BS, N, data, fit, linear_model, replay_sgd

from keras_lr import schedules as S
from keras_lr.callbacks import ReduceLROnPlateau, WarmupScheduler

pytestmark = pytest.mark.multibackend


def never_improves():
    return ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)


def test_float_rate_is_lowered():
    model = linear_model(keras.optimizers.SGD(0.04))
    w0 = model.get_weights()[0]
    history = fit(model, epochs=3, callbacks=[never_improves()])
    # Epoch 1 sets the best; epochs 2 and 3 do not improve it.
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert history.history["learning_rate"] == pytest.approx([0.04, 0.02, 0.01])
    lrs = [0.04] * 8 + [0.04] * 8 + [0.02] * 8
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 3), rtol=1e-5, atol=1e-6
    )


def test_scaled_schedule_is_lowered_in_the_compiled_step():
    schedule = S.Scaled(S.CyclicLR(0.01, 0.05, 4))
    opt = keras.optimizers.SGD(schedule)
    model = linear_model(
        opt, steps_per_execution=1 if keras.backend.backend() == "torch" else 4
    )
    n_vars = len(opt.variables)
    w0 = model.get_weights()[0]
    fit(model, epochs=3, callbacks=[never_improves()])
    factors = [1.0] * 16 + [0.5] * 8
    lrs = [ref.cyclic(t, 0.01, 0.05, 4) * factors[t] for t in range(24)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 3), rtol=1e-5, atol=1e-6
    )
    assert float(keras.ops.convert_to_numpy(schedule.factor.value)) == 0.25
    assert len(opt.variables) == n_vars  # untracked after fit
    assert all(v is not schedule.factor for v in opt.variables)


def test_scaled_inside_a_loss_scale_optimizer():
    schedule = S.Scaled(S.CyclicLR(0.01, 0.05, 4))
    opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))
    model = linear_model(opt)
    w0 = model.get_weights()[0]
    fit(model, epochs=3, callbacks=[never_improves()])
    factors = [1.0] * 16 + [0.5] * 8
    lrs = [ref.cyclic(t, 0.01, 0.05, 4) * factors[t] for t in range(24)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 3), rtol=1e-5, atol=1e-6
    )
    assert all(v is not schedule.factor for v in opt.variables)  # untracked


def test_mid_epoch_assignment_reaches_the_step():
    """What the divergence detector does: assign `factor` between two steps."""
    schedule = S.Scaled(S.WarmupCosineDecay(0.05, 8, 2))
    model = linear_model(keras.optimizers.SGD(schedule))
    w0 = model.get_weights()[0]

    class Halve(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            S.track_scaled(self.model.optimizer)

        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                _ = self.model  # syncs JAX's state, so the next step re-reads it
                schedule.factor.assign(0.5)

        def on_train_end(self, logs=None):
            S.untrack_scaled(self.model.optimizer)

    fit(model, epochs=1, callbacks=[Halve()])
    lrs = [
        ref.warmup_cosine(t, 0.05, 8, 2) * (1.0 if t <= 2 else 0.5) for t in range(8)
    ]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.tensorflow_only
def test_tensorflow_cached_train_function_reads_the_factor():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow only")
    schedule = S.Scaled(0.02)
    model = linear_model(keras.optimizers.SGD(schedule))
    fit(model, epochs=1)
    cached = model.train_function
    w1 = model.get_weights()[0]
    schedule.factor.assign(0.25)
    fit(model, epochs=1)
    assert model.train_function is cached
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w1, [0.005] * 8, 1), rtol=1e-5, atol=1e-6
    )


def test_checkpoint_written_during_fit_has_the_standard_variables(tmp_path):
    schedule = S.Scaled(S.OneCycle(0.05, 16))
    model = linear_model(keras.optimizers.SGD(schedule, momentum=0.9))
    path = str(tmp_path / "ckpt.keras")
    fit(
        model,
        epochs=2,
        callbacks=[never_improves(), keras.callbacks.ModelCheckpoint(path)],
    )
    loaded = keras.models.load_model(path)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value)
        )
    factor = loaded.optimizer._learning_rate.factor
    assert float(keras.ops.convert_to_numpy(factor.value)) == 0.5


@pytest.mark.parametrize("tracker", ["plateau", "warmup_scheduler"])
def test_checkpoint_during_fit_keeps_the_loss_scale_state(tracker, tmp_path):
    # Before: the `LossScaleOptimizer` saved its inner optimizer's tracked
    # factor among its own variables: loading found one variable too many,
    # warned "Skipping variable loading" and kept a fresh loss scale and
    # step counter.
    schedule = S.Scaled(S.OneCycle(0.05, 16))
    opt = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(schedule, momentum=0.9)
    )
    model = linear_model(opt)

    class LowerLossScale(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.dynamic_scale.assign(1024.0)

    ours = never_improves() if tracker == "plateau" else WarmupScheduler(4)
    path = str(tmp_path / "ckpt.keras")
    weights = str(tmp_path / "ckpt.weights.h5")
    fit(model, epochs=2, callbacks=[ours, LowerLossScale(),
        keras.callbacks.ModelCheckpoint(path),
        keras.callbacks.ModelCheckpoint(weights, save_weights_only=True)])  # fmt: skip
    assert "save_own_variables" not in vars(opt)  # the filter went with `fit`
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(path)
        again = linear_model(
            keras.optimizers.LossScaleOptimizer(
                keras.optimizers.SGD(S.Scaled(S.OneCycle(0.05, 16)), momentum=0.9)
            )
        )
        again.optimizer.build(again.trainable_variables)
        again.load_weights(weights)
    for restored in (loaded.optimizer, again.optimizer):
        assert float(keras.ops.convert_to_numpy(restored.dynamic_scale)) == 1024.0
        assert int(keras.ops.convert_to_numpy(restored.step_counter)) == 16
        assert int(restored.iterations) == 16


def test_plain_schedule_is_refused_with_advice():
    model = linear_model(keras.optimizers.SGD(S.OneCycle(0.05, 16)))
    with pytest.raises(TypeError, match=r"keras_lr\.schedules\.Scaled"):
        fit(model, callbacks=[never_improves()])


def test_arguments():
    with pytest.raises(ValueError, match="`factor` must be in"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ReduceLROnPlateau(mode="up")
    assert (N, BS) == (32, 4)
    assert data()[0].shape == (32, 3)


def test_min_lr_is_a_learning_rate():
    # Like every rate of keras_lr (DivergenceDetector(min_lr=...) included).
    with pytest.raises(TypeError, match=r"`min_lr` must be a float, such as 0\.0"):
        ReduceLROnPlateau(min_lr=0)
    with pytest.raises(TypeError, match=r"`min_lr` must be a float.*of type str"):
        ReduceLROnPlateau(min_lr="1e-4")
    with pytest.raises(TypeError, match=r"`min_lr` must be a float"):
        ReduceLROnPlateau(min_lr=True)
    with pytest.raises(ValueError, match=r"`min_lr` must be >= 0"):
        ReduceLROnPlateau(min_lr=-1e-3)
    assert ReduceLROnPlateau(min_lr=1e-5).min_lr == 1e-5
    assert ReduceLROnPlateau(min_lr=np.float32(0.0)).min_lr == 0.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        # NaN made every comparison false: the rate was cut every epoch.
        ({"min_delta": float("nan")}, ValueError, "`min_delta` must be finite"),
        ({"min_lr": float("inf")}, ValueError, "`min_lr` must be finite"),
        ({"verbose": "1"}, TypeError, "`verbose` must be an integer"),
        ({"verbose": -1}, ValueError, "`verbose` must be >= 0"),
    ],
)
def test_non_finite_thresholds_and_bad_verbose_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(**kwargs)


@pytest.mark.parametrize("monitor", [3, None, ["val_loss"], b"val_loss"])
def test_monitor_must_be_a_string(monitor):
    with pytest.raises(TypeError, match=r"`monitor` must be a string.*'val_loss'"):
        ReduceLROnPlateau(monitor=monitor)


class Flat(keras.callbacks.Callback):
    """Logs a metric that never improves."""

    def on_epoch_end(self, epoch, logs=None):
        logs["flat"] = 1.0


def lr_history(callback, epochs, lr=0.04):
    model = linear_model(keras.optimizers.SGD(lr))
    history = fit(model, epochs=epochs, callbacks=[Flat(), callback])
    return history.history["learning_rate"]


@pytest.mark.parametrize("patience, cooldown", [(1, 0), (2, 0), (3, 0), (2, 1)])
def test_patience_and_cooldown_count_epochs_as_keras_does(patience, cooldown):
    # Before: lowered after patience + 1 epochs without improvement.
    kwargs = dict(monitor="flat", mode="min", factor=0.5, patience=patience)
    ours = lr_history(ReduceLROnPlateau(cooldown=cooldown, **kwargs), 8)
    theirs = lr_history(
        keras.callbacks.ReduceLROnPlateau(cooldown=cooldown, **kwargs), 8
    )
    # Keras logs the rate of the epoch, keras_lr the rate after its decision.
    assert ours[:-1] == pytest.approx(theirs[1:])
    # Epoch 0 sets the best; epochs 1..patience do not improve it.
    assert ours[patience] == pytest.approx(0.02)
    assert ours[patience - 1] == pytest.approx(0.04)


@pytest.mark.parametrize("scaled", [False, True])
def test_rate_at_min_lr_is_not_lowered_again(scaled, capsys):
    # Before: the float32 rate (0.0010000000475) counted as above the float64
    # min_lr (0.001): "lowered" printed at every epoch, cooldown restarted.
    lr = S.Scaled(0.1) if scaled else 0.1
    callback = ReduceLROnPlateau(
        monitor="flat", mode="min", factor=0.1, patience=0, min_lr=0.001, verbose=1
    )
    history = lr_history(callback, 6, lr=lr)
    assert history == pytest.approx([0.1, 0.01, 0.001, 0.001, 0.001, 0.001])
    lines = [line for line in capsys.readouterr().out.splitlines() if "lowered" in line]
    assert [line.split(":")[0] for line in lines] == ["Epoch 2", "Epoch 3"]
    if scaled:
        factor = float(keras.ops.convert_to_numpy(lr.factor.value))
        assert factor == pytest.approx(0.01, rel=1e-6)


def test_min_lr_does_not_restart_the_cooldown():
    # At min_lr nothing is lowered, so no cooldown starts and the wait keeps
    # counting, as in Keras. Before: a cooldown restarted at every attempt.
    kwargs = dict(monitor="flat", mode="min", factor=0.1, patience=0, cooldown=3)
    ours = ReduceLROnPlateau(min_lr=0.001, **kwargs)
    theirs = keras.callbacks.ReduceLROnPlateau(min_lr=0.001, **kwargs)
    history = lr_history(ours, 9, lr=0.1)
    assert history[:-1] == pytest.approx(lr_history(theirs, 9, lr=0.1)[1:])
    # Lowered at epochs 1 and 4; from epoch 7 on, at min_lr.
    assert (ours.cooldown_counter, ours.wait) == (0, 2)
    assert (ours.cooldown_counter, ours.wait) == (theirs.cooldown_counter, theirs.wait)


def test_scaled_inside_the_warmup_of_a_warmup_scheduler():
    # Before: TypeError "wrap it in Scaled": WarmupScheduler installs
    # Warmup(Scaled(...)) and only a top-level Scaled was accepted.
    schedule = S.Scaled(0.05)
    opt = keras.optimizers.SGD(schedule)
    model = linear_model(opt)
    w0 = model.get_weights()[0]
    fit(model, epochs=3, callbacks=[WarmupScheduler(warmup_steps=4), never_improves()])
    factors = [1.0] * 16 + [0.5] * 8
    lrs = [0.05 * min(t, 4) / 4 * factors[t] for t in range(24)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 3), rtol=1e-5, atol=1e-6
    )
    assert all(v is not schedule.factor for v in opt.variables)  # untracked


@pytest.mark.parametrize("order", ["scheduler_first", "plateau_first"])
def test_cuts_under_a_warmup_scheduler_outlive_the_fit(order, tmp_path):
    # Before: the cuts went to the `Scaled` that WarmupScheduler wraps its
    # schedule in for one `fit`: after `fit` the optimizer's own schedule
    # had its full rate again, and a `.keras` checkpoint written during
    # `fit` too, so a second `fit` (or the loaded model) lost the cuts.
    schedule = S.Scaled(0.05)
    model = linear_model(keras.optimizers.SGD(schedule))
    callbacks = [WarmupScheduler(warmup_steps=4), never_improves()]
    if order == "plateau_first":
        callbacks.reverse()
    path = tmp_path / "m.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(path)
    fit(model, epochs=3, callbacks=[*callbacks, checkpoint])
    assert float(keras.ops.convert_to_numpy(schedule.factor.value)) == 0.25
    assert model.optimizer._learning_rate is schedule
    loaded = keras.models.load_model(path)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.0125)


@pytest.mark.parametrize("wrap", ["warmup", "shifted_warmup"])
def test_scaled_nested_in_wrapping_schedules_is_lowered(wrap):
    schedule = S.Scaled(0.05)
    rate = S.Warmup(schedule, 4)
    if wrap == "shifted_warmup":
        rate = S.Shifted(rate, 0)
    opt = keras.optimizers.SGD(rate)
    model = linear_model(opt)
    w0 = model.get_weights()[0]
    fit(model, epochs=3, callbacks=[never_improves()])
    factors = [1.0] * 16 + [0.5] * 8
    lrs = [0.05 * min(t, 4) / 4 * factors[t] for t in range(24)]
    np.testing.assert_allclose(
        model.get_weights()[0], replay_sgd(w0, lrs, 3), rtol=1e-5, atol=1e-6
    )
    assert float(keras.ops.convert_to_numpy(schedule.factor.value)) == 0.25
    assert all(v is not schedule.factor for v in opt.variables)  # untracked


def test_scaled_parts_of_a_joined_schedule_are_refused():
    schedule = S.Join([S.Scaled(0.05), S.Scaled(0.01)], [8])
    model = linear_model(keras.optimizers.SGD(schedule))
    with pytest.raises(TypeError, match="scale only parts of it"):
        fit(model, callbacks=[never_improves()])


def test_cut_reaches_a_schedule_installed_after_it():
    # ReduceLROnPlateau listed before a scheduler: the scheduler installs its
    # `Scaled` after ReduceLROnPlateau's `on_train_begin`. On JAX the cut
    # factor is a constant of the compiled step unless traced anew.
    from keras_lr.callbacks import CyclicLRScheduler

    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mae")
    x = np.ones((4, 1), "float32")
    y = np.full((4, 1), -1e6, "float32")  # each step lowers w by the rate used

    class StepWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.w = [0.0]

        def on_train_batch_end(self, batch, logs=None):
            self.w.append(float(self.model.get_weights()[0].reshape(())))

    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    rec = StepWeights()
    model.fit(
        x, y, batch_size=1, epochs=3, verbose=0, shuffle=False,
        callbacks=[plateau, CyclicLRScheduler(0.01, 0.1, step_size_up=3), rec],
    )  # fmt: skip
    used = -np.diff(rec.w)
    # Epoch 1 sets the best; epoch 2 does not improve on it by `min_delta`:
    # the rate is halved for epoch 3.
    scale = np.repeat([1.0, 1.0, 0.5], 4)
    expected = scale * np.array([ref.cyclic(n, 0.01, 0.1, 3) for n in range(12)])
    np.testing.assert_allclose(used, expected, rtol=1e-4)


def test_epochs_without_the_monitored_key_are_skipped():
    # Before: ValueError at the first epoch that `fit(validation_freq=2)`
    # did not validate. As Keras's own: warn, skip the epoch, and do not
    # count it towards `patience`.
    model = linear_model(keras.optimizers.SGD(0.04))
    x, y = data()
    callback = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
    with pytest.warns(UserWarning, match=r"`val_loss`.*epoch 1.*skipped") as caught:
        history = model.fit(
            x, y, batch_size=BS, epochs=6, shuffle=False, verbose=0,
            validation_data=(x, y), validation_freq=2, callbacks=[callback],
        )  # fmt: skip
    assert sum("ReduceLROnPlateau" in str(w.message) for w in caught) == 1
    assert len(history.history["learning_rate"]) == 6
    assert len(history.history["val_loss"]) == 3

    class EveryOther(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch % 2 == 1:
                logs["flat"] = 1.0

    model = linear_model(keras.optimizers.SGD(0.04))
    callback = ReduceLROnPlateau(monitor="flat", mode="min", factor=0.5, patience=1)
    with pytest.warns(UserWarning, match="`flat`"):
        history = fit(model, epochs=6, callbacks=[EveryOther(), callback])
    # Epoch 2 sets the best; epochs 4 and 6 do not improve it, each one
    # lowering the rate (patience 1). Counting the skipped epochs would
    # lower it at epochs 3 to 6.
    assert history.history["learning_rate"] == pytest.approx(
        [0.04, 0.04, 0.04, 0.02, 0.02, 0.01]
    )
