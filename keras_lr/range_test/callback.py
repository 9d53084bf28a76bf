"""`LRRangeTest`: the range test as a callback for `model.fit`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras
import numpy as np

from keras_lr import _live, _rate, _validate
from keras_lr._detect import LossWatch, first_divergence
from keras_lr._state import (
    TrainingState,
    base_optimizer,
    distribution_scope,
    set_attr,
    variables_finite,
)
from keras_lr.range_test._data import check_validation_data
from keras_lr.range_test._recorder import (
    StepLossRecorder,
    clear_leftover,
    gate_train_step,
)
from keras_lr.range_test._sweep import SweepSchedule, sweep_lrs
from keras_lr.range_test.result import LRRangeTestResult, RangeTestWarning
from keras_lr.schedules import _base

__all__ = ["LRRangeTest"]

_MODES = ("exponential", "linear")


def validate_sweep(
    start_lr: Any,
    end_lr: Any,
    num_steps: Any,
    mode: Any,
    smoothing: Any,
    diverge_threshold: Any,
) -> tuple[float, float, int, float, float]:
    """Checks the range test's arguments; returns them normalised."""
    start_lr = _validate.check_learning_rate("start_lr", start_lr)
    end_lr = _validate.check_learning_rate("end_lr", end_lr)
    _validate.check_finite("start_lr", start_lr)
    _validate.check_finite("end_lr", end_lr)
    _validate.check_positive("start_lr", start_lr)
    _validate.check_greater("end_lr", end_lr, "start_lr", start_lr)
    # At most 2**31 - 1: the optimizer's step counter is int32 on JAX.
    num_steps = _base.check_steps("num_steps", num_steps, minimum=10)
    _validate.check_choice("mode", mode, _MODES)
    if not _distinct_rates(start_lr, end_lr, num_steps, mode):
        raise ValueError(
            "Arguments `start_lr`, `end_lr` and `num_steps` must give a sweep "
            "of distinct, increasing rates: `end_lr` is too close to "
            f"`start_lr` for {num_steps} steps. Received: start_lr={start_lr}, "
            f"end_lr={end_lr}, num_steps={num_steps}"
        )
    smoothing = _validate.check_real("smoothing", smoothing)
    _validate.check_in_interval("smoothing", smoothing, 0.0, 1.0)
    diverge_threshold = _validate.check_real("diverge_threshold", diverge_threshold)
    if not diverge_threshold > 1.0:
        raise ValueError(
            "Argument `diverge_threshold` must be > 1. "
            f"Received: diverge_threshold={diverge_threshold}"
        )
    return start_lr, end_lr, num_steps, smoothing, diverge_threshold


def _distinct_rates(start_lr: float, end_lr: float, num_steps: int, mode: str) -> bool:
    """Whether consecutive rates of the sweep differ by more than rounding.

    The relative step between rates is smallest at the start of an
    exponential sweep (it is constant) and at the end of a linear one; both
    pairs must differ by more than 8 units in the last place, so that no
    pair in between can round to equal rates.
    """
    n = num_steps - 1
    frac = np.array([0.0, 1.0 / n, (n - 1.0) / n, 1.0])
    if mode == "exponential":
        lrs = start_lr * (end_lr / start_lr) ** frac
    else:
        lrs = start_lr + (end_lr - start_lr) * frac
    return bool(
        lrs[1] - lrs[0] > 8 * np.spacing(lrs[1])
        and lrs[3] - lrs[2] > 8 * np.spacing(lrs[3])
    )


