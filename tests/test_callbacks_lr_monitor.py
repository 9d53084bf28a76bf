"""Tests of keras_lr.callbacks.LRMonitor."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
from conftest import small_cnn

from keras_lr import diagnose
from keras_lr.callbacks import LRMonitor


def feed(monitor, series, end=True):
    """Calls on_epoch_end with scripted logs (then on_train_end, as `fit`
    does, unless `end` is False); returns the logs dicts."""
    monitor.on_train_begin()
    out = []
    keys = list(series)
    for epoch in range(len(series[keys[0]])):
        logs = {k: series[k][epoch] for k in keys}
        monitor.on_epoch_end(epoch, logs)
        out.append(logs)
    if end:
        monitor.on_train_end()
    return out


def test_warns_once_per_finding(caplog):
    monitor = LRMonitor()
    loss = [1.0, 0.6, 0.8, 0.7, 0.75, 0.72, 0.78]  # jumps up, stays up
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        logs = feed(monitor, {"loss": loss})
    assert [f.verdict for _, f in monitor.findings] == ["too_high"]
    # The first jump, at the third epoch, is a noisy reading: it is reported
    # when the fourth epoch reads too high as well.
    assert monitor.findings[0][0] == 3
    assert caplog.text.count("LRMonitor") == 1
    assert "too high" in caplog.text and "10x" in caplog.text
    codes = [log["lr_diagnosis"] for log in logs]
    assert codes == [0, 0, 1, 1, 1, 1, 1]
    assert LRMonitor.VERDICTS[codes[-1]] == "too_high"


def test_new_finding_warns_again(caplog):
    monitor = LRMonitor(verbose=0)
    series = {
        "loss": [2.30, 2.28, 2.26, 2.0, 1.2, 0.6, 0.3, 0.2, 0.15, 0.12],
        "val_loss": [2.3, 2.28, 2.26, 2.0, 1.2, 0.6, 0.5, 0.6, 0.7, 0.8],
    }
    feed(monitor, series)
    assert [f.verdict for _, f in monitor.findings] == ["too_low", "overfitting"]
    assert monitor.diagnosis.verdict == "overfitting"


def test_a_one_epoch_jump_that_settles_is_not_warned(caplog):
    # The loss jumps back up at the third epoch ("oscillating") and falls to
    # a new best at the fourth: no warning. It used to warn at once.
    loss = [1.0, 0.6, 0.75, 0.5, 0.45, 0.42]
    assert diagnose({"loss": loss[:3]}).rule == "oscillating"
    assert diagnose({"loss": loss[:4]}).verdict != "too_high"
    monitor = LRMonitor()
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        logs = feed(monitor, {"loss": loss})
    assert "too_high" not in [f.verdict for _, f in monitor.findings]
    assert "too high" not in caplog.text
    # The epoch's logs still carry the reading itself.
    assert [log["lr_diagnosis"] for log in logs][2] == 1


def test_a_noisy_reading_on_the_last_epoch_is_reported_at_the_end(caplog):
    loss = [1.0, 0.6, 0.75]
    monitor = LRMonitor()
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        feed(monitor, {"loss": loss}, end=False)
        assert monitor.findings == []
        monitor.on_train_end()
    assert [(e, f.rule) for e, f in monitor.findings] == [(2, "oscillating")]
    assert caplog.text.count("LRMonitor (epoch 3)") == 1
    monitor.on_train_end()  # once only
    assert len(monitor.findings) == 1


def test_an_unvalidated_epoch_does_not_confirm_a_validation_reading():
    # With `validation_freq=2` the epoch after a validated one re-reads the
    # same validation figures: it is no confirmation of an erratic
    # validation accuracy. The next validated epoch is.
    series = {
        "loss": [2.0, 1.0, 0.7, 0.55, 0.48, 0.44, 0.41, 0.39],
        "accuracy": [0.4, 0.7, 0.8, 0.84, 0.86, 0.87, 0.88, 0.885],
    }
    val = {1: (0.9, 0.7), 3: (0.6, 0.8), 5: (0.9, 0.66), 7: (0.7, 0.78)}
    monitor = LRMonitor(verbose=0)
    monitor.on_train_begin()
    held = []
    for epoch in range(8):
        logs = {k: v[epoch] for k, v in series.items()}
        if epoch in val:
            logs["val_loss"], logs["val_accuracy"] = val[epoch]
        monitor.on_epoch_end(epoch, logs)
        if monitor.diagnosis.rule == "erratic_validation":
            held.append(epoch)
        high = [(e, f.rule) for e, f in monitor.findings if f.verdict == "too_high"]
        if epoch == 6:
            assert high == []  # epoch 6 has no validation
    monitor.on_train_end()
    assert held and held[0] == 5
    assert high == [(7, "erratic_validation")]


def test_a_divergence_is_warned_at_once():
    # Not a noisy reading: no wait for the next epoch.
    monitor = LRMonitor(verbose=0)
    feed(monitor, {"loss": [2.3, 1.9, 1.5, float("nan"), 2.0]}, end=False)
    assert [(e, f.rule) for e, f in monitor.findings][-1] == (3, "diverged")


def test_min_epochs_holds_trends_but_not_nan():
    monitor = LRMonitor(min_epochs=3)
    logs = feed(monitor, {"loss": [2.3, 2.29]})
    assert [log["lr_diagnosis"] for log in logs] == [0, 0]
    assert monitor.findings == []
    logs = feed(monitor, {"loss": [float("nan")]})
    assert logs[0]["lr_diagnosis"] == 1 and monitor.findings


def test_bad_argument():
    with pytest.raises(ValueError, match="min_epochs"):
        LRMonitor(min_epochs=0)
    with pytest.raises(TypeError, match="min_epochs"):
        LRMonitor(min_epochs=2.5)
    # Before: int(verbose): 0.5 read as 0, -1 accepted, "auto" a bare
    # "invalid literal for int()".
    for verbose in (0.5, "auto", None):
        with pytest.raises(TypeError, match="Argument `verbose` must be an integer"):
            LRMonitor(verbose=verbose)
    with pytest.raises(ValueError, match="Argument `verbose` must be >= 0"):
        LRMonitor(verbose=-1)
    assert LRMonitor(verbose=True).verbose == 1
    assert LRMonitor(verbose=np.int64(0)).verbose == 0


def test_logs_without_a_loss_warn_once_per_fit():
    # A custom `train_step` that names its losses otherwise (a GAN's d_loss
    # and g_loss). Before: nothing was diagnosed, silently.
    monitor = LRMonitor()
    series = {"d_loss": [0.7, 0.6, 0.9, 0.5], "g_loss": [1.0, 1.2, 0.8, 1.1]}
    with pytest.warns(UserWarning, match=r"'loss', which is not in .* epoch 1") as w:
        logs = feed(monitor, series)
    assert len(w) == 1 and "Available: ['d_loss', 'g_loss']" in str(w[0].message)
    assert all("lr_diagnosis" not in log for log in logs)
    assert monitor.diagnosis is None and monitor.findings == []
    with pytest.warns(UserWarning, match="'loss'"):
        feed(monitor, series)  # a new fit warns again


@pytest.mark.multibackend
def test_in_fit_reports_divergence(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.SGD(50.0, momentum=0.9))
    monitor = LRMonitor(verbose=0)
    h = model.fit(
        x[:1024], y[:1024], batch_size=64, epochs=3, callbacks=[monitor], verbose=0
    )
    assert "lr_diagnosis" in h.history and len(h.history["lr_diagnosis"]) == 3
    assert monitor.diagnosis.verdict == "too_high"
    assert h.history["lr_diagnosis"][-1] == 1
    assert np.all([isinstance(v, int) for v in h.history["lr_diagnosis"]])


def test_validation_every_other_epoch_is_matched_with_its_epochs():
    monitor = LRMonitor(verbose=0)
    monitor.on_train_begin()
    loss = [2.0, 1.2, 0.9, 0.75, 0.66, 0.6]
    val = {1: 0.7, 3: 0.5, 5: 0.45}  # validation_freq=2: after epochs 2, 4, 6
    seen = []
    for epoch, value in enumerate(loss):
        logs = {"loss": value} | ({"val_loss": val[epoch]} if epoch in val else {})
        monitor.on_epoch_end(epoch, logs)
        seen.append(monitor.diagnosis.evidence.get("validation_epochs"))
    # Epoch 3 (one value, after epoch 2) would read as "after epoch 3" by
    # length alone; the monitor knows when validation ran.
    assert seen == [None, [2], [2], [2, 4], [2, 4], [2, 4, 6]]
    # Epoch 6's training loss (0.6) is compared with the validation after it.
    assert monitor.diagnosis.evidence["train_over_val"] == pytest.approx(0.6 / 0.45 - 1)


@pytest.mark.multibackend
def test_in_fit_with_validation_freq(fashion_sample):
    (x, y), (xv, yv) = fashion_sample
    model = small_cnn(keras.optimizers.SGD(0.05, momentum=0.9))
    monitor = LRMonitor(verbose=0)
    h = model.fit(
        x[:512], y[:512], batch_size=64, epochs=4, validation_data=(xv[:256], yv[:256]),
        validation_freq=2, callbacks=[monitor], verbose=0,
    )  # fmt: skip
    assert len(h.history["val_loss"]) == 2 and len(h.history["loss"]) == 4
    assert monitor.diagnosis.evidence["validation_epochs"] == [2, 4]
    history = {k: v for k, v in h.history.items() if k != "lr_diagnosis"}
    assert monitor.diagnosis == diagnose(history, validation_epochs=[2, 4])


def test_resumed_fit_says_how_its_epochs_are_counted(caplog):

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")

    class BlowUp(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 7:
                self.model.optimizer.learning_rate.assign(1e30)

    monitor = LRMonitor()
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        model.fit(
            x, y, initial_epoch=5, epochs=9, verbose=0, callbacks=[BlowUp(), monitor]
        )
    (epoch, finding), *_ = monitor.findings
    assert epoch == 7 and finding.verdict == "too_high"
    # Keras's epoch 8 is the third of this fit, as the reasons count it.
    assert "loss is not finite from epoch 3" in finding.reasons[0]
    assert "epoch 8; the epochs below count from this fit's first, epoch 6" in (
        caplog.text
    )


@pytest.mark.multibackend
def test_each_fit_is_read_on_its_own():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    monitor = LRMonitor(verbose=0)
    first = model.fit(x, x.sum(axis=1), epochs=4, callbacks=[monitor], verbose=0)
    assert [(e, f.verdict) for e, f in monitor.findings] == [(2, "too_low")]
    assert first.history["lr_diagnosis"] == [0, 0, 2, 2]
    # A second fit on the same callback: the first fit's epochs are not
    # in its reading, and its findings are its own.
    second = model.fit(x, x.sum(axis=1), epochs=2, callbacks=[monitor], verbose=0)
    assert monitor.findings == [] and second.history["lr_diagnosis"] == [0, 0]
    assert monitor.diagnosis.evidence["epochs"] == 2
    assert monitor.diagnosis.evidence["loss_first"] == second.history["loss"][0]


def _epochs(monitor, logs_per_epoch):
    monitor.on_train_begin()
    for epoch, logs in enumerate(logs_per_epoch):
        monitor.on_epoch_end(epoch, dict(logs))
    monitor.on_train_end()


def test_a_val_figure_logged_every_epoch_does_not_count_as_validation():
    # Found in QA: another callback logging `val_custom` every epoch, with
    # `validation_freq=2`, made every epoch "validated", and `diagnose`
    # refused the mismatch, raising out of `fit`.
    loss = [2.0, 1.5, 1.2, 1.0, 0.9, 0.85]
    logs = []
    for e, value in enumerate(loss):
        entry = {"loss": value, "val_custom": 0.5}
        if e % 2 == 1:
            entry["val_loss"] = value + 0.1
        logs.append(entry)
    monitor = LRMonitor(verbose=0)
    _epochs(monitor, logs)
    assert monitor._validated == [2, 4, 6]
    assert monitor._history["val_custom"] == [0.5, 0.5, 0.5]
    expected = diagnose(
        {"loss": loss, "val_loss": [1.6, 1.1, 0.95]}, validation_epochs=[2, 4, 6]
    )
    assert monitor.diagnosis.verdict == expected.verdict
    assert monitor.diagnosis.evidence == expected.evidence


def test_none_missing_and_late_figures_stay_aligned_with_their_epochs():
    # A None was dropped, leaving a series one short, and `diagnose` raised.
    logs = [
        {"loss": 2.0, "accuracy": 0.30, "val_loss": 1.9},
        {"loss": 1.6, "accuracy": None, "val_loss": None},
        {"loss": 1.3, "accuracy": 0.50, "val_loss": 1.4, "extra": "text"},
        {"loss": 1.1, "val_loss": 1.2, "late_figure": 3.0},
    ]
    monitor = LRMonitor(verbose=0)
    _epochs(monitor, logs)
    h = monitor._history
    nan = float("nan")
    np.testing.assert_array_equal(h["accuracy"], [0.30, nan, 0.50, nan])
    np.testing.assert_array_equal(h["val_loss"], [1.9, nan, 1.4, 1.2])
    np.testing.assert_array_equal(h["late_figure"], [nan, nan, nan, 3.0])
    assert "extra" not in h  # not a number: dropped
    # The None validation loss reads as not finite, as `diagnose` reads it.
    assert monitor.diagnosis.rule == "diverged"


def test_an_unreadable_history_warns_instead_of_stopping_fit(monkeypatch):
    import keras_lr.callbacks.lr_monitor as module

    def refuse(*args, **kwargs):
        raise ValueError("cannot read this")

    monkeypatch.setattr(module, "diagnose", refuse)
    monitor = LRMonitor(verbose=0)
    with pytest.warns(UserWarning, match="LRMonitor cannot read the logs of epoch 1"):
        _epochs(monitor, [{"loss": 1.0}, {"loss": 0.5}])
    assert monitor.diagnosis is None
