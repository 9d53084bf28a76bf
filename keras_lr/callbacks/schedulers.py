"""Callback forms of the schedules, and learning-rate logging.

`OneCycleScheduler`, `CyclicLRScheduler` and `WarmupScheduler` build their
schedule when `fit` starts (taking its length from `fit`'s own epochs and
steps when none is given), install it as the optimizer's learning rate, so
that it is computed inside the compiled step like any schedule (no host work
per step), and put the optimizer's own rate back when `fit` ends (after a
`fit` that raised, which skips ``on_train_end``, call the callback's
``on_train_end()`` to do so).

A `fit` resumed at a later epoch (``initial_epoch``, or
`keras.callbacks.BackupAndRestore`) continues the schedule where an
uninterrupted run would be at that epoch, when `fit` knows its number of
steps per epoch. `BackupAndRestore` with ``save_freq`` in steps resumes at
the start of the interrupted epoch (Keras does not use the batch it
records), from weights that have already made some of its steps: the
callbacks still give each step of that epoch the rate of the uninterrupted
run, while a schedule passed to the optimizer itself follows the restored
step count, ahead by the steps done again.

`LearningRateLogger` (which the schedulers also are) writes the rate in use
into `logs["learning_rate"]` at the end of every epoch, and of every step
when asked, so that `History`, `CSVLogger` and `TensorBoard` record it (pass
it before those in the `callbacks` list).
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr import _rate, _validate
from keras_lr._rate import is_tracked
from keras_lr._state import _MISSING, base_optimizer, set_attr
from keras_lr.optimizers import SGD as ScheduledMomentumSGD
from keras_lr.schedules import _base
from keras_lr.schedules.cyclic import CyclicLR
from keras_lr.schedules.one_cycle import OneCycle
from keras_lr.schedules.scaled import (
    Scaled,
    find_scaled,
    outermost_scaled,
    track_scaled,
    untrack_scaled,
)
from keras_lr.schedules.warmup import Warmup

__all__ = [
    "CyclicLRScheduler",
    "LearningRateLogger",
    "OneCycleScheduler",
    "WarmupScheduler",
]


def _iterations(optimizer: Any) -> int:
    # The step the schedule is called with (the raw count, with gradient
    # accumulation too).
    return _rate.schedule_step(optimizer)


def current_lr_object(optimizer: Any) -> Any:
    return base_optimizer(optimizer)._learning_rate


def lr_value(lr_object: Any, step: int) -> float:
    """The rate a learning-rate object gives at `step`, on the host."""
    if isinstance(lr_object, keras.Variable):
        return float(ops.convert_to_numpy(lr_object.value))
    if callable(lr_object) and not _base.is_schedule(lr_object):
        return float(ops.convert_to_numpy(lr_object()))
    return _base.lr_at(lr_object, max(int(step), 0))


def _has_tracked_factor(optimizer: Any, lr_object: Any) -> bool:
    """Whether, on JAX, `lr_object` reads a factor the optimizer tracks."""
    if keras.backend.backend() != "jax" or not _base.is_schedule(lr_object):
        return False
    optimizer = base_optimizer(optimizer)
    return any(is_tracked(optimizer, s.factor) for s in find_scaled(lr_object))


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the learning rate in use into the logs.

    At the end of each epoch ``logs[key]`` is the rate of the epoch's last
    step (one scalar read per epoch). With ``every_step=True`` it is also
    added to each batch's logs, computed on the host from the step count
    (no device sync; with `steps_per_execution > 1`, once per execution).
    Put it before `CSVLogger`/`TensorBoard` in the callback list.

    Args:
        every_step: also log each step (TensorBoard's ``update_freq`` must
            then be ``"batch"`` or an int to record it).
        key: the logs key (Keras's own callbacks use ``"learning_rate"``).

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    >>> h = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=2, verbose=0,
    ...               callbacks=[LearningRateLogger()])
    >>> [round(v, 3) for v in h.history["learning_rate"]]
    [0.05, 0.05]
    """

    def __init__(self, every_step: bool = False, key: str = "learning_rate"):
        super().__init__()
        self.every_step = _validate.check_bool("every_step", every_step)
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"Argument `key` must be a non-empty string. Received: key={key!r}"
            )
        self.key = key
        self._epoch_start = 0
        # Keras turns its asynchronous dispatch off for a callback with an
        # ``on_train_batch_end`` hook unless it says it is safe; this one
        # does nothing there without `every_step`.
        self.async_safe = not self.every_step

    def on_train_begin(self, logs=None):
        self._epoch_start = _iterations(self.model.optimizer)

    def on_epoch_begin(self, epoch, logs=None):
        if self.every_step:
            self._epoch_start = _iterations(self.model.optimizer)

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_step or logs is None:
            return
        # `batch` is the index of the last step of this call within the epoch.
        model = self._model_ref()
        lr_object = current_lr_object(model.optimizer)
        if _has_tracked_factor(model.optimizer, lr_object) or (
            keras.backend.backend() == "jax" and isinstance(lr_object, keras.Variable)
        ):
            # On JAX the optimizer's variables (a float rate's, or a tracked
            # factor) have no host value between syncs; this reads them.
            lr_object = current_lr_object(self.model.optimizer)
        # Keras reports a last, partial execution as if it were whole.
        steps = (self.params or {}).get("steps")
        last = int(batch) if not steps else min(int(batch), int(steps) - 1)
        logs[self.key] = lr_value(lr_object, self._epoch_start + last)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        step = _iterations(optimizer) - 1
        logs[self.key] = lr_value(current_lr_object(optimizer), step)

    def _model_ref(self) -> Any:
        # `self.model` syncs JAX's state each call; the host step count
        # does not need it.
        return self._model


