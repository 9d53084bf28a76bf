"""`ReduceLROnPlateau` that also works on scheduled optimizers.

Keras's own callback assigns the optimizer's rate and fails when the rate
is a schedule. This one lowers a float rate the same way, and a
`keras_lr.schedules.Scaled` schedule by lowering its `factor` variable,
which the compiled step reads (on JAX too: the factor is tracked by the
optimizer while `fit` runs, see `keras_lr.schedules.track_scaled`).
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr import _rate, _validate
from keras_lr._state import base_optimizer
from keras_lr.schedules import _base
from keras_lr.schedules.scaled import (
    Scaled,
    find_scaled,
    outermost_scaled,
    track_scaled,
    untrack_scaled,
)

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(keras.callbacks.Callback):
    """Lowers the rate when a monitored metric stops improving.

    After `patience` epochs without an improvement of at least `min_delta`
    in `monitor`, the rate is multiplied by `factor` (not below `min_lr`),
    then nothing happens for `cooldown` epochs. An epoch whose logs lack
    `monitor` (with ``fit(validation_freq=k)``, the epochs not validated) is
    skipped, with a warning the first time, as Keras's own callback does.

    Works on an optimizer whose rate is a float, or a
    `keras_lr.schedules.Scaled` schedule (wrap any schedule in it: the
    schedule's shape is kept, the whole of it is scaled). The `Scaled` may
    be nested in another schedule, such as the `keras_lr.schedules.Warmup`
    that `keras_lr.callbacks.WarmupScheduler` installs around the rate: its
    factor is lowered.

    Checkpoints: a float rate is an optimizer variable, so weights-only
    checkpoints (`keras.callbacks.BackupAndRestore`, `save_weights`) keep
    its cuts. A `Scaled` factor is not written to them: the optimizer's
    saved variables stay the standard list, which any optimizer of the same
    kind can load. Only a whole-model save (``model.save("m.keras")``)
    keeps it, through the schedule's config. A run that `BackupAndRestore`
    resumes therefore restarts a `Scaled` rate at its full value. As with
    Keras's own callback, the plateau counters restart too. Keras calls the
    callbacks in list order, and `ModelCheckpoint` and `BackupAndRestore`
    save at the end of the epoch too: list this callback before them, or
    a checkpoint misses the cut made at the end of its epoch.

    Args:
        monitor: the logs key to watch.
        factor: multiplier of the rate, in (0, 1).
        patience: epochs without improvement before lowering.
        verbose: 1 prints a line when the rate is lowered.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: the smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction.
        min_lr: the rate is not lowered below this, a float (for a
            schedule: its value at the current step).

    Raises:
        TypeError: if `monitor` is not a string, `min_lr` is not a float
            (``0`` for ``0.0`` is refused, as for every learning rate of
            keras_lr), or another argument is of the wrong type.
        ValueError: if `factor` is not in (0, 1), `min_lr` is negative or
            infinite, `min_delta` is not finite, or another argument is out
            of range.

    Example:

    >>> from keras_lr.schedules import OneCycle, Scaled
    >>> schedule = Scaled(OneCycle(0.05, 100))
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    >>> cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
    ...                        min_delta=1e9)
    >>> _ = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=3, verbose=0,
    ...               callbacks=[cb])
    >>> float(schedule.factor.numpy())
    0.25
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(
                "Argument `monitor` must be a string, the logs key to watch, "
                f"such as 'val_loss'. Received: monitor={monitor!r} (of type "
                f"{type(monitor).__name__})"
            )
        self.monitor = monitor
        self.factor = _validate.check_real("factor", factor)
        _validate.check_in_interval("factor", self.factor, 0.0, 1.0, low_closed=False)
        self.patience = _validate.check_int("patience", patience, minimum=0)
        self.cooldown = _validate.check_int("cooldown", cooldown, minimum=0)
        self.min_delta = abs(
            _validate.check_finite(
                "min_delta", _validate.check_real("min_delta", min_delta)
            )
        )
        self.min_lr = _validate.check_finite(
            "min_lr",
            _validate.check_non_negative(
                "min_lr", _validate.check_learning_rate("min_lr", min_lr)
            ),
        )
        self.mode = _validate.check_choice("mode", mode, ("auto", "min", "max"))
        self.verbose = _validate.check_verbose(verbose)
        self._reset()

    def _reset(self) -> None:
        if self.mode == "max" or (
            self.mode == "auto" and ("acc" in self.monitor or "auc" in self.monitor)
        ):
            self._better = lambda a, b: a > b + self.min_delta
            self.best = -np.inf
        else:
            self._better = lambda a, b: a < b - self.min_delta
            self.best = np.inf
        self.wait = 0
        self.cooldown_counter = 0
        self._warned_missing = False

    def _target(self) -> Any:
        """The rate's variable, or the outermost `Scaled` in its schedule."""
        lr = base_optimizer(self.model.optimizer)._learning_rate
        if isinstance(lr, keras.Variable):
            return lr
        outer = outermost_scaled(lr)
        if outer is not None:
            return _rate.own_scaled(outer)
        if find_scaled(lr):
            raise TypeError(
                "ReduceLROnPlateau lowers the `Scaled` schedule that scales the "
                "whole learning rate. The optimizer's rate, a "
                f"{type(lr).__name__}, holds `Scaled` schedules that scale only "
                "parts of it: wrap the whole schedule in one, e.g. "
                "`keras_lr.schedules.Scaled(schedule)`."
            )
        raise TypeError(
            "ReduceLROnPlateau can lower a float learning rate or a "
            "keras_lr.schedules.Scaled schedule. The optimizer's rate is a "
            f"{type(lr).__name__}: wrap it, e.g. "
            "`optimizer = keras.optimizers.SGD(keras_lr.schedules.Scaled(schedule))`."
        )

    def on_train_begin(self, logs=None):
        self._reset()
        if isinstance(self._target(), Scaled):
            before = len(self.model.optimizer.variables)
            track_scaled(self.model.optimizer)
            if len(self.model.optimizer.variables) != before:
                _rate.retrace_train_function(self.model)

    def on_train_end(self, logs=None):
        untrack_scaled(self._model.optimizer)

    def current_lr(self) -> float:
        """The rate at the optimizer's current step."""
        optimizer = base_optimizer(self.model.optimizer)
        target = self._target()
        if isinstance(target, keras.Variable):
            return float(ops.convert_to_numpy(target.value))
        return _base.lr_at(optimizer._learning_rate, self._step())

    def _step(self) -> int:
        return _rate.schedule_step(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        if value is None:
            # As Keras's own: an epoch without the key (one that
            # ``fit(validation_freq=k)`` does not validate) is skipped.
            if not self._warned_missing:
                self._warned_missing = True
                warnings.warn(
                    f"ReduceLROnPlateau monitors `{self.monitor}`, which is not "
                    f"in the logs of epoch {epoch + 1}: the epochs without it "
                    "are skipped (they do not count towards `patience`). "
                    f"Available: {sorted(logs)}",
                    stacklevel=2,
                )
            logs["learning_rate"] = self.current_lr()
            return
        value = float(value)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value, self.best):
            self.best = value
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            # As Keras's own: `patience` epochs without improvement, then lower.
            if self.wait >= self.patience and self._lower(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0
        logs["learning_rate"] = self.current_lr()

    def _lower(self, epoch: int) -> bool:
        """Lowers the rate; False when it is at `min_lr` already.

        Rates and factors are float32 variables: they are compared with
        `min_lr` in float32, so that a rate set to `min_lr` (0.001 held as
        0.0010000000475) counts as at `min_lr`, not above it.
        """
        min_lr = np.float32(self.min_lr)
        target = self._target()
        if isinstance(target, keras.Variable):
            old = np.float32(ops.convert_to_numpy(target.value))
            if old <= min_lr:
                return False
            target.assign(max(float(old) * self.factor, self.min_lr))
        else:
            old = float(ops.convert_to_numpy(target.factor.value))
            if old <= 0:
                return False
            new = old * self.factor
            if self.min_lr > 0:
                rate = self.current_lr()
                # A float32 rate set to `min_lr` may lie a rounding above it.
                if rate <= self.min_lr * (1.0 + 1e-6):
                    return False
                # The rate is the factor times the schedule's rate without it.
                new = max(new, old * self.min_lr / rate)
            if np.float32(new) >= np.float32(old):
                return False
            target.factor.assign(new)
            # A `Scaled` installed after `on_train_begin` (by a scheduler
            # listed after this callback) is not tracked: on JAX its factor
            # is a constant of the compiled step until traced again.
            _rate.retrace_if_untracked(self.model, target.factor)
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: ReduceLROnPlateau lowered the learning "
                f"rate to {self.current_lr():.4g}."
            )
        return True
