"""Fault-injection tests of keras_lr.callbacks.DivergenceDetector."""

from __future__ import annotations

import logging
import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND, all_state, assert_bitwise_equal, small_cnn

import keras_lr
from keras_lr.callbacks import DivergenceDetector, DivergenceError
from keras_lr.callbacks.divergence import _WeightsSnapshot

BATCH = 64


@pytest.fixture(scope="module")
def data(fashion_sample):
    (x, y), (xt, yt) = fashion_sample
    return x[:1536], y[:1536], xt[:256], yt[:256]


def finite(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


class RateSpike(keras.callbacks.Callback):
    """Multiplies the float rate by `factor` for `steps` steps (injection)."""

    def __init__(self, start, steps=20, factor=100.0):
        super().__init__()
        self.start, self.steps, self.factor, self.seen = start, steps, factor, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen in (self.start, self.start + self.steps):
            lr = self.model.optimizer.learning_rate
            up = self.seen == self.start
            lr.assign(
                float(np.asarray(lr.value)) * (self.factor if up else 1 / self.factor)
            )
        self.seen += 1


def test_default_watch_matches_unit_tests():
    from test_detect import detector_watch

    ours, theirs = DivergenceDetector()._new_watch(), detector_watch()
    for name in (
        "smoothing",
        "best_ratio",
        "spike_ratio",
        "z_threshold",
        "window",
        "grace_steps",
        "patience",
        "log_z",
        "rise_fraction",
        "confirm",
        "warmup",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.multibackend
def test_healthy_run_no_events_and_same_training(data):
    x, y, *_ = data
    plain = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    tracker = plain._loss_tracker
    x, y = x[:768], y[:768]
    h_plain = plain.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    watched = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    tracker = watched._loss_tracker
    det = DivergenceDetector(check_every=8, verbose=0)
    h = watched.fit(
        x, y, batch_size=BATCH, epochs=2, shuffle=False, callbacks=[det], verbose=0
    )
    assert det.events == [] and h.history["divergence_events"] == [0, 0]
    # The recorder changes nothing: same losses, same weights.
    np.testing.assert_allclose(h.history["loss"], h_plain.history["loss"], rtol=1e-5)
    for a, b in zip(plain.get_weights(), watched.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The model's own loss tracker is back, and a later fit works.
    assert watched._loss_tracker is tracker
    watched.fit(x[:128], y[:128], batch_size=BATCH, epochs=1, verbose=0)
    # One copy of weights and optimizer state.
    expected = sum(
        np.asarray(keras.ops.convert_to_numpy(v.value)).nbytes
        for v in list(watched.variables) + list(watched.optimizer.variables)
    )
    assert det.snapshot_nbytes == expected


@pytest.mark.multibackend
def test_validation_does_not_write_into_the_ring(data):
    x, y, xt, yt = data
    model = small_cnn()
    det = DivergenceDetector(check_every=4, verbose=0)
    model.fit(
        x[:512],
        y[:512],
        batch_size=BATCH,
        epochs=2,
        validation_data=(xt * np.float32(50.0), yt),
        callbacks=[det],
        verbose=0,
    )
    assert det._consumed == 2 * 512 // BATCH and det.events == []


@pytest.mark.multibackend
def test_nan_batch_mid_epoch_rollback(fashion_sample, caplog):
    (x, y), _ = fashion_sample
    x = x.copy()
    x[35 * BATCH : 36 * BATCH] = np.nan  # batch 35 of 46, no shuffle
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(check_every=8, snapshot_every=8)
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        h = model.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
        )
    assert finite(model)
    assert len(det.events) == 1, det.events
    event = det.events[0]
    assert event["action"] == "rollback"
    assert event["reason"] in ("nonfinite", "nonfinite_weights")
    assert 35 <= event["step"] < 44
    assert 20 <= event["restored_step"] <= 35
    np.testing.assert_allclose(event["learning_rate_after"], 0.025, rtol=1e-6)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.025, rtol=1e-6)
    assert h.history["divergence_events"] == [1]
    assert np.isfinite(h.history["loss"][0])
    assert "Rolled back" in caplog.text and "0.025" in caplog.text
    assert "never trained healthily" not in caplog.text


@pytest.mark.multibackend
def test_snapshots_spaced_in_time_roll_back_to_a_healthy_step(
    fashion_sample, monkeypatch
):
    # Without `snapshot_every`, snapshots are spaced in time; on JAX they are
    # copied asynchronously and kept only once the losses up to their step
    # have been read healthy. Spacing 0 s: one at every check.
    from keras_lr.callbacks import divergence

    monkeypatch.setattr(divergence, "_SNAPSHOT_SECONDS", 0.0)
    commits = []
    commit = DivergenceDetector._commit_snapshot

    def counting(self, step):
        commits.append(step)
        return commit(self, step)

    monkeypatch.setattr(DivergenceDetector, "_commit_snapshot", counting)
    (x, y), _ = fashion_sample
    x, y = np.concatenate([x, x]), np.concatenate([y, y])
    x[60 * BATCH : 61 * BATCH] = np.nan  # batch 60 of 92
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(check_every=4)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
    )
    assert finite(model)
    assert [e["action"] for e in det.events] == ["rollback"]
    event = det.events[0]
    # Some kernels turn a NaN input into NaN weights and a finite loss: the
    # next snapshot finds them.
    assert event["reason"] in ("nonfinite", "nonfinite_weights")
    assert 60 <= event["step"] < 72
    # A snapshot taken mid-epoch, before the NaN batch was trained on.
    assert 30 <= event["restored_step"] <= 60
    if BACKEND == "jax":
        assert commits and max(commits) <= 60 < max(commits) + 8
        assert event["restored_step"] in commits
    else:
        assert commits == []


@pytest.mark.multibackend
def test_transient_cut_is_undone_after_healthy_steps(fashion_sample, caplog):
    (x, y), _ = fashion_sample
    x, y = np.concatenate([x, x]), np.concatenate([y, y])
    x[30 * BATCH : 31 * BATCH] = np.nan  # batch 30 of 92, after the grace period
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    rate = np.array(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    det = DivergenceDetector(check_every=4, snapshot_every=4, restore_rate_after=16)
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        model.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
        )
    assert [e["action"] for e in det.events] == ["rollback"]
    cut = det.events[0]
    np.testing.assert_allclose(cut["learning_rate_after"], 0.025, rtol=1e-6)
    assert len(det.rate_restorations) == 1
    restored = det.rate_restorations[0]
    assert restored["step"] >= cut["step"] + 16 and restored["healthy_steps"] >= 16
    # Back to the rate before the event, bitwise.
    after = np.array(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert after.tobytes() == rate.tobytes()
    assert finite(model)
    assert "learning rate restored to 0.05" in caplog.text


@pytest.mark.multibackend
def test_cut_stays_when_the_rate_diverges_again_soon(fashion_sample):
    (x, y), _ = fashion_sample
    x, y = np.concatenate([x, x]), np.concatenate([y, y])
    x[30 * BATCH : 31 * BATCH] = np.nan
    x[58 * BATCH : 59 * BATCH] = np.nan  # soon after the first cut is undone
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(
        check_every=4, snapshot_every=4, restore_rate_after=16, verbose=0
    )
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
    )
    assert [e["action"] for e in det.events] == ["rollback", "rollback"]
    # The first cut is undone at step 48; the second divergence comes within
    # 16 steps of that: its cut is kept, and not undone again.
    assert [r["step"] for r in det.rate_restorations] == [48]
    assert det.events[1]["step"] - 48 < 16
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.025, rtol=1e-6)
    # None keeps every cut.
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    keep = DivergenceDetector(
        check_every=4, snapshot_every=4, restore_rate_after=None, verbose=0
    )
    model.fit(
        x[: 40 * BATCH],
        y[: 40 * BATCH],
        batch_size=BATCH,
        epochs=2,
        shuffle=False,
        callbacks=[keep],
        verbose=0,
    )
    assert keep.rate_restorations == []