class _ScheduleInstaller(LearningRateLogger):
    """Installs a schedule built at `on_train_begin` for the length of `fit`."""

    def __init__(
        self,
        *,
        cycle_momentum: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        log_every_step: bool = False,
    ):
        super().__init__(
            every_step=_validate.check_bool("log_every_step", log_every_step)
        )
        if not isinstance(cycle_momentum, bool):
            raise TypeError(
                "Argument `cycle_momentum` must be a bool. "
                f"Received: cycle_momentum={cycle_momentum!r}"
            )
        self.cycle_momentum = cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self.schedule: Any = None
        self._saved: dict[str, Any] | None = None
        self._scaled: Any = None
        self._momentum: tuple[str, Any] | None = None
        self._offset = 0
        self._placed = True

    # Subclasses: the schedule for `total_steps` steps of this fit.
    def _build(self, optimizer: Any, total_steps: int | None) -> Any:
        raise NotImplementedError

    def _fit_steps(self) -> int | None:
        epochs = self.params.get("epochs")
        steps = self.params.get("steps")
        if not epochs or not steps:
            return None
        return int(epochs) * int(steps)

    def _momentum_attribute(self, optimizer: Any) -> str:
        from keras_lr.optimizers import Adam, AdamW

        if isinstance(optimizer, ScheduledMomentumSGD):
            if not _base.is_schedule(optimizer.momentum) and optimizer.momentum == 0:
                raise ValueError(
                    "`cycle_momentum=True` needs an SGD optimizer built with "
                    "momentum > 0 (it has no momentum slots). Create it as "
                    "keras_lr.optimizers.SGD(lr, momentum=0.9)."
                )
            return "momentum"
        if isinstance(optimizer, (Adam, AdamW)):
            return "beta_1"
        raise ValueError(
            "`cycle_momentum=True` needs an optimizer that accepts a momentum "
            "schedule: keras_lr.optimizers.SGD, Adam or AdamW (Keras's own read "
            "momentum as a constant when the step is traced). Received: "
            f"{type(optimizer).__name__}"
        )

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = base_optimizer(model.optimizer)
        # A fit that raised never reached `on_train_end`: put back what it
        # left installed before reading the optimizer's own rate.
        _uninstall(optimizer)
        offset = _iterations(optimizer)
        attribute = None
        if self.cycle_momentum:
            attribute = self._momentum_attribute(optimizer)
        schedule = self._build(optimizer, self._fit_steps())
        self.schedule = schedule
        saved = {"_learning_rate": optimizer._learning_rate}
        installed = {"_learning_rate": schedule}
        if attribute is not None:
            saved[attribute] = vars(optimizer).get(attribute, _MISSING)
            installed[attribute] = schedule.momentum(
                self.base_momentum, self.max_momentum
            )
        # Wrapped in `Scaled`, so that the divergence detector (or any
        # callback following the `Scaled` contract) can lower the rate. A
        # `Scaled` of the optimizer's own rate that scales the whole schedule
        # (``Warmup(Scaled(f))``) is lowered instead: the cut stays after
        # `fit`, and a model saved meanwhile has it.
        self._scaled = Scaled(_base.Shifted(schedule, offset))
        own = outermost_scaled(schedule)
        if own is not None:
            set_attr(self._scaled, _rate.OWN_SCALED, own)
        self._momentum = None
        if attribute is not None:
            self._momentum = (attribute, _base.Shifted(installed[attribute], offset))
        self._offset = offset
        self._placed = False
        _install(optimizer, saved, self._scaled, self._momentum, model.optimizer)
        self._saved = saved
        _rate.retrace_train_function(model)
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._saved is not None and not self._placed:
            self._placed = True
            self._place(int(epoch))
        super().on_epoch_begin(epoch, logs)

    def _place(self, epoch: int) -> None:
        """Aligns the schedule with the global step of this fit's first epoch.

        The schedule's step 0 is the first step of epoch 0 of this fit, so a
        fit resumed at `epoch` (`initial_epoch`, or `BackupAndRestore`, which
        restores the optimizer's counter and the epoch in its own
        `on_train_begin`, before or after this callback's) continues the
        schedule at ``epoch * steps`` rather than starting it again.

        When `fit` does not know its number of steps per epoch, the schedule
        starts at the step this fit's first epoch starts at (after the
        restore of a `BackupAndRestore`, whichever of the two callbacks
        comes first), with a warning when that epoch is not the first.
        """
        steps = self.params.get("steps")
        offset = _iterations(self._model.optimizer)
        if steps:
            offset -= epoch * int(steps)
        elif epoch > 0:
            warnings.warn(
                f"{type(self).__name__} starts its schedule again at epoch "
                f"{epoch + 1}, which this fit resumes at (`initial_epoch`, or "
                "`BackupAndRestore`): `fit` does not know its number of steps "
                "per epoch, so the schedule cannot be placed where that epoch "
                "of an uninterrupted run would have it. Pass `steps_per_epoch` "
                "to `fit` for the schedule to continue.",
                stacklevel=2,
            )
        if offset == self._offset:
            return
        self._offset = offset
        self._scaled.schedule = _base.Shifted(self.schedule, offset)
        if self._momentum is not None:
            attribute, shifted = self._momentum
            self._momentum = (attribute, _base.Shifted(shifted.schedule, offset))
            set_attr(base_optimizer(self._model.optimizer), *self._momentum)
        _rate.retrace_train_function(self._model)

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self) -> None:
        if self._saved is None:
            return
        model = self._model
        _uninstall(base_optimizer(model.optimizer))
        set_attr(model, "train_function", None)
        self._saved = None