class StepLossSession:
    """Swaps a per-step loss recorder and a learning-rate object into a model.

    The range test and the race of `find_best_learning_rate` both train for a
    while with a rate of their own while recording each step's loss on the
    device. `install()` puts the recorder in place of the model's loss
    tracker and `lr_object` in place of the optimizer's rate, and makes the
    next `fit` trace a new train function; `uninstall()` puts the originals
    back (the `TrainingState` restores everything else).
    """

    def __init__(self, model: Any, capacity: int):
        self.model = model
        with distribution_scope(model):
            self.recorder = StepLossRecorder(capacity)
        self._saved: dict[str, Any] | None = None

    def install(self, lr_object: Any) -> None:
        model = self.model
        optimizer = base_optimizer(model.optimizer)
        if self._saved is None:
            self._saved = {
                "tracker": vars(model).get("_loss_tracker"),
                "lr": optimizer._learning_rate,
                "ungate": gate_train_step(model, self.recorder),
            }
        set_attr(model, "_loss_tracker", self.recorder)
        set_attr(optimizer, "_learning_rate", lr_object)
        _rate.retrace_train_function(model)
        set_attr(model, "test_function", None)

    def uninstall(self) -> None:
        if self._saved is None:
            return
        set_attr(self.model, "_loss_tracker", self._saved["tracker"])
        set_attr(
            base_optimizer(self.model.optimizer), "_learning_rate", self._saved["lr"]
        )
        self._saved["ungate"]()
        self._saved = None

    def clear(self) -> None:
        """Empties the recorder's buffer and step count."""
        rec = self.recorder
        for v in rec.variables:
            v.assign(np.zeros(v.shape, dtype=keras.backend.standardize_dtype(v.dtype)))

    def steps(self) -> int:
        return int(keras.ops.convert_to_numpy(self.recorder.steps.value))