@pytest.mark.multibackend
def test_rate_spike_rollback(data):
    x, y, *_ = data
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(check_every=8, verbose=0)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        callbacks=[RateSpike(start=30), det],
        verbose=0,
    )
    assert finite(model)
    assert len(det.events) >= 1
    assert all(e["action"] == "rollback" for e in det.events)
    assert det.events[0]["step"] >= 30
    assert det.events[0]["learning_rate"] > 1.0  # caught inside the spike
    # The rate trained healthily before the spike: the usual cut (factor).
    assert det.events[0]["rate_never_healthy"] is False


@pytest.mark.multibackend
def test_rate_too_high_from_first_step(data, caplog):
    x, y, *_ = data
    model = small_cnn(keras.optimizers.SGD(20.0, momentum=0.9))
    det = DivergenceDetector(check_every=8, verbose=0)
    with caplog.at_level(logging.INFO, logger="keras_lr"):
        h = model.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[det], verbose=0)
    assert "never trained healthily" in caplog.text
    assert "find_best_learning_rate" in caplog.text
    assert finite(model)
    assert det.events and det.events[0]["restored_step"] == 0
    # No healthy stretch at this rate: the cut is repeat_factor (10x).
    np.testing.assert_allclose(det.events[0]["learning_rate_after"], 2.0, rtol=1e-6)
    assert det.events[0]["rate_never_healthy"] is True
    assert float(model.optimizer.learning_rate) < 20.0
    assert sum(h.history["divergence_events"]) == len(det.events)


@pytest.mark.multibackend
def test_stop_restores_last_good_weights(data):
    x, y, *_ = data
    x = x.copy()
    x[10 * BATCH : 11 * BATCH] = np.nan
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(action="stop", check_every=4, snapshot_every=4, verbose=0)
    h = model.fit(
        x, y, batch_size=BATCH, epochs=3, shuffle=False, callbacks=[det], verbose=0
    )
    assert len(h.history["loss"]) == 1  # stopped in epoch 1
    assert finite(model)
    assert det.events[0]["action"] == "stop"
    snap = [v for _, v in det._snapshot._values]
    now = [
        np.asarray(keras.ops.convert_to_numpy(v.value))
        for v in list(model.variables) + list(model.optimizer.variables)
    ]
    assert_bitwise_equal(snap, now)


@pytest.mark.multibackend
def test_raise_restores_and_cleans_up(data):
    x, y, *_ = data
    x = x.copy()
    x[5 * BATCH : 6 * BATCH] = np.nan
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    tracker = model._loss_tracker
    det = DivergenceDetector(action="raise", check_every=4, verbose=0)
    with pytest.raises(DivergenceError, match="non-finite"):
        model.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
        )
    assert finite(model)
    assert model._loss_tracker is tracker
    h = model.fit(x[:256], y[:256], batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])


@pytest.mark.multibackend
def test_raise_takes_a_scheduler_of_the_same_fit_out_too():
    # `fit` ends on the error and Keras calls no `on_train_end`: the
    # scheduler's `Scaled` schedule stayed in the optimizer, and a later
    # plain `fit` trained on the previous fit's 1cycle.
    from keras_lr.callbacks import OneCycleScheduler

    x, y = _linear_problem()
    weights = np.ones((len(x),), "float32")
    weights[6 * 16 : 7 * 16] = np.nan
    model = _linear_model(keras.optimizers.SGD(0.05))
    rate = model.optimizer._learning_rate
    det = DivergenceDetector(action="raise", check_every=4, verbose=0)
    with pytest.raises(DivergenceError):
        model.fit(
            x,
            y,
            sample_weight=weights,
            batch_size=16,
            epochs=1,
            shuffle=False,
            callbacks=[OneCycleScheduler(), det],
            verbose=0,
        )
    assert model.optimizer._learning_rate is rate
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert "get_config" not in vars(model.optimizer)


@pytest.mark.multibackend
def test_recoveries_are_capped(fashion_sample, caplog):
    (x, y), _ = fashion_sample
    x = x.copy()
    x[30 * BATCH : 31 * BATCH] = np.nan  # in every epoch (no shuffle)
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(max_recoveries=1, check_every=4)
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        h = model.fit(
            x, y, batch_size=BATCH, epochs=3, shuffle=False, callbacks=[det], verbose=0
        )
    assert [e["action"] for e in det.events] == ["rollback", "stop"]
    assert [e["epoch"] for e in det.events] == [0, 1]
    assert len(h.history["loss"]) == 2
    assert h.history["divergence_events"] == [1, 1]
    assert "gave up after 1 recoveries" in caplog.text
    assert finite(model)


@pytest.mark.multibackend
def test_steps_per_execution(fashion_sample):
    if BACKEND == "torch":
        pytest.skip("Keras's torch backend has no steps_per_execution > 1")
    (x, y), _ = fashion_sample
    x = x.copy()
    x[30 * BATCH : 31 * BATCH] = np.nan
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=4,
    )
    det = DivergenceDetector(check_every=4, snapshot_every=4, verbose=0)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
    )
    assert finite(model)
    assert len(det.events) == 1
    # Located at its step; acted on at an execution boundary.
    assert 30 <= det.events[0]["step"] < 38
    assert det.events[0]["restored_step"] % 4 == 0


@pytest.mark.multibackend
def test_schedule_with_factor_is_lowered(fashion_sample):
    from test_rate import FactorSchedule

    (x, y), _ = fashion_sample
    x = x.copy()
    x[35 * BATCH : 36 * BATCH] = np.nan
    sched = FactorSchedule(0.05, decay_steps=1000)
    model = small_cnn(keras.optimizers.SGD(sched, momentum=0.9))
    det = DivergenceDetector(check_every=4, snapshot_every=4, verbose=0)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det], verbose=0
    )
    assert finite(model)
    assert len(det.events) == 1
    np.testing.assert_allclose(float(np.asarray(sched.factor.value)), 0.5)


class _StepWeights(keras.callbacks.Callback):
    """The single weight after each step (with x = 1 and an MAE loss far
    from the target, each SGD step lowers it by exactly the rate used)."""

    def on_train_begin(self, logs=None):
        self.w = [float(self.model.get_weights()[0].reshape(()))]

    def on_train_batch_end(self, batch, logs=None):
        self.w.append(float(self.model.get_weights()[0].reshape(())))


def _unit_model(lr):
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mae")
    return model