#: The optimizer attribute holding what a scheduler callback replaced.
_INSTALLED = "_keras_lr_scheduler_saved"


def _install(
    optimizer: Any, saved: dict, scaled: Any, momentum: Any, outer: Any = None
) -> None:
    """Installs `scaled` (and a momentum schedule) for the length of a fit.

    `optimizer` is the base optimizer; `outer`, the model's (a
    `LossScaleOptimizer` around it), if not the same.

    The optimizer keeps its own variables (the float rate's variable among
    them) and, through an instance `get_config`, describes itself with the
    rate and momentum it had before: a model saved during `fit` (by
    `ModelCheckpoint` or `BackupAndRestore`) is the model the user compiled,
    with its full optimizer state, and loads as such.
    """
    if momentum is not None:
        set_attr(optimizer, *momentum)
    set_attr(optimizer, _INSTALLED, saved)

    def get_config():
        current = {name: vars(optimizer).get(name, _MISSING) for name in saved}
        for name, value in saved.items():
            set_attr(optimizer, name, value)
        try:
            return type(optimizer).get_config(optimizer)
        finally:
            for name, value in current.items():
                set_attr(optimizer, name, value)

    set_attr(optimizer, "get_config", get_config)
    # The `Scaled` schedules of the user's own rate (a `WarmupScheduler` of
    # one) are tracked, so that a callback lowering them works on JAX. The
    # wrapper's own factor is not: on JAX it is a constant of the compiled
    # step, which the callback lowering it retraces (the divergence detector
    # does), and the step count stays readable on the host for logging.
    set_attr(optimizer, "_learning_rate", scaled.schedule)
    try:
        track_scaled(optimizer if outer is None else outer)
    finally:
        set_attr(optimizer, "_learning_rate", scaled)


