"""Tests of keras_lr.callbacks.LRMonitor."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
from conftest import small_cnn

from keras_lr.callbacks import LRMonitor


def feed(monitor, series):
    """Calls on_epoch_end with scripted logs; returns the logs dicts."""
    monitor.on_train_begin()
    out = []
    keys = list(series)
    for epoch in range(len(series[keys[0]])):
        logs = {k: series[k][epoch] for k in keys}
        monitor.on_epoch_end(epoch, logs)
        out.append(logs)
    return out


def test_warns_once_per_finding(caplog):
    monitor = LRMonitor()
    loss = [1.0, 0.6, 0.8, 0.7, 0.75, 0.72, 0.78]  # jumps up, stays up
    with caplog.at_level(logging.WARNING, logger="keras_lr"):
        logs = feed(monitor, {"loss": loss})
    assert [f.verdict for _, f in monitor.findings] == ["too_high"]
    assert monitor.findings[0][0] == 2  # third epoch: the first jump
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