@pytest.mark.multibackend
@pytest.mark.parametrize("how", ["scaled", "scheduler"])
def test_cut_of_a_scheduled_rate_is_the_rate_used(how):
    # On JAX a `Scaled` factor outside the optimizer's state is a constant of
    # the compiled step: the rollback must trace it anew, or the next steps
    # keep the old rate while the event reports the cut one.
    import _schedule_reference as ref

    from keras_lr.callbacks import CyclicLRScheduler
    from keras_lr.schedules import CyclicLR, Scaled

    x = np.ones((8, 1), "float32")
    x[5] = np.nan  # step 5's loss is NaN
    y = np.full((8, 1), -1e6, "float32")
    if how == "scaled":
        model, extra = _unit_model(Scaled(CyclicLR(0.01, 0.1, 4))), []
    else:
        model, extra = _unit_model(0.05), [CyclicLRScheduler(0.01, 0.1, 4)]
    det = DivergenceDetector(check_every=2, snapshot_every=2, grace_steps=0, verbose=0)
    rec = _StepWeights()
    model.fit(
        x, y, batch_size=1, epochs=1, shuffle=False, verbose=0,
        callbacks=[det, *extra, rec],
    )  # fmt: skip
    event = det.events[0]
    assert event["restored_step"] == 4
    # After the rollback (to the weights after step 4, iterations 4), the
    # next step is the schedule's step 4, at half its rate.
    expected = 0.5 * ref.cyclic(4, 0.01, 0.1, 4)
    np.testing.assert_allclose(event["learning_rate_after"], expected, rtol=1e-5)
    np.testing.assert_allclose(rec.w[4] - rec.w[7], expected, rtol=1e-4)


@pytest.mark.multibackend
@pytest.mark.parametrize("detector_first", [True, False])
def test_snapshot_is_of_the_run_that_backup_and_restore_resumes(
    tmp_path, detector_first
):
    x = np.ones((5, 1), "float32")
    y = np.full((5, 1), -1e6, "float32")

    class Preempt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 2:
                raise KeyboardInterrupt

    def callbacks(det):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        return [det, backup] if detector_first else [backup, det]

    det = DivergenceDetector(check_every=1, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        _unit_model(0.05).fit(
            x, y, batch_size=1, epochs=4, shuffle=False, verbose=0,
            callbacks=[*callbacks(det), Preempt()],
        )  # fmt: skip
    model = _unit_model(0.05)  # the restarted job: BackupAndRestore resumes
    x_bad = x.copy()
    x_bad[3] = np.nan
    det = DivergenceDetector(check_every=1, max_recoveries=1, verbose=0)
    model.fit(
        x_bad, y, batch_size=1, epochs=3, shuffle=False, verbose=0,
        callbacks=callbacks(det),
    )  # fmt: skip
    assert len(det.events) == 1
    # The backup (end of epoch 2: 10 steps at 0.05) is where a rollback can
    # go back to, not the fresh model's weights.
    assert det.events[0]["restored_step"] >= 0
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) >= 10
    assert float(model.get_weights()[0].reshape(())) <= -0.5 + 1e-6


def test_plain_schedule_cannot_roll_back(data):
    x, y, *_ = data
    sched = keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.5)
    model = small_cnn(keras.optimizers.SGD(sched))
    with pytest.raises(ValueError, match=r"keras_lr.schedules.Scaled"):
        model.fit(x[:128], y[:128], callbacks=[DivergenceDetector()], verbose=0)
    model.fit(
        x[:128], y[:128], callbacks=[DivergenceDetector(action="stop")], verbose=0
    )


@pytest.mark.multibackend
def test_monitor_val_loss(data):
    x, y, xt, yt = data
    xt = xt * np.float32(1e38)  # overflows: a non-finite validation loss
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(action="stop", monitor_val=True, verbose=0)
    h = model.fit(
        x[:512],
        y[:512],
        batch_size=BATCH,
        epochs=3,
        validation_data=(xt, yt),
        callbacks=[det],
        verbose=0,
    )
    assert len(det.events) == 1 and det.events[0]["source"] == "val_loss"
    assert len(h.history["loss"]) == 1
    assert h.history["divergence_events"] == [1]


@pytest.mark.tensorflow_only
def test_mixed_precision(fashion_sample):
    if BACKEND != "tensorflow":
        pytest.skip("mixed precision on CPU is checked on TensorFlow")
    (x, y), _ = fashion_sample
    # A batch whose loss is NaN, made by its sample weights: NaN inputs are
    # not enough under float16 on CPUs where oneDNN runs the convolution
    # and ReLU in float16 (AVX512-FP16, AMX), whose output stays finite.
    weights = np.ones(len(x), "float32")
    weights[35 * BATCH : 36 * BATCH] = np.nan
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
        model.layers[-1].dtype_policy = keras.DTypePolicy("float32")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        det = DivergenceDetector(check_every=4, snapshot_every=4, verbose=0)
        h = model.fit(
            x,
            y,
            sample_weight=weights,
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            callbacks=[det],
            verbose=0,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert finite(model)
    assert np.isfinite(h.history["loss"][0])
    # The loss-scale optimizer skips the NaN step itself: the detector sees
    # the non-finite loss, finds every weight finite, and neither rolls back
    # nor lowers the rate.
    assert [(e["reason"], e["step"], e["action"]) for e in det.events] == [
        ("nonfinite", 35, "skipped")
    ]
    assert det.recoveries == 0
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.05, rtol=1e-6)


def test_snapshot_leaves_out_metrics(data):
    model = small_cnn()
    model.optimizer.build(model.trainable_variables)
    snap = _WeightsSnapshot(model)
    ids = {id(v) for v, _ in snap._values}
    assert not ids & {id(v) for v in model.metrics_variables}
    assert len(all_state(model)) >= len(snap._values)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"action": "halt"}, ValueError, "action"),
        ({"factor": 1.5}, ValueError, r"`factor` must be in \(0, 1\)"),
        ({"factor": "0.5"}, TypeError, "factor"),
        ({"repeat_factor": 0.0}, ValueError, "repeat_factor"),
        ({"min_lr": "0.01"}, TypeError, "must be a float"),
        ({"min_lr": 1}, TypeError, "must be a float"),
        ({"max_recoveries": -1}, ValueError, "max_recoveries"),
        ({"best_ratio": 1.0}, ValueError, r"`best_ratio` must be > 1"),
        ({"patience": 0}, ValueError, "patience"),
        ({"window": 5}, ValueError, "window"),
        ({"check_every": 0}, ValueError, "check_every"),
        ({"smoothing": 1.0}, ValueError, "smoothing"),
        ({"restore_rate_after": 0}, ValueError, "restore_rate_after"),
        ({"restore_rate_after": "later"}, TypeError, "restore_rate_after"),
        ({"monitor_val": "no"}, TypeError, "`monitor_val` must be a bool"),
        ({"watch_gradient_norm": 1}, TypeError, "`watch_gradient_norm` must be a bool"),
        (
            {"gradient_spike_ratio": 1.0},
            ValueError,
            "`gradient_spike_ratio` must be > 1",
        ),
        ({"verbose": "yes"}, TypeError, "`verbose` must be an integer"),
        ({"verbose": -1}, ValueError, "`verbose` must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DivergenceDetector(**kwargs)


def test_uncompiled_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    det = DivergenceDetector()
    det.set_model(model)
    with pytest.raises(ValueError, match="compile"):
        det.on_train_begin()


def _toy(seed=0, n=512):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :3].sum(1) > 0).astype("int32")
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(2),
    ])  # fmt: skip
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, x, y