def _uninstall(optimizer: Any) -> None:
    """Puts back what `_install` replaced (nothing if nothing is installed)."""
    saved = vars(optimizer).get(_INSTALLED)
    if saved is None:
        return
    untrack_scaled(optimizer)
    for name, value in saved.items():
        set_attr(optimizer, name, value)
    set_attr(optimizer, "get_config", _MISSING)
    set_attr(optimizer, _INSTALLED, _MISSING)


def _variable_float(variable: Any) -> float:
    """A float32 variable's value as the shortest decimal float (0.05, not
    0.05000000074505806), which is what the user gave."""
    value = np.asarray(ops.convert_to_numpy(variable.value)).reshape(())
    if value.dtype == np.float32:
        return float(str(value[()]))
    return float(value)


def _float_lr(optimizer: Any, name: str) -> float:
    lr = optimizer._learning_rate
    if isinstance(lr, keras.Variable):
        return _variable_float(lr)
    raise ValueError(
        f"Argument `{name}` is needed: the optimizer's learning rate is a "
        f"{type(lr).__name__}, not a float to take it from."
    )


def _need_steps(total: int | None, name: str) -> int:
    if total is None:
        raise ValueError(
            f"Argument `{name}` is needed: `fit` does not know its number of "
            "steps (pass `steps_per_epoch` to `fit`, or the argument here)."
        )
    return total


class OneCycleScheduler(_ScheduleInstaller):
    """Trains one `fit` with the 1cycle policy (`keras_lr.schedules.OneCycle`).

    Args:
        max_lr: the peak rate (default: the optimizer's own float rate).
        total_steps: the cycle's length (default: ``epochs * steps`` of
            this `fit`).
        pct_start, div_factor, final_div_factor, anneal, three_phase: as
            for `OneCycle`.
        cycle_momentum: also cycle the momentum (``max_momentum ->
            base_momentum`` and back); needs a `keras_lr.optimizers`
            optimizer.
        base_momentum, max_momentum: the momentum range.
        log_every_step: also log the rate at each step.

    The optimizer's own rate (and momentum) is back after `fit`; the
    schedule built is in ``self.schedule``.

    If `fit` raises (a `KeyboardInterrupt`, another callback's error),
    Keras does not call ``on_train_end``: the schedule stays on the
    optimizer, and a later plain `fit` trains with it, until the next `fit`
    with a keras_lr scheduler begins. Call ``callback.on_train_end()`` to
    put the optimizer's own rate back.

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    >>> cb = OneCycleScheduler()
    >>> h = model.fit(np.ones((32, 2)), np.ones((32, 1)), batch_size=8, epochs=2,
    ...               verbose=0, callbacks=[cb])
    >>> cb.schedule.total_steps, float(model.optimizer.learning_rate)
    (8, 0.05)
    """

    def __init__(
        self,
        max_lr: float | None = None,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
        cycle_momentum: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        log_every_step: bool = False,
    ):
        super().__init__(
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            log_every_step=log_every_step,
        )
        self.kwargs = {
            "pct_start": pct_start,
            "div_factor": div_factor,
            "final_div_factor": final_div_factor,
            "anneal": anneal,
            "three_phase": three_phase,
        }
        self.max_lr = max_lr
        self.total_steps = total_steps
        # Fail now, not when fit starts.
        probe = OneCycle(
            0.1 if max_lr is None else max_lr,
            1000 if total_steps is None else total_steps,
            **self.kwargs,
        )
        if cycle_momentum:
            probe.momentum(base_momentum, max_momentum)

    def _build(self, optimizer, total_steps):
        max_lr = (
            self.max_lr if self.max_lr is not None else _float_lr(optimizer, "max_lr")
        )
        total = self.total_steps or _need_steps(total_steps, "total_steps")
        return OneCycle(max_lr, total, **self.kwargs)


