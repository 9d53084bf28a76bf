"""`LRMonitor`: `keras_lr.diagnose` applied during training."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import keras

from keras_lr import _validate
from keras_lr.diagnose import VERDICTS, Diagnosis, diagnose

__all__ = ["LRMonitor"]

logger = logging.getLogger("keras_lr")

#: Readings reported only when the next epoch confirms them (see LRMonitor).
_CONFIRM = ("oscillating", "erratic_validation")


class LRMonitor(keras.callbacks.Callback):
    """Reads the curves after each epoch and warns once per finding.

    After each epoch the epoch logs so far go through `keras_lr.diagnose`.
    A verdict other than ``"good"`` is logged (``"keras_lr"`` logger,
    warning level) the first time it appears, with its evidence and the
    recommended action, and appended to `findings`. Each epoch's logs get
    ``lr_diagnosis``, the index of the current verdict in
    ``("good", "too_high", "too_low", "overfitting")`` (a number, so that
    progress bars and `History` take it), and `diagnosis` holds the latest
    `Diagnosis`.

    Trend verdicts need a few epochs: before `min_epochs` epochs only a
    non-finite loss is reported. Two readings of a rate too high are noisy
    from one epoch to the next: the training loss jumping back up
    (``rule="oscillating"``) and validation accuracy erratic or falling
    (``"erratic_validation"``). One of them is reported only when the next
    epoch (for the validation reading, the next validated one) reads
    ``"too_high"`` too, or when training ends on it (in
    ``on_train_end``): on the diagnosis benchmark's runs that end good,
    these one-epoch readings were most of the mid-run warnings (18 good
    runs of 308 warned without the wait, 10 with it, while 292 of the 371
    runs labelled too high were still warned, against 299).

    With ``fit(validation_freq=k)`` the validation figures are matched with
    the epochs they were measured after: an epoch counts as validated when
    its logs have ``val_loss`` (another callback's ``val_`` figure logged
    every epoch does not make it one). A None, or a figure missing from an
    epoch's logs, reads as NaN (not finite, as `diagnose` reads it); a
    figure that is not a number is left out. Logs the monitor still cannot
    read are warned about once; it never stops `fit`.

    Each `fit` is read on its own: `findings` and `diagnosis` start afresh
    when training begins (with ``fit(initial_epoch=n)``, the reasons count
    epochs from that fit's first). Epoch logs without a ``"loss"`` (a custom
    `train_step` that names its losses otherwise) cannot be read: the
    monitor warns once and adds no ``lr_diagnosis``.

    Args:
        min_epochs: epochs before trend verdicts are reported, >= 1.
        verbose: 1 logs findings as warnings, 0 as info (an int >= 0 or a
            bool).

    Raises:
        TypeError: if `min_epochs` or `verbose` is not an int.
        ValueError: if `min_epochs` < 1 or `verbose` < 0.

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> monitor = LRMonitor(verbose=0)
    >>> _ = model.fit(x, x.sum(axis=1), epochs=4, callbacks=[monitor], verbose=0)
    >>> monitor.diagnosis.verdict, [f.verdict for _, f in monitor.findings]
    ('too_low', ['too_low'])
    """

    VERDICTS = VERDICTS

    def __init__(self, min_epochs: int = 3, verbose: int = 1):
        super().__init__()
        self.min_epochs = _validate.check_int("min_epochs", min_epochs, minimum=1)
        self.verbose = _validate.check_verbose(verbose)
        self.findings: list[tuple[int, Diagnosis]] = []
        self.diagnosis: Diagnosis | None = None
        self._history: dict[str, list[Any]] = {}
        self._validated: list[int] = []
        self._first_epoch: int | None = None
        self._warned_no_loss = False
        self._warned_unreadable = False
        self._dropped: set[str] = set()
        self._pending: tuple[int, Diagnosis] | None = None

    def on_train_begin(self, logs=None):
        self.findings = []
        self.diagnosis = None
        self._history = {}
        self._validated = []
        self._first_epoch = None
        self._warned_no_loss = False
        self._warned_unreadable = False
        self._dropped = set()
        self._pending = None

    def on_train_end(self, logs=None):
        # Training ended on a reading that waited for the next epoch.
        pending, self._pending = self._pending, None
        if pending is not None:
            self._report(*pending)

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        if "loss" not in logs:
            if not self._warned_no_loss:
                self._warned_no_loss = True
                warnings.warn(
                    "LRMonitor reads the epoch logs' 'loss', which is not in "
                    f"the logs of epoch {epoch + 1}: there is nothing to "
                    "diagnose (a custom `train_step` must return a 'loss'). "
                    f"Available: {sorted(logs)}",
                    stacklevel=2,
                )
            return
        if self._first_epoch is None:
            self._first_epoch = int(epoch)
        # An epoch was validated when Keras logged its `val_loss` (another
        # callback may log a `val_` figure of its own every epoch).
        validated = "val_loss" in logs
        epochs = len(self._history.get("loss", ())) + 1
        if validated:
            self._validated.append(epochs)  # `validation_freq` may skip epochs
        self._record(logs, validated)
        try:
            d = diagnose(self._history, validation_epochs=self._validated or None)
        except (TypeError, ValueError) as error:
            # A monitor must not stop training: say once why it cannot read.
            if not self._warned_unreadable:
                self._warned_unreadable = True
                warnings.warn(
                    f"LRMonitor cannot read the logs of epoch {epoch + 1}: {error}",
                    stacklevel=2,
                )
            return
        trend_only = d.verdict != "good" and not any(
            k.endswith("nonfinite_epoch") for k in d.evidence
        )
        if epochs < self.min_epochs and trend_only:
            d = Diagnosis("good", d.evidence, "wait for more epochs", ())
        self.diagnosis = d
        logs["lr_diagnosis"] = VERDICTS.index(d.verdict)
        pending, self._pending = self._pending, None
        if (
            pending is not None
            and pending[1].rule == "erratic_validation"
            and not validated
        ):
            # No new validation (`validation_freq`): nothing to confirm the
            # validation reading with yet; a too-high reading now is the same.
            self._pending = pending
            if d.verdict == "too_high":
                return
            pending = None
        if d.verdict == "good" or any(v == d.verdict for _, v in self._seen()):
            return
        if d.rule in _CONFIRM and pending is None:
            self._pending = (epoch, d)
            return
        self._report(epoch, d)

    def _record(self, logs: dict, validated: bool) -> None:
        """Appends the epoch's figures, one per epoch (per validated epoch
        for ``val_`` keys), aligned: a None, or a key missing this epoch,
        is NaN (not finite, as `diagnose` reads it); a key first logged
        later is NaN before; a value that is not a number drops its key.
        """
        history = self._history
        epochs = len(history.get("loss", ()))
        validations = len(self._validated) - (1 if validated else 0)
        for key, value in logs.items():
            if key == "lr_diagnosis" or key in self._dropped:
                continue
            is_val = key.startswith("val_")
            if is_val and not validated:
                continue
            if value is None:
                number = float("nan")
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    self._dropped.add(key)
                    history.pop(key, None)
                    continue
            series = history.setdefault(
                key, [float("nan")] * (validations if is_val else epochs)
            )
            series.append(number)
        for key, series in history.items():
            length = len(self._validated) if key.startswith("val_") else epochs + 1
            if len(series) < length:
                series.append(float("nan"))

    def _report(self, epoch: int, d: Diagnosis) -> None:
        if any(v == d.verdict for _, v in self._seen()):
            return
        self.findings.append((epoch, d))
        text = f"LRMonitor (epoch {epoch + 1}): {d}"
        if self._first_epoch:
            # `fit(initial_epoch=n)`: the diagnosis counts this fit's epochs.
            text = (
                f"LRMonitor (epoch {epoch + 1}; the epochs below count from "
                f"this fit's first, epoch {self._first_epoch + 1}): {d}"
            )
        if self.verbose:
            logger.warning(text)
        else:
            logger.info(text)

    def _seen(self):
        return [(e, f.verdict) for e, f in self.findings]