@pytest.mark.multibackend
def test_no_false_alarm_when_fit_resumes_a_trained_model():
    # Near a loss of zero the batch losses span orders of magnitude; a lucky
    # first batch used to set a best that the ordinary level was 6x over.
    model, x, y = _toy()
    model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    det = DivergenceDetector(verbose=0)
    h = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[det])
    assert det.events == []
    assert len(h.history["loss"]) == 4


@pytest.mark.multibackend
def test_poison_in_the_last_steps_is_caught_before_validation():
    # A NaN batch 4 steps before the epoch's end: after the last snapshot of
    # the epoch, and on TensorFlow's CPU kernels the loss stays finite (the
    # ReLU clips NaN pre-activations) while the weights turn NaN.
    model, x, y = _toy(n=560)
    xv, yv = x[:64].copy(), y[:64].copy()
    x[66 * 8 : 67 * 8] = np.nan
    det = DivergenceDetector(check_every=8, snapshot_every=16, verbose=0)
    h = model.fit(
        x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
        validation_data=(xv, yv), callbacks=[det],
    )  # fmt: skip
    assert finite(model)
    assert len(det.events) == 1 and det.events[0]["action"] == "rollback"
    assert det.events[0]["reason"] in ("nonfinite", "nonfinite_weights")
    assert h.history["divergence_events"] == [1]
    # The recovery happened before validation: val_loss is the restored
    # model's.
    val_loss = model.evaluate(xv, yv, verbose=0)[0]
    np.testing.assert_allclose(h.history["val_loss"][-1], val_loss, rtol=1e-5)


class _EpochEndCopy(keras.callbacks.Callback):
    """Keeps each epoch end's weights (before or after the detector)."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def on_epoch_end(self, epoch, logs=None):
        self.copies.append([np.array(w) for w in self.model.get_weights()])


class _SpoilBeforeValidation(keras.callbacks.Callback):
    """Scales the output layer 30x just before epoch 2's validation."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_begin(self, logs=None):
        if self.epoch == 1:
            kernel = self.model.layers[-1].kernel
            kernel.assign(kernel * 30.0)


@pytest.mark.multibackend
def test_val_loss_rollback_restores_the_last_healthy_epoch_end():
    model, x, y = _toy()
    xv, yv = x[:64].copy(), y[:64].copy()
    before, after = _EpochEndCopy(), _EpochEndCopy()
    det = DivergenceDetector(monitor_val=True, val_spike_ratio=2.0, verbose=0)
    model.fit(
        x, y, batch_size=8, epochs=2, verbose=0, validation_data=(xv, yv),
        callbacks=[_SpoilBeforeValidation(), before, det, after],
    )  # fmt: skip
    assert len(det.events) == 1
    event = det.events[0]
    assert event["source"] == "val_loss" and event["epoch"] == 1
    # Back to the end of epoch 1 (64 steps), not to the snapshot of step
    # 128 taken before validation found the damage.
    assert event["restored_step"] == 64
    for restored, kept in zip(after.copies[1], before.copies[0]):
        np.testing.assert_array_equal(restored, kept)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a TensorFlow train_step")
def test_custom_train_step_without_the_loss_tracker_is_warned_and_checked():
    import tensorflow as tf

    class OwnTracker(keras.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.own_loss = keras.metrics.Mean(name="loss")

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss = keras.losses.mean_squared_error(y, self(x, training=True))
                loss = tf.reduce_mean(loss)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            self.own_loss.update_state(loss)
            return {"loss": self.own_loss.result()}

        @property
        def metrics(self):
            return [self.own_loss]

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = OwnTracker(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).random((128, 4)).astype("float32")
    y = x.sum(1, keepdims=True)
    x[48] = np.inf  # poisons the weights in epoch 1
    det = DivergenceDetector(verbose=0)
    with pytest.warns(UserWarning, match="has seen no loss"):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[det])  # fmt: skip
    assert finite(model)
    assert [e["reason"] for e in det.events] == ["nonfinite_weights"]


class _SwapInSchedule(keras.callbacks.Callback):
    """Replaces the float rate with an unwrapped schedule as fit begins.

    In `on_epoch_begin`, after the detector (listed first) checked the rate
    in its own; one swapped in by an `on_train_begin` is refused up front
    (`test_refused_rollback_leaves_the_model_as_it_was`).
    """

    def on_epoch_begin(self, epoch, logs=None):
        from keras_lr._state import set_attr

        schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.9)
        set_attr(self.model.optimizer, "_learning_rate", schedule)


def test_rate_replaced_by_an_unscalable_schedule_stops_cleanly(data):
    # The detector checked the float rate at the start; another callback
    # then installed a schedule it cannot lower. The first event must stop
    # training with the weights restored, not crash in the middle of fit.
    x, y, *_ = data
    x = x.copy()
    x[5 * BATCH : 6 * BATCH] = np.nan
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(check_every=2, snapshot_every=2, verbose=0)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
        callbacks=[det, _SwapInSchedule()],
    )  # fmt: skip
    assert finite(model)
    assert [e["action"] for e in det.events] == ["stop"]
    assert det._recorder is None  # uninstalled at the end of fit


@pytest.mark.multibackend
def test_model_built_by_its_first_step_is_snapshot_in_time():
    # Without an `Input`, TensorFlow builds the model while tracing its first
    # step, after `fit` began: a NaN batch early in the first epoch found no
    # snapshot, and "rollback" became "stop" with NaN weights.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    x[40:48] = np.nan  # the sixth batch of 8
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    det = DivergenceDetector(max_recoveries=1, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, callbacks=[det], verbose=0)
    assert det.events and det.events[0]["action"] == "rollback"
    assert det.events[0]["restored_step"] is not None
    assert finite(model)


# Gradient norms ------------------------------------------------------------


class _GradNormProbe(DivergenceDetector):
    """Keeps every gradient norm the detector reads (a test probe)."""

    def __init__(self, **kwargs):
        super().__init__(watch_gradient_norm=True, **kwargs)
        self.norms: list[float] = []

    def _update_grad_watch(self, grads, first):
        assert first == len(self.norms)  # every step read once, in order
        self.norms.extend(np.asarray(grads).tolist())
        return super()._update_grad_watch(grads, first)