class LRRangeTest(keras.callbacks.Callback):
    """Leslie Smith's learning-rate range test, as a callback.

    During `fit` the learning rate sweeps from `start_lr` to `end_lr` over
    `num_steps` steps, computed inside the compiled step from the
    optimizer's iteration counter, while each step's own loss is written to
    a device buffer that the callback reads only every few steps (on JAX
    without waiting for the device: each read takes the copy started at the
    previous one, see `keras_lr._live`). The sweep stops when the smoothed
    loss climbs past `diverge_threshold` times its best, or turns NaN. When `fit` ends, the model's weights, optimizer
    state, learning rate and metrics are restored bitwise (unless
    ``restore=False``) and `result` holds the curve.

    Sweep, for step ``i`` of ``n``::

        exponential: lr_i = start_lr * (end_lr / start_lr) ** (i / (n - 1))
        linear:      lr_i = start_lr + (end_lr - start_lr) * i / (n - 1)

    If `fit` raises (for instance on a KeyboardInterrupt), Keras calls no
    callback at the end; call `restore()` yourself, or use
    `keras_lr.lr_range_test`, which always restores (the next `fit` with an
    `LRRangeTest` or a `DivergenceDetector` also restores it, with a
    warning). It cannot share a `fit` with a `DivergenceDetector` (both
    record the loss in place of the model's tracker): that `fit` is refused
    with a ValueError. The sweep owns the
    rate during its `fit`: a callback that sets the rate too
    (`keras.callbacks.LearningRateScheduler`, `ReduceLROnPlateau`) makes
    Keras refuse to set it ("This optimizer was created with a
    `LearningRateSchedule`"); leave those out of the range test's `fit`.

    Args:
        start_lr: rate of the first step, > 0.
        end_lr: rate of the last step, > `start_lr`.
        num_steps: steps of the sweep, >= 10. Training stops after them.
        mode: ``"exponential"`` (default) or ``"linear"``.
        smoothing: EMA factor of the smoothed loss, in [0, 1).
        diverge_threshold: the sweep stops when the smoothed loss exceeds
            this multiple of its best, > 1.
        stop_on_divergence: stop (and cut the curve) at divergence.
        validation_data: optional ``(x, y)`` or ``(x, y, sample_weight)``
            (a tuple or a list, as `fit` takes it), or a dataset that can be
            iterated more than once; its loss is measured each time the
            callback reads the buffer.
        validation_steps: batches of `validation_data` per measurement;
            needed for an infinite dataset.
        check_every: steps between reads of the device buffer; by default
            ``max(steps_per_execution, num_steps // 10)``.
        restore: restore the model when `fit` ends.
        progress: show a progress bar of the sweep's own steps (pass
            ``verbose=0`` to `fit` then).

    References:
        Smith, L. N. (2017). Cyclical Learning Rates for Training Neural
        Networks. WACV. arXiv:1506.01186.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> finder = LRRangeTest(start_lr=1e-4, end_lr=10.0, num_steps=40)
    >>> _ = model.fit(x, y, batch_size=16, epochs=3, callbacks=[finder], verbose=0)
    >>> len(finder.result.lrs) <= 40, float(model.optimizer.learning_rate)
    (True, 0.01)
    """

    def __init__(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        smoothing: float = 0.98,
        diverge_threshold: float = 4.0,
        *,
        stop_on_divergence: bool = True,
        validation_data: Any = None,
        validation_steps: int | None = None,
        check_every: int | None = None,
        restore: bool = True,
        progress: bool = False,
        _state: TrainingState | None = None,
    ):
        super().__init__()
        (
            self.start_lr,
            self.end_lr,
            self.num_steps,
            self.smoothing,
            self.diverge_threshold,
        ) = validate_sweep(
            start_lr, end_lr, num_steps, mode, smoothing, diverge_threshold
        )
        self.mode = mode
        self.stop_on_divergence = _validate.check_bool(
            "stop_on_divergence", stop_on_divergence
        )
        if validation_steps is not None:
            validation_steps = _validate.check_int(
                "validation_steps", validation_steps, minimum=1
            )
        self.validation_steps = validation_steps
        self.validation_data = check_validation_data(validation_data, validation_steps)
        if check_every is not None:
            check_every = _validate.check_int("check_every", check_every, minimum=1)
        self.check_every = check_every
        self.restore_on_end = _validate.check_bool("restore", restore)
        self.progress = _validate.check_bool("progress", progress)
        self._given_state = _state
        self.result: LRRangeTestResult | None = None
        self._session: StepLossSession | None = None
        self._state: TrainingState | None = None

    # Keras hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "The model must be compiled with an optimizer before a range "
                "test: call `model.compile(optimizer=..., loss=...)` first."
            )
        # Before the state is captured: what an interrupted `fit` left in
        # place is not the model's own.
        clear_leftover(model, self)
        self.result = None
        state = self._given_state or TrainingState(model)
        if not state.has_variables and not state.capture_variables():
            if self.restore_on_end:
                raise ValueError(
                    "LRRangeTest cannot restore a model that is not built yet: "
                    "its variables do not exist when `fit` begins on this "
                    "backend. Build the model first (call it on a batch, or "
                    "give it an `Input`), use `keras_lr.lr_range_test`, which "
                    "builds it, or pass `restore=False`."
                )
        self._state = state
        # The schedule is called with the raw step count (which, with
        # gradient accumulation, is not `iterations`).
        offset = _rate.schedule_step(model.optimizer)
        self._offset = offset
        self._lrs = sweep_lrs(self.start_lr, self.end_lr, self.num_steps, self.mode)
        self._session = StepLossSession(model, self.num_steps)
        self._session.install(
            SweepSchedule(self.start_lr, self.end_lr, self.num_steps, self.mode, offset)
        )
        set_attr(self._session.recorder, "owner", self)
        self._watch = LossWatch(
            smoothing=self.smoothing, best_ratio=self.diverge_threshold
        )
        self._consumed = 0
        self._executions = 0
        self._pending: _live.PendingRead | None = None
        self._epoch_offset = 0
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._spe = spe
        self._every = self.check_every or max(spe, self.num_steps // 10)
        self._next_check = self._every
        self._val_lrs: list[float] = []
        self._val_losses: list[float] = []
        self._last_val_step = 0
        self._event = None
        self._progbar = (
            keras.utils.Progbar(
                self.num_steps, stateful_metrics=["lr", "smoothed loss"]
            )
            if self.progress
            else None
        )

    def on_train_batch_begin(self, batch, logs=None):
        # Counted here: an `on_train_batch_end` hook would turn off Keras's
        # asynchronous dispatch (a host sync of the logs every step).
        self._executions += 1
        done = self._epoch_offset + int(batch)
        # The execution starting now runs `steps_per_execution` steps, or
        # fewer at the end of an epoch (arrays sweep over several epochs).
        span = self._spe
        per_epoch = (self.params or {}).get("steps")
        if per_epoch:
            span = max(1, min(span, int(per_epoch) - int(batch)))
        if done + span >= self.num_steps:
            # The execution starting now completes the sweep. (`_model`, not
            # `model`: on JAX the property syncs the whole state.)
            self._model.stop_training = True
        if done >= self._next_check:
            self._next_check = done + self._every
            self._check()
        if self._progbar is not None and 0 < done <= self.num_steps:
            lr = float(self._lrs[done - 1])
            values = [("lr", lr)]
            if self._consumed:
                values.append(("smoothed loss", self._watch.smoothed))
            self._progbar.update(done, values=values)

    def on_test_begin(self, logs=None):
        # `fit(validation_data=...)` evaluates with the same loss tracker:
        # its batches are not steps of the sweep.
        if self._session is not None:
            self._session.recorder.recording = False

    def on_test_end(self, logs=None):
        if self._session is not None:
            self._session.recorder.recording = True

    def on_epoch_end(self, epoch, logs=None):
        self._check(now=True)
        self._epoch_offset = self._session.steps()
        if self._epoch_offset >= self.num_steps:
            self._model.stop_training = True

    def on_train_end(self, logs=None):
        try:
            self.result = self._build_result()
        finally:
            # The model goes back even if the result cannot be built.
            self._abandon()
        if self._progbar is not None:
            n = len(self.result)
            self._progbar.update(
                self.num_steps if n >= self.num_steps - 1 else n, finalize=True
            )
        if self._executions and not len(self.result):
            restored = "was restored" if self.restore_on_end else "keeps its weights"
            raise ValueError(
                f"The range test ran {self._executions * self._spe} step(s) but "
                "recorded no loss: the model's `train_step` does not update the "
                "model's loss metric (the one named 'loss' in `self.metrics`), "
                "which the range test records. Keras's own `train_step` does; a "
                "custom one must too, once it has its loss (as Keras's guide to "
                "custom training steps does): `for m in self.metrics: "
                "m.update_state(loss) if m.name == 'loss' else "
                f"m.update_state(y, y_pred)`. The model {restored}."
            )

    # Reading the buffer -------------------------------------------------

    def _check(self, *, now: bool = False) -> None:
        recorder = self._session.recorder
        live = None
        if not now and self.validation_data is None:
            cached = getattr(self, "_ring_live", None)
            if cached is None or cached[0] is not recorder:
                ring = _live.LiveIndex(self._model, [recorder.buffer, recorder.steps])
                cached = self._ring_live = (recorder, ring)
            live = cached[1].arrays()
        if live is None:
            self._pending = None
            _ = self.model  # on JAX this syncs the state into the variables
            losses = recorder.recorded()
        else:
            # Mid-epoch on JAX: take the copy started at the last read and
            # start the next one; the host never waits for the device.
            pending, self._pending = self._pending, _live.PendingRead(live)
            if pending is None:
                return
            losses = recorder.recorded(values=pending.result())
        losses = losses[: self.num_steps]
        fresh = losses[self._consumed :]
        self._consumed = max(self._consumed, losses.size)
        if fresh.size and self._event is None:
            self._event = self._watch.update(fresh)
        if self._event is not None and self.stop_on_divergence:
            self._model.stop_training = True
        if (
            self.validation_data is not None
            and losses.size
            and self._event is None
            and losses.size != self._last_val_step
        ):
            # Once per step count: an epoch's end and the next epoch's first
            # batch read the buffer at the same step.
            self._last_val_step = losses.size
            self._evaluate(losses.size)

    def _evaluate(self, steps_done: int) -> None:
        data = self.validation_data
        recorder = self._session.recorder
        recorder.recording = False
        try:
            if isinstance(data, tuple):
                x, y, sample_weight = data
                logs = self.model.evaluate(
                    x,
                    y,
                    sample_weight=sample_weight,
                    steps=self.validation_steps,
                    verbose=0,
                    return_dict=True,
                )
            else:
                logs = self.model.evaluate(
                    data, steps=self.validation_steps, verbose=0, return_dict=True
                )
        finally:
            recorder.recording = True
        self._val_lrs.append(float(self._lrs[min(steps_done, self.num_steps) - 1]))
        self._val_losses.append(float(logs["loss"]))

    def _build_result(self) -> LRRangeTestResult:
        _ = self.model
        losses = self._session.recorder.recorded()[: self.num_steps]
        lrs = self._lrs[: losses.size]
        event = first_divergence(
            losses, smoothing=self.smoothing, threshold=self.diverge_threshold
        )
        divergence_step = None if event is None else int(event.step)
        if event is not None and self.stop_on_divergence:
            lrs, losses = lrs[: event.step + 1], losses[: event.step + 1]
        result = LRRangeTestResult(
            lrs=lrs,
            losses=losses,
            smoothing=self.smoothing,
            diverged=event is not None,
            divergence_step=divergence_step,
            val_lrs=self._val_lrs,
            val_losses=self._val_losses,
            params={
                "start_lr": self.start_lr,
                "end_lr": self.end_lr,
                "num_steps": self.num_steps,
                "mode": self.mode,
                "diverge_threshold": self.diverge_threshold,
                "steps_per_execution": self._spe,
            },
        )
        skipped = self._skipped_steps(losses.size)
        result.params["skipped_steps"] = skipped
        # Weights poisoned under finite losses (on TensorFlow, relu(NaN) is 0:
        # a NaN input or update leaves a dead network scoring the chance
        # level), which no loss test can see. After a divergence the weights
        # may be anything; the curve stops there. Steps run past the curve
        # (the rest of an execution, a `fit` longer than the sweep) ran at
        # rates the curve does not show: then nothing is said. Only the
        # trainable weights: a state variable may hold an infinity by design.
        result.params["nonfinite_weights"] = bool(
            event is None
            and losses.size
            and self._session.steps() <= losses.size
            and not variables_finite(self._model.trainable_weights)
        )
        if skipped:
            warnings.warn(
                f"LR range test: at least {skipped} of the curve's {losses.size} "
                "steps were skipped by the LossScaleOptimizer (their float16 "
                "gradients overflowed). The sweep's rate advances only with "
                "applied updates, so the steps after a skipped one ran at lower "
                "rates than `result.lrs` says. `keras_lr.lr_range_test` lets "
                "the loss scale settle before its sweep.",
                RangeTestWarning,
                stacklevel=2,
            )
        if losses.size and not math.isfinite(losses[0]):
            warnings.warn(
                "LR range test: the loss was not finite at the very first step "
                f"(lr={lrs[0]:.3g}), before the learning rate could matter: "
                "check the data, the labels and the loss.",
                stacklevel=2,
            )
        return result

    def _skipped_steps(self, used: int) -> int:
        """Steps of the curve a `LossScaleOptimizer` skipped (a lower bound).

        Updates applied over the whole sweep, fewer than the `used` steps of
        the curve, mean that at least the difference were skipped within it.
        """
        optimizer = self._model.optimizer
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return 0
        applied = _rate.schedule_step(optimizer) - self._offset
        return max(0, int(used) - applied)

    def _abandon(self) -> None:
        """Puts the model back, as `on_train_end` does (also called by a
        later `fit` that found the sweep still installed: this one raised).

        With `restore`, everything; else the trained weights stay, and the
        optimizer's own rate, the loss tracker and the compiled functions
        (which hold the sweep and the recorder) go back. `history` is left:
        `fit` still returns `model.history` after `on_train_end`.
        """
        if self.restore_on_end:
            self.restore(_skip=("history",))
        else:
            self._session.uninstall()
            if self._state is not None:
                self._state.restore_attributes(skip=("history",))

    def restore(self, _skip: tuple[str, ...] = ()) -> None:
        """Restores the model as it was when `fit` began; safe to call twice."""
        if self._session is not None:
            self._session.uninstall()
        if self._state is not None:
            self._state.restore(_skip)
            self._state = None