class CyclicLRScheduler(_ScheduleInstaller):
    """Trains one `fit` with cyclical rates (`keras_lr.schedules.CyclicLR`).

    Args:
        base_lr, max_lr: the range of the cycle.
        step_size_up: steps going up (default: this `fit`'s steps divided
            into `cycles` whole cycles).
        step_size_down, mode, gamma: as for `CyclicLR`.
        cycles: the number of cycles when `step_size_up` is not given.
        cycle_momentum, base_momentum, max_momentum, log_every_step: as for
            `OneCycleScheduler`.

    The optimizer's own rate (and momentum) is back after `fit`, as for
    `OneCycleScheduler` (after a `fit` that raised, call
    ``callback.on_train_end()``).

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    >>> cb = CyclicLRScheduler(0.01, 0.1, cycles=2)
    >>> _ = model.fit(np.ones((32, 2)), np.ones((32, 1)), batch_size=8, epochs=2,
    ...               verbose=0, callbacks=[cb])
    >>> cb.schedule.step_size_up
    2
    """

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size_up: int | None = None,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        cycles: int = 1,
        cycle_momentum: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        log_every_step: bool = False,
    ):
        super().__init__(
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            log_every_step=log_every_step,
        )
        self.cycles = _validate.check_int("cycles", cycles, minimum=1)
        self.args = (base_lr, max_lr)
        self.step_size_up = step_size_up
        self.kwargs = {"step_size_down": step_size_down, "mode": mode, "gamma": gamma}
        probe = CyclicLR(
            base_lr,
            max_lr,
            1000 if step_size_up is None else step_size_up,
            **self.kwargs,
        )
        if cycle_momentum:
            probe.momentum(base_momentum, max_momentum)

    def _build(self, optimizer, total_steps):
        up = self.step_size_up
        if up is None:
            total = _need_steps(total_steps, "step_size_up")
            up = max(1, total // (2 * self.cycles))
        return CyclicLR(*self.args, up, **self.kwargs)


class WarmupScheduler(_ScheduleInstaller):
    """Warms up the optimizer's own rate (float or schedule) for one `fit`.

    Installs ``keras_lr.schedules.Warmup(original, warmup_steps)``: the
    original schedule starts after the warmup (it sees ``step -
    warmup_steps``). A float rate is taken as the constant to warm up to.

    Args:
        warmup_steps: length of the warmup (default: one epoch of steps).
        initial_lr: rate at the first step.
        shape: ``"linear"`` or ``"exponential"``.
        log_every_step: also log the rate at each step.

    The optimizer's own rate is back after `fit`, as for
    `OneCycleScheduler` (after a `fit` that raised, call
    ``callback.on_train_end()``).

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    >>> cb = WarmupScheduler()
    >>> h = model.fit(np.ones((32, 2)), np.ones((32, 1)), batch_size=8, epochs=2,
    ...               verbose=0, callbacks=[cb])
    >>> cb.schedule.warmup_steps, [round(v, 4) for v in h.history["learning_rate"]]
    (4, [0.0375, 0.05])
    """

    def __init__(
        self,
        warmup_steps: int | None = None,
        initial_lr: float = 0.0,
        shape: str = "linear",
        log_every_step: bool = False,
    ):
        super().__init__(log_every_step=log_every_step)
        self.warmup_steps = warmup_steps
        self.initial_lr = initial_lr
        self.shape = shape
        Warmup(1.0, warmup_steps or 0, initial_lr, shape)  # validates

    def _build(self, optimizer, total_steps):
        steps = self.warmup_steps
        if steps is None:
            per_epoch = self.params.get("steps")
            steps = int(_need_steps(per_epoch, "warmup_steps"))
        original = optimizer._learning_rate
        if isinstance(original, keras.Variable):
            original = _variable_float(original)
        return Warmup(original, steps, self.initial_lr, self.shape)