def _linear_problem(n=256, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1)) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _linear_model(optimizer):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.multibackend
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_gradient_norms_match_the_closed_form(steps_per_execution):
    if steps_per_execution > 1 and BACKEND == "torch":
        pytest.skip("Keras runs one step per execution on PyTorch")
    # Linear least squares: for L = mean((x w + b - y)^2) over a batch,
    # dL/dw = 2/n x^T r and dL/db = 2/n sum(r), r = x w + b - y. Plain SGD
    # steps are replayed in numpy to know w and b before every step.
    x, y = _linear_problem()
    model = _linear_model(keras.optimizers.SGD(0.05))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss="mse",
        steps_per_execution=steps_per_execution,
    )
    w, b = (np.array(v, dtype=np.float64) for v in model.get_weights())
    det = _GradNormProbe(check_every=4, verbose=0)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, callbacks=[det], verbose=0)
    expected = []
    for _ in range(2):
        for i in range(0, len(x), 32):
            xb, yb = x[i : i + 32].astype(np.float64), y[i : i + 32].astype(np.float64)
            r = xb @ w + b - yb
            gw, gb = 2.0 / len(xb) * xb.T @ r, 2.0 / len(xb) * r.sum(axis=0)
            expected.append(np.sqrt(np.sum(gw**2) + np.sum(gb**2)))
            w, b = w - 0.05 * gw, b - 0.05 * gb
    assert len(det.norms) == len(expected) == 16
    np.testing.assert_allclose(det.norms, expected, rtol=1e-4)
    assert det.events == []
    # The wrapper is gone after `fit`, and the optimizer's state is its own.
    assert "apply" not in vars(model.optimizer)
    assert "stateless_apply" not in vars(model.optimizer)
    assert len(model.optimizer.variables) == 2  # iterations, learning_rate


_GRAD_NORMS_UNDER_MIRRORED = """
import numpy as np

from keras_lr.callbacks import DivergenceDetector


class Probe(DivergenceDetector):
    def __init__(self):
        super().__init__(watch_gradient_norm=True, check_every=4, verbose=0)
        self.norms = []

    def _update_grad_watch(self, grads, first):
        self.norms.extend(np.asarray(grads).tolist())
        return super()._update_grad_watch(grads, first)


rng = np.random.default_rng(0)
x = rng.normal(size=(256, 5)).astype("float32")
y = (x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(256, 1))).astype("float32")
for scaled in (False, True):
    optimizer = keras.optimizers.SGD(0.05)
    if scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    with strategy.scope():
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
    w, b = (np.array(v, dtype=np.float64) for v in model.get_weights())
    probe = Probe()
    model.fit(x, y, batch_size=32, shuffle=False, callbacks=[probe], verbose=0)
    expected = []
    for i in range(0, len(x), 32):
        xb, yb = x[i : i + 32].astype(np.float64), y[i : i + 32].astype(np.float64)
        r = xb @ w + b - yb
        gw, gb = 2.0 / len(xb) * xb.T @ r, 2.0 / len(xb) * r.sum(axis=0)
        expected.append(np.sqrt(np.sum(gw**2) + np.sum(gb**2)))
        w, b = w - 0.05 * gw, b - 0.05 * gb
    np.testing.assert_allclose(probe.norms, expected, rtol=1e-4)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.tensorflow_only
@pytest.mark.skipif(BACKEND != "tensorflow", reason="needs tf.distribute")
def test_gradient_norms_under_mirrored_strategy_are_of_the_whole_batch():
    # Before: under a 2-replica MirroredStrategy each replica recorded the
    # norm of its own share of the gradient (scaled by 1/2 by Keras), and
    # the ring kept their mean: 0.50 to 0.57 times the batch's gradient norm.
    from conftest import run_tf_mirrored

    assert run_tf_mirrored(_GRAD_NORMS_UNDER_MIRRORED).strip().endswith("ok")


class _GradientScale(keras.layers.Layer):
    """A dense unit whose gradients are 1000x on batches flagged in column 5.

    The forward pass is the unit's output, whatever the flag.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def build(self, input_shape):
        self.dense.build((input_shape[0], 5))

    def call(self, inputs):
        features, flag = inputs[:, :5], inputs[:, 5:]
        out = self.dense(features)
        scaled = out * (1.0 + 999.0 * keras.ops.mean(flag))
        return scaled - keras.ops.stop_gradient(scaled - out)


@pytest.mark.multibackend
def test_gradient_spike_is_caught_before_the_loss_moves():
    # Three batches whose gradients are 1000x (the loss value unchanged) at
    # a rate so small that the bad updates barely move the loss: the loss
    # tests see nothing, the gradient-norm spike test fires.
    x, y = _linear_problem(n=1024)
    flag = np.zeros((len(x), 1), dtype="float32")
    flag[40 * 16 : 43 * 16] = 1.0
    xf = np.concatenate([x, flag], axis=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), _GradientScale()])
    model.compile(optimizer=keras.optimizers.SGD(1e-5), loss="mse")
    det = DivergenceDetector(
        action="stop", watch_gradient_norm=True, check_every=8, verbose=0
    )
    model.fit(xf, y, batch_size=16, epochs=1, shuffle=False, callbacks=[det], verbose=0)
    assert len(det.events) == 1, det.events
    event = det.events[0]
    assert event["source"] == "gradient_norm"
    # The first two bad steps are over 10x the smoothed norm; by the third
    # the EMA has risen, and the robust z-score (over 8) carries it.
    assert event["reason"] in ("spike", "zscore")
    assert event["step"] == 42  # the third bad step: patience 3
    assert event["loss"] > 100 * event["baseline"]
    # Without the gradient watch the same run has no event.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), _GradientScale()])
    model.compile(optimizer=keras.optimizers.SGD(1e-5), loss="mse")
    det = DivergenceDetector(action="stop", check_every=8, verbose=0)
    model.fit(xf, y, batch_size=16, epochs=1, shuffle=False, callbacks=[det], verbose=0)
    assert det.events == []


def _nan_weighted_fit(nan_steps, *, epochs=1, scaled=True, **detector_kwargs):
    """A linear model fitted (batch 16, in order) with NaN sample weights in
    the batches of `nan_steps` (a NaN loss there): returns the model, its
    detector (checking and snapshotting every 4 steps), the History, the
    data and the weights."""
    x, y = _linear_problem()
    weights = np.ones((len(x),), "float32")
    for step in nan_steps:
        weights[16 * step : 16 * (step + 1)] = np.nan
    keras.utils.set_random_seed(0)
    optimizer = keras.optimizers.SGD(0.05)
    if scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = _linear_model(optimizer)
    det = DivergenceDetector(
        check_every=4, snapshot_every=4, verbose=0, **detector_kwargs
    )
    history = model.fit(
        x,
        y,
        sample_weight=weights,
        batch_size=16,
        epochs=epochs,
        shuffle=False,
        callbacks=[det],
        verbose=0,
    )
    return model, det, history, (x, y, weights)


@pytest.mark.multibackend
@pytest.mark.parametrize("grad_norms", [False, True])
def test_a_nan_step_that_a_loss_scale_optimizer_skipped_is_not_rolled_back(
    grad_norms,
):
    # Before: the skipped step got a rollback to the last snapshot (losing
    # the steps since) and a rate cut, though no weight had changed.
    model, det, history, (x, y, weights) = _nan_weighted_fit(
        [12], epochs=2, window=10, watch_gradient_norm=grad_norms
    )  # step 12 of each epoch
    assert [(e["step"], e["action"], e["bad_batch"]) for e in det.events] == [
        (12, "skipped", True),
        (28, "skipped", True),
    ]
    assert det.recoveries == 0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05, rel=1e-6)
    assert finite(model)
    assert history.history["divergence_events"] == [1, 1]
    # The same run with the NaN batch weighted 0 instead: plain SGD's zero
    # update leaves the same weights as the skipped step, so its per-step
    # losses (from Keras's running means) are the NaN run's elsewhere. The
    # event, read at the epoch's end, left a NaN epoch mean; the epoch's
    # loss is the mean of the steps after the event (13-15), as the metrics
    # reset by a mid-epoch event would give it.
    zero = np.where(np.isnan(weights), 0.0, weights).astype("float32")
    keras.utils.set_random_seed(0)
    reference = _linear_model(keras.optimizers.SGD(0.05))
    means = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: means.append(float(logs["loss"]))
    )
    reference.fit(x, y, sample_weight=zero, batch_size=16, epochs=2,
                  shuffle=False, callbacks=[record], verbose=0)  # fmt: skip
    means = np.reshape(means, (2, 16))
    k = np.arange(16)
    steps = (k + 1) * means - np.concatenate([[[0.0]] * 2, k[1:] * means[:, :-1]], 1)
    np.testing.assert_allclose(
        history.history["loss"], steps[:, 13:].mean(axis=1), rtol=1e-4
    )
    # Without a loss-scale optimizer the NaN reaches the weights: rollback.
    _, det, history, _ = _nan_weighted_fit([12], scaled=False)
    assert [(e["step"], e["action"]) for e in det.events] == [(12, "rollback")]
    # Read at the epoch's end, with no step after it: the epoch's loss is
    # the mean of its finite steps before the event, not Keras's NaN mean.
    np.testing.assert_allclose(
        history.history["loss"], [steps[0, :12].mean()], rtol=1e-4
    )
    assert keras_lr.diagnose(history).rule != "diverged"


@pytest.mark.multibackend
def test_an_early_skipped_nan_step_is_not_rolled_back_after_a_noisy_rise():
    # At step 6 of this run the smoothed loss is above its first value on
    # JAX (a noisy start), which made the NaN step read as the rate's and
    # cost a rollback to the start and a 10x cut though the optimizer had
    # skipped it: the weights decide, not the rise.
    model, det, _, _ = _nan_weighted_fit([6])
    assert [(e["step"], e["action"]) for e in det.events] == [(6, "skipped")]
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05, rel=1e-6)


@pytest.mark.multibackend
def test_non_finite_losses_close_together_are_rolled_back_even_if_skipped():
    # Two non-finite losses within `window` steps: a rate overflowing the
    # forward pass while the optimizer skips every update would stall
    # training without a cut, so the second one goes to a rollback.
    _, det, _, _ = _nan_weighted_fit([12, 15], window=10)
    assert [(e["step"], e["action"]) for e in det.events] == [
        (12, "skipped"),
        (15, "rollback"),
    ]
    assert det.recoveries == 1


@pytest.mark.multibackend
def test_gradient_norms_under_a_loss_scale_optimizer_are_unscaled():
    x, y = _linear_problem()
    plain = _linear_model(keras.optimizers.SGD(0.05))
    weights = plain.get_weights()
    det = _GradNormProbe(check_every=4, verbose=0)
    plain.fit(x, y, batch_size=32, epochs=1, shuffle=False, callbacks=[det], verbose=0)
    scaled = _linear_model(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05))
    )
    scaled.set_weights(weights)
    det_scaled = _GradNormProbe(check_every=4, verbose=0)
    scaled.fit(
        x, y, batch_size=32, epochs=1, shuffle=False, callbacks=[det_scaled], verbose=0
    )
    np.testing.assert_allclose(det_scaled.norms, det.norms, rtol=1e-4)
    # A scale that overflows: the optimizer skips those steps (halving the
    # scale each time); they are recorded as skipped and raise no event.
    overflow = _linear_model(
        keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.05), initial_scale=2.0**127
        )
    )
    overflow.set_weights(weights)
    det_overflow = _GradNormProbe(check_every=4, verbose=0)
    overflow.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        shuffle=False,
        callbacks=[det_overflow],
        verbose=0,
    )
    skipped = [v for v in det_overflow.norms if v == -1.0]
    assert len(skipped) >= 1
    assert det_overflow.events == []
    assert all(np.isfinite(v) for v in det_overflow.norms)


@pytest.mark.multibackend
def test_steps_without_gradients_are_read_as_skipped():
    # Nothing trainable: no gradient norm is computed; the steps read as
    # skipped (not as stale or zero norms) and raise no event.
    x, y = _linear_problem()
    model = _linear_model(keras.optimizers.SGD(0.05))
    model.layers[0].trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    det = _GradNormProbe(check_every=4, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no trainable weights"
        model.fit(x, y, batch_size=32, epochs=2, callbacks=[det], verbose=0)
    assert det.norms == [-1.0] * 16
    assert det.events == []


class _SeenWeights(keras.callbacks.Callback):
    """Copies the weights and optimizer state that validation and
    `on_epoch_end` see (listed after the detector)."""

    def __init__(self):
        super().__init__()
        self.at_test, self.at_epoch_end = [], []

    def _state(self):
        model = self.model  # syncs the JAX state
        return [
            np.array(keras.ops.convert_to_numpy(v.value), copy=True)
            for v in list(model.variables) + list(model.optimizer.variables)
        ]

    def on_test_begin(self, logs=None):
        self.at_test.append(self._state())

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end.append(self._state())


@pytest.mark.multibackend
@pytest.mark.parametrize("validate", [True, False])
def test_stop_mid_epoch_restores_before_validation_and_epoch_end(data, validate):
    # Before: the stop restored the snapshot mid-epoch, the execution in
    # flight trained on from it (at the diverged rate), and validation and
    # `on_epoch_end` (ModelCheckpoint) saw that model; only `on_train_end`
    # restored it again.
    x, y, xt, yt = data
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(action="stop", check_every=4, snapshot_every=4, verbose=0)
    seen = _SeenWeights()
    h = model.fit(
        x, y, batch_size=BATCH, epochs=3, verbose=0,
        validation_data=(xt, yt) if validate else None,
        callbacks=[RateSpike(start=30, factor=1e4), det, seen],
    )  # fmt: skip
    assert [e["action"] for e in det.events] == ["stop"]
    event = det.events[0]
    assert event["epoch"] == 1 and event["step"] < 46  # mid-epoch (24 a epoch)
    snap = [v for _, v in det._snapshot._values]
    assert all(np.all(np.isfinite(v)) for v in snap)
    assert_bitwise_equal(snap, seen.at_epoch_end[-1])
    if validate:
        assert len(seen.at_test) == 2
        assert_bitwise_equal(snap, seen.at_test[-1])
        # The last `val_loss` is the restored model's.
        val_loss = model.evaluate(xt, yt, batch_size=BATCH, verbose=0)[0]
        np.testing.assert_allclose(h.history["val_loss"][-1], val_loss, rtol=1e-5)


def _assert_one_bad_batch(det, model):
    """One event, read as a bad batch: back to step 0, the rate halved."""
    assert finite(model)
    assert len(det.events) == 1
    event = det.events[0]
    assert event["reason"] in ("nonfinite", "nonfinite_weights")
    assert event["restored_step"] == 0
    assert event["rate_never_healthy"] is False
    np.testing.assert_allclose(event["learning_rate_after"], 0.025, rtol=1e-6)


@pytest.mark.multibackend
def test_lone_nan_batch_before_the_first_snapshot_is_no_rate_fault(data, caplog):
    # Before: any event before the first snapshot after the start counted as
    # "the rate never trained healthily": a 10x cut (repeat_factor) for one
    # bad batch. Default settings: the first mid-run snapshot is due at
    # step 64, after the NaN batch (step 10).
    x, y, *_ = data
    x = x.copy()
    x[10 * BATCH : 11 * BATCH] = np.nan
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector()
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        model.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[det],
            verbose=0,
        )  # fmt: skip
    _assert_one_bad_batch(det, model)
    assert "never trained healthily" not in caplog.text


@pytest.mark.multibackend
@pytest.mark.parametrize("seed", [0, 1])
def test_nan_batch_whose_dead_network_climbs_to_chance_is_no_rate_fault(seed):
    # A small ReLU MLP whose first batch scored under the chance level: on
    # TensorFlow the NaN batch leaves every loss finite (relu(nan) == 0) and
    # the dead network's loss climbs back to chance level, above that first
    # batch's, before the end-of-epoch weight check finds the NaN. It used to
    # read as "the rate never trained healthily": a 10x cut.
    model, x, y = _toy(seed)
    x = x.copy()
    x[20 * 16 : 21 * 16] = np.nan
    det = DivergenceDetector(verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[det],
              verbose=0)  # fmt: skip
    _assert_one_bad_batch(det, model)


@pytest.mark.multibackend
def test_a_nan_sample_met_every_epoch_is_the_data_not_the_rate(caplog):
    # One NaN sample, met again in every epoch. Its second event came from
    # the snapshot restored for the first, and read as "the rate never
    # trained healthily": a 10x cut and "the rate is too high" in the log,
    # repeated until the rate was a small fraction of the user's and the run stopped
    # with "try a learning rate about 10x lower".
    # (With seed 0 the first batch is a lucky one: after each rollback to
    # step 0 at a lower rate the loss climbs above it before the NaN sample,
    # which reads as a rise, the sign of a rate at fault; a documented limit.)
    model, x, y = _toy(seed=1, n=640)
    x = x.copy()
    x[25 * 16 + 3] = np.nan  # step 25 of each 40-step epoch
    det = DivergenceDetector()
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        model.fit(x, y, batch_size=16, epochs=4, shuffle=False, callbacks=[det],
                  verbose=0)  # fmt: skip
    assert finite(model)
    assert len(det.events) >= 3
    rate = 0.05
    for event in det.events:
        assert event["reason"] in ("nonfinite", "nonfinite_weights")
        assert event["bad_batch"] is True and event["rate_never_healthy"] is False
        np.testing.assert_allclose(event["learning_rate"], rate, rtol=1e-6)
        rate = event["learning_rate_after"]
        np.testing.assert_allclose(rate, event["learning_rate"] * 0.5, rtol=1e-6)
    assert "never trained healthily" not in caplog.text
    assert caplog.text.count("points to the data") == len(det.events)


@pytest.mark.multibackend
def test_a_rate_that_overflows_at_once_is_still_the_rate():
    # The other side of the test above: a rate so high that the first update
    # overflows the weights, with no rise in the loss before it. The first
    # event looks like a bad batch; the same snapshot failing again on the
    # first update after the rollback is the rate: cut by repeat_factor.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = x @ np.ones((8, 1), "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(keras.optimizers.SGD(1e18), "mse")
    det = DivergenceDetector(verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[det], verbose=0)
    assert finite(model)
    first, second = det.events[:2]
    assert first["bad_batch"] is True and first["rate_never_healthy"] is False
    np.testing.assert_allclose(first["learning_rate_after"], 5e17, rtol=1e-6)
    assert second["bad_batch"] is False and second["rate_never_healthy"] is True
    np.testing.assert_allclose(second["learning_rate_after"], 5e16, rtol=1e-6)


@pytest.mark.multibackend
def test_monitor_val_without_validation_data_is_warned(data, caplog):
    x, y, *_ = data
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(monitor_val=True, verbose=0)
    with (
        caplog.at_level(logging.WARNING, logger="keras_lr"),
        pytest.warns(UserWarning, match=r"monitor_val=True\) found no `val_loss`"),
    ):
        model.fit(x[:256], y[:256], batch_size=BATCH, epochs=2, callbacks=[det],
                  verbose=0)  # fmt: skip
    assert caplog.text.count("found no `val_loss`") == 1
    # With validation every other epoch, nothing to warn about.
    det = DivergenceDetector(monitor_val=True, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x[:256], y[:256], batch_size=BATCH, epochs=2, callbacks=[det],
            validation_data=(x[:64], y[:64]), validation_freq=2, verbose=0,
        )  # fmt: skip
    assert not any("val_loss" in str(w.message) for w in caught)


@pytest.mark.multibackend
def test_interrupted_fit_is_cleaned_up_by_on_train_end(data):
    # Keras does not call `on_train_end` when `fit` raises: the documented
    # way back is to call it.
    x, y, *_ = data
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    tracker = model._loss_tracker

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:
                raise KeyboardInterrupt

    det = DivergenceDetector(watch_gradient_norm=True, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x[:512], y[:512], batch_size=BATCH, callbacks=[det, Interrupt()],
                  verbose=0)  # fmt: skip
    assert model._loss_tracker is not tracker
    det.on_train_end()
    assert model._loss_tracker is tracker
    h = model.fit(x[:256], y[:256], batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])


@pytest.mark.multibackend
def test_evaluate_or_predict_outside_fit():
    # Before: `on_test_begin` read an attribute only `fit` set (AttributeError).
    model, x, y = _toy(n=64)
    det = DivergenceDetector(verbose=0)
    loss = model.evaluate(x, y, callbacks=[det], verbose=0)[0]
    assert np.isfinite(loss)
    assert model.predict(x, callbacks=[det], verbose=0).shape == (64, 2)
    assert det.events == []


def _regression(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = x @ rng.normal(size=(8, 1)).astype("float32")
    # Another task, whose loss the model does not lower.
    xo = rng.normal(size=(256, 8)).astype("float32")
    yo = xo @ rng.normal(size=(8, 1)).astype("float32")
    return x, y, xo, yo


def _regression_model(seed=0, lr=0.01):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


@pytest.mark.multibackend
def test_evaluate_run_by_another_callback_is_not_watched():
    # Before: an `evaluate` run inside `fit` by a callback that does not
    # pass the detector wrote its batches' losses into the ring as training
    # steps: 5 rollbacks of a healthy run, the rate cut from 0.01 to 3e-4.
    x, y, xo, yo = _regression()

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.evaluate(xo, yo, batch_size=16, verbose=0)

    runs = {}
    for name in ("plain", "detector"):
        model = _regression_model()
        det = DivergenceDetector(verbose=0)
        callbacks = [det, Evaluate()] if name == "detector" else [Evaluate()]
        h = model.fit(x, y, batch_size=16, epochs=6, callbacks=callbacks, verbose=0)
        runs[name] = (h.history["loss"], float(model.optimizer.learning_rate))
        if name == "detector":
            assert det.events == []
            assert "train_step" not in vars(model)
    np.testing.assert_allclose(runs["detector"][0], runs["plain"][0], rtol=1e-5)
    assert runs["detector"][1] == runs["plain"][1]


def test_range_test_callback_ignores_an_evaluate_run_by_another_callback():
    from keras_lr.range_test import LRRangeTest

    x, y, xo, yo = _regression()

    class Evaluate(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch % 16 == 0:
                self.model.evaluate(xo, yo, batch_size=64, verbose=0)

    curves = []
    for extra in ([], [Evaluate()]):
        model = _regression_model()
        cb = LRRangeTest(start_lr=1e-4, end_lr=1e-1, num_steps=64)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[cb, *extra])  # fmt: skip
        curves.append(np.asarray(cb.result.losses))
        assert "train_step" not in vars(model)
    assert curves[0].size == curves[1].size == 64
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize("detector_first", [True, False])
def test_scheduler_after_the_detector_makes_a_plain_schedule_lowerable(
    data, detector_first
):
    # Before: the detector refused a plain schedule in its `on_train_begin`,
    # before a `WarmupScheduler` later in the list had wrapped it in a
    # `Scaled` it can lower.
    from keras_lr.callbacks import WarmupScheduler

    x, y, *_ = data
    x = x[:512].copy()
    x[3 * BATCH : 4 * BATCH] = np.nan
    sched = keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.5)
    model = small_cnn(keras.optimizers.SGD(sched))
    det = DivergenceDetector(verbose=0)
    warm = WarmupScheduler(warmup_steps=4)
    callbacks = [det, warm] if detector_first else [warm, det]
    model.fit(x, y[:512], batch_size=BATCH, shuffle=False, callbacks=callbacks,
              verbose=0)  # fmt: skip
    assert [e["action"] for e in det.events] == ["rollback"]
    assert det.events[0]["learning_rate_after"] < det.events[0]["learning_rate"]
    assert finite(model)


@pytest.mark.multibackend
def test_cut_under_a_warmup_scheduler_stays_on_the_users_schedule(data):
    # Before: the rollback lowered the `Scaled` that WarmupScheduler wraps
    # its schedule in for one `fit`; after `fit` the optimizer's own
    # `Scaled` had its full rate again, although the event said it was cut.
    from keras_lr.callbacks import WarmupScheduler
    from keras_lr.schedules import Scaled

    x, y, *_ = data
    x = x[:512].copy()
    x[3 * BATCH : 4 * BATCH] = np.nan
    sched = Scaled(keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.5))
    model = small_cnn(keras.optimizers.SGD(sched))
    det = DivergenceDetector(verbose=0)
    model.fit(x, y[:512], batch_size=BATCH, shuffle=False, verbose=0,
              callbacks=[WarmupScheduler(warmup_steps=4), det])  # fmt: skip
    [event] = det.events
    assert event["action"] == "rollback"
    assert model.optimizer._learning_rate is sched
    cut = det.repeat_factor if event["rate_never_healthy"] else det.factor
    assert keras.ops.convert_to_numpy(sched.factor.value) == np.float32(cut) < 1.0


@pytest.mark.multibackend
def test_refused_rollback_leaves_the_model_as_it_was(data):
    x, y, *_ = data
    sched = keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.5)
    model = small_cnn(keras.optimizers.SGD(sched))
    tracker = model._loss_tracker
    with pytest.raises(ValueError, match=r"keras_lr.schedules.Scaled"):
        model.fit(x[:128], y[:128], callbacks=[DivergenceDetector()], verbose=0)
    assert model._loss_tracker is tracker
    assert "train_step" not in vars(model)
    h = model.fit(x[:128], y[:128], verbose=0)
    assert np.isfinite(h.history["loss"][0])


@pytest.mark.multibackend
def test_stop_after_a_rollback_keeps_the_lowered_rate(data):
    # Before: the stop restored the snapshot with the rate it was taken at,
    # so the run ended at the rate that diverged although the events said
    # it had been halved.
    x, y, *_ = data
    x = x.copy()
    x[10 * BATCH : 11 * BATCH] = np.nan  # batch 10 of every epoch
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    det = DivergenceDetector(max_recoveries=1, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, callbacks=[det],
              verbose=0)  # fmt: skip
    assert [e["action"] for e in det.events] == ["rollback", "stop"]
    np.testing.assert_allclose(det.events[0]["learning_rate_after"], 0.025, rtol=1e-6)
    np.testing.assert_allclose(det.events[1]["learning_rate_after"], 0.025, rtol=1e-6)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.025, rtol=1e-6)
    assert finite(model)


@pytest.mark.multibackend
def test_stop_leaves_the_weights_early_stopping_restores(data):
    # Before: with EarlyStopping(restore_best_weights=True) listed first, the
    # detector's `on_train_end` put its snapshot back over ES's best weights.
    x, y, xo, yo = _regression()

    def batches():
        for i in range(8 * 64):
            j = (i * 16) % 1024
            yb = y[j : j + 16].copy()
            if i == 150:  # epoch 3
                yb[:] = 1e30
            yield x[j : j + 16], yb

    es = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=5, restore_best_weights=True
    )
    model = _regression_model()
    det = DivergenceDetector(action="stop", verbose=0)
    model.fit(batches(), steps_per_epoch=64, epochs=8, verbose=0,
              validation_data=(xo, yo), callbacks=[es, det])  # fmt: skip
    assert [e["action"] for e in det.events] == ["stop"]
    assert es.best_epoch < det.events[0]["epoch"]
    assert_bitwise_equal(es.best_weights, model.get_weights())


@pytest.mark.tensorflow_only
def test_no_false_alarm_on_a_resumed_digits_run():
    # Found in QA: a lucky first batch (loss 0.025, the ordinary level 0.11)
    # set a provisional best; 113 steps later the last 9 losses were all over
    # 3x it: a rollback to the start and a 10x cut of a healthy run.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    det = DivergenceDetector(verbose=0)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[det], verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[det], verbose=0)
    assert det.events == []
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 3e-3, rtol=1e-6)


@pytest.mark.multibackend
@pytest.mark.parametrize("same_instance", [False, True])
def test_a_later_fit_puts_back_what_an_interrupted_detector_left(same_instance):
    # Keras skips `on_train_end` when `fit` raises: the ring, the wrapped
    # `train_step` and the wrapped optimizer apply stayed, and the next
    # detector saved them as the model's own, for good.
    x, y = _linear_problem()
    model = _linear_model(keras.optimizers.SGD(0.05))
    tracker = vars(model).get("_loss_tracker")

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("interrupted")

    first = DivergenceDetector(watch_gradient_norm=True, verbose=0)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, batch_size=16, callbacks=[first, Interrupt()], verbose=0)
    assert "train_step" in vars(model)  # left behind
    second = first if same_instance else DivergenceDetector(verbose=0)
    with pytest.warns(UserWarning, match="still carried what the DivergenceDetector"):
        model.fit(x, y, batch_size=16, epochs=1, callbacks=[second], verbose=0)
    assert vars(model).get("_loss_tracker") is tracker
    assert "train_step" not in vars(model)
    assert "apply" not in vars(model.optimizer)
    assert "stateless_apply" not in vars(model.optimizer)
