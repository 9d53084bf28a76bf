"""`DivergenceDetector`: see a diverging run early, recover, or stop cleanly.

Keras's `TerminateOnNaN` looks at the epoch's running mean of the loss, in
which one bad step hides (a spike averaged away) or poisons every later
value (a NaN), and it stops only after the bad update has been applied. This
callback reads each step's own loss, recorded on the device inside the
compiled step (the `RingLossRecorder` stands in for the model's loss tracker)
and read by the host only every `check_every` steps, and runs the streaming
tests of `keras_lr._detect.LossWatch` on it: the same implementation the LR
range test stops its sweep with.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import keras
import numpy as np

from keras_lr import _live, _rate, _validate
from keras_lr._detect import DivergenceEvent, LossWatch
from keras_lr._state import (
    TrainingState,
    base_optimizer,
    distribution_scope,
    set_attr,
    variables_finite,
)
from keras_lr.callbacks._grad_norm import SKIPPED, GradNormHook
from keras_lr.callbacks._ring import RingLossRecorder
from keras_lr.range_test._recorder import clear_leftover, gate_train_step

__all__ = ["DivergenceDetector", "DivergenceError"]

logger = logging.getLogger("keras_lr")

_ACTIONS = ("rollback", "stop", "raise")

#: Least seconds between two snapshots when `snapshot_every` is not given.
_SNAPSHOT_SECONDS = 0.5
#: Raw losses whose median must confirm an ``above_best`` violation.
_CONFIRM = 9
#: The best smoothed loss counts from this step of the stream at the latest.
_WARMUP = 20


#: Steps after a rollback within which a non-finite step with no rise
#: before it is the rate's fault: a rate that overflows the weights outright
#: turns the loss non-finite on the first update or two (a rate merely too
#: high raises the loss first, which the tests see).
_OVERFLOW_STEPS = 2
#: What the log says of a non-finite step after losses that had not risen.
_BAD_BATCH = (
    "A non-finite step after healthy losses points to the data (a NaN or Inf "
    "in a batch: check `np.isfinite(x).all()`) or a numerical fault, not to "
    "the rate."
)


class DivergenceError(RuntimeError):
    """Raised by `DivergenceDetector(action="raise")` when training diverges.

    Example:

    >>> issubclass(DivergenceError, RuntimeError)
    True
    """


class _WeightsSnapshot(TrainingState):
    """Host copy of the model's and the optimizer's variables only.

    Metric variables are left out: a rollback resets the metrics instead, so
    that the epoch's logs describe the steps after the recovery.
    """

    def _variables(self) -> list[Any]:
        variables = list(self.model.variables)
        if self.optimizer is not None:
            variables += list(self.optimizer.variables)
        seen: set[int] = set()
        unique = []
        for v in variables:
            if id(v) not in seen:
                seen.add(id(v))
                unique.append(v)
        return unique

    def all_finite(self) -> bool:
        """Whether every floating-point value of the copy is finite."""
        return all(
            value.dtype.kind != "f" or bool(np.all(np.isfinite(value)))
            for _, value in self._values or ()
        )

    def restore_variables(self) -> None:
        if self._values is None:
            return
        for variable, value in self._values:
            variable.assign(value)


class DivergenceDetector(keras.callbacks.Callback):
    """Watches every step's loss; on divergence rolls back, stops or raises.

    **Detection.** Each step's own loss (not the epoch's running mean) goes
    through `keras_lr._detect.LossWatch`:

    - a NaN or Inf loss is an event at once, and so are NaN or Inf
      weights found when a snapshot is taken (on some kernels a NaN batch
      poisons the weights while the loss stays finite);
    - ``above_best``: the EMA-smoothed loss ``s_t`` (factor `smoothing`)
      exceeds ``best_ratio * min(s)``, and the median of the last 9 raw
      losses is at least halfway there: near a loss of zero (as when `fit`
      resumes a trained model) a few unlucky batches lift the EMA many times
      over its best without lifting most batches. A best set in the first
      20 steps (after each recovery too), when the EMA averages only a few
      batches and one lucky batch can set it, is provisional: a rise above
      it needs all of the last 9 losses over the limit. A smoothed loss over
      ``best_ratio**2`` times the best (``best_ratio**3`` times a
      provisional one and the median of the losses so far), as after a
      blow-up by orders of magnitude, needs no confirmation;
    - ``spike``: the step's loss exceeds ``spike_ratio * s_{t-1}``;
    - ``zscore``: the robust z-score of ``log(loss)`` against the previous
      `window` steps, ``(log x_t - median) / (1.4826 MAD)``, exceeds
      `z_threshold`.

    The last three count only after `grace_steps` steps (and again after
    each recovery), only when the loss has given back at least
    `rise_fraction` of the progress made since the start of training
    (``x - best >= rise_fraction * (first - best)``: late in training a noisy
    batch can be several times the baseline without any harm), and fire
    after `patience` consecutive violating steps. In the grace period only
    a blow-up counts: the smoothed loss over ``best_ratio**3`` (27x) times
    its best, for `patience` steps (a rate far too high can throw the loss
    up a thousandfold in the first updates and leave a dead network at its
    starting loss, which the EMA has forgotten when the grace period ends;
    one outlier batch would have to be over 100 times the others).
    With ``watch_gradient_norm=True`` each step's global gradient norm
    ``||g|| = sqrt(sum_i ||g_i||^2)`` is recorded too, inside the compiled
    step (the optimizer's apply step is wrapped for the length of `fit`),
    and goes through the same spike and z-score tests (`gradient_spike_ratio`,
    `z_threshold`, `window`, `grace_steps`, `patience`), with no
    ``best_ratio`` test (a healthy gradient norm often grows as the loss
    falls) and no materiality gate; a NaN or Inf norm is an event at once.
    A gradient that explodes shows there one step before the loss it
    produces (Pascanu et al., 2013, arXiv:1211.5063); events carry
    ``source="gradient_norm"``, with the norm and its baseline in ``loss``
    and ``baseline``. With a `LossScaleOptimizer` the norm is
    unscaled, and the steps it skips are not counted. With ``monitor_val=True``
    the epoch's ``val_loss`` is also watched: an event when it is not finite
    or jumps over `val_spike_ratio` times the previous epoch's; its rollback
    goes back to the end of the last epoch whose ``val_loss`` was healthy
    (a second host copy, kept only with ``monitor_val=True``).

    **Granularity.** The host reads the device buffer at the start of an
    execution once `check_every` steps have passed, and at the end of each
    epoch (before validation, so that the ``val_`` figures of an epoch that
    ends with a recovery describe the restored model; its training figures
    still include the diverged steps, and the weights, mid-epoch checked
    with each snapshot, are checked for NaN or Inf there too): an event is
    located at its exact step, but acted on up to
    ``check_every + steps_per_execution - 1`` steps later. No host sync
    happens in between, and the callback defines no ``on_*_batch_end``
    hook, so Keras keeps its asynchronous dispatch. On JAX, mid-epoch
    reads do not wait for the device either: each read starts a copy of
    the buffer and takes the one started at the previous read, so events
    are acted on up to one more `check_every` later (reads that precede a
    snapshot, and those at the end of an epoch, wait for the current
    values).

    **Snapshot.** A host copy of the model's and the optimizer's variables
    (one copy, `snapshot_nbytes` bytes, fetched together) is taken when
    the first epoch of `fit` begins (after every callback's
    ``on_train_begin``: a run that `keras.callbacks.BackupAndRestore`
    resumes is snapshot as restored) and then, at most every
    `snapshot_every` steps, at a read
    that found every loss since the last one healthy and no test in
    violation. Without an explicit `snapshot_every`, snapshots are also at
    least 0.5 s apart, so that fast steps on an accelerator do not wait for
    a copy every few milliseconds, and on JAX they are taken asynchronously:
    the copy of the live state starts together with the copy of the loss
    buffer, and becomes the snapshot at the next read if every loss up to
    it is healthy (the host never waits for the device; meanwhile a device
    copy of the variables is in flight, so on an accelerator with no memory
    to spare pass `snapshot_every`). An explicit `snapshot_every` takes each
    snapshot at once, at the steps it names, with no device copy.

    **Actions.** Every action first restores the last healthy snapshot
    (snapshots are taken only while no test is in violation and neither
    the last loss nor the smoothed one is over ``best_ratio`` times the
    best: a rise the tests have yet to confirm is no state to keep).
    ``"rollback"`` then multiplies the learning rate by `factor` and goes
    on: a float rate is assigned; a schedule is lowered through its variable
    ``factor`` (the contract of `keras_lr.schedules.Scaled`). After
    `max_recoveries` recoveries, or when the rate would fall below
    `min_lr`, it stops instead. ``"stop"`` stops training: the execution
    in flight still runs, so the weights are restored again at the end of
    the epoch, before its validation (the ``val_`` figures, and what
    `ModelCheckpoint` or `EarlyStopping` read in ``on_epoch_end``, are the
    restored model's; without validation, list the detector before those
    callbacks, which Keras calls in list order). After that the weights
    are left alone, so an ``EarlyStopping(restore_best_weights=True)``
    anywhere in the list has the last word. A stop leaves the lower of the
    rate in effect and the snapshot's: a cut made by an earlier rollback
    stays, a rate raised since the snapshot goes back.
    ``"raise"`` raises `DivergenceError`. A callback elsewhere in the list
    may call `model.evaluate` during `fit`: only the train steps' losses
    are watched. Every event is appended to
    `events` (a dict: ``epoch``, ``step``, ``source``, ``reason``, ``loss``,
    ``baseline``, ``score``, ``restored_step``, ``learning_rate`` and
    ``learning_rate_after``, ``action`` (the action taken, or ``"skipped"``,
    see below), ``rate_never_healthy``: whether
    the rate had not yet trained healthily, so that `repeat_factor`
    applied, and ``bad_batch``: whether the event was read as a bad batch,
    see below), logged on the ``"keras_lr"`` logger, and counted in the
    epoch's logs as ``divergence_events`` (so `History` has it).

    The default `factor` is 0.5: a transient fault (a NaN batch, a few
    steps at a wrong rate) needs no lower rate at all, and a 10x cut after a
    single glitch would slow the whole rest of the run. The cut is kept
    (as the rule "roll back, lower the rate, go on" says); with
    `restore_rate_after` set, a cut by `factor` is undone once training has
    run healthy for that many steps at the lowered rate: the rate goes back
    to what it was before the event (each restoration is appended to
    `rate_restorations` and logged), unless another rollback or
    restoration happened in the `restore_rate_after` steps before it (a
    rate that diverges again soon after coming back is part of the
    problem). Measured on the fault benchmark (6 seeds, 4-epoch runs at a
    constant rate), restoring cost 1.2 to 1.6 points of final accuracy
    against keeping the cut, hence the default None. A divergence before
    training has ever run healthily at this rate (before the first snapshot
    after the start, or again before a new snapshot) shows that the rate
    itself is wrong: then `repeat_factor` (0.1) applies, the usual distance
    between the rate where an LR range test diverges and the rate that
    trains best (Smith, 2017, arXiv:1506.01186). Halving alone would step
    through rates that do not blow up but silently kill the network (dead
    ReLUs, a loss stuck at chance), which no loss test can tell from slow
    training. A lone non-finite step (loss or gradient norm) before the
    first snapshot after the start, after losses that had not risen above
    their start, is a bad batch, not the rate: it gets `factor` (a rate at
    fault diverges again from the same snapshot, and then gets
    `repeat_factor`, when it comes within 2 steps of the rollback);
    so are non-finite weights found while every loss stayed finite and no
    test fired (a NaN batch through ReLUs on TensorFlow, whose dead
    network's loss then climbs back to chance level, above a lucky first
    batch's). A bad batch that comes back later, after healthy steps (a NaN
    sample met again each epoch), is still read as the data's fault: it
    gets `factor`, and the log points to the data instead of the rate.

    **Limits.** A rate so high that it kills the network in its first steps
    without the loss ever blowing up (dead ReLUs, a loss stuck at chance
    level) gives no divergence signal in the loss: nothing fires, and the
    run goes on at that rate; `LRMonitor` reports it as ``"too_high"``
    after a few epochs. At batch sizes of
    1 to 4 with a squared-error loss, the per-step losses of even a
    converged run are chi-square noise whose tail the ratio tests cannot
    tell from a rise: such runs raise false alarms (on scripted stationary
    curves, in a tenth to a third of 300-step runs); raise `best_ratio` or
    `patience` there, or use ``action="stop"``.

    With mixed precision (`LossScaleOptimizer`) the detector watches the
    unscaled loss, which the loss tracker receives; the optimizer's own
    skipping of non-finite gradient steps is left as it is. Under
    ``action="rollback"`` a non-finite loss whose step left every variable
    finite, as a skipped step does, is not rolled back: the event is
    recorded with ``action="skipped"``, the epoch's metrics are reset, and
    training goes on at the same rate; a second non-finite loss within
    `window` steps (a rate overflowing the float16 forward pass while every
    update is skipped) is rolled back as usual.

    An epoch whose Keras mean loss a handled step left NaN (an event read at
    the epoch's end, after Keras computed the epoch's logs) logs instead the
    mean of its finite per-step losses after the last event (of all of them
    when none came after it), so that `History`, `diagnose` and `LRMonitor`
    do not read a recovered run as diverged (other training metrics of that
    epoch keep Keras's mean over all its steps, which the detector cannot
    recompute). List the detector before the callbacks that read the logs:
    Keras calls them in list order.

    For the length of `fit` the model's loss tracker is replaced, its
    `train_step` wrapped (so that only training steps are recorded, not an
    `evaluate` another callback runs) and, with ``watch_gradient_norm=True``,
    the optimizer's apply step wrapped; they are put back in
    ``on_train_end``. Keras does not call it when `fit`
    raises (a `KeyboardInterrupt`, another callback's error): call
    ``detector.on_train_end()`` then to put them back (the next `fit` with a
    `DivergenceDetector` or an `LRRangeTest` does it too, with a warning).

    Args:
        action: ``"rollback"``, ``"stop"`` or ``"raise"``.
        factor: multiplier of the rate at a rollback, in (0, 1).
        repeat_factor: multiplier instead of `factor` when the rate has not
            shown a healthy stretch: training diverges before the first
            snapshot after the start (other than by a lone non-finite step,
            see above), or again before a new snapshot was taken (the same
            snapshot is restored twice; a lone non-finite step only within
            2 steps of the rollback), in (0, 1).
        max_recoveries: rollbacks allowed in one `fit`, >= 0.
        restore_rate_after: healthy steps after a rollback by `factor`
            before the rate goes back up to its value before the event;
            ``"auto"``: four snapshot intervals (``4 * snapshot_every``);
            None (default) keeps every cut.
        min_lr: optional floor of the rate (a float); a rollback that would
            go below it stops training instead.
        smoothing: EMA factor of the smoothed loss, in [0, 1).
        best_ratio: threshold of smoothed loss over its best, > 1, or None.
        spike_ratio: threshold of a step's loss over the smoothed baseline,
            > 1, or None.
        z_threshold: robust z-score threshold on log-loss, > 0, or None.
        window: steps in the z-score's window, >= 10.
        grace_steps: steps at the start (and after a recovery) before the
            ratio and z tests count, >= 0.
        patience: consecutive violating steps before an event, >= 1.
        rise_fraction: materiality gate (see above), >= 0, or None.
        check_every: steps between reads of the device buffer; default
            ``max(32, steps_per_execution)``.
        snapshot_every: least steps between snapshots; default
            ``2 * check_every``.
        monitor_val: also watch ``val_loss`` after each epoch (a warning
            at the end of a `fit` whose logs never had it).
        val_spike_ratio: ``val_loss`` jump over the previous epoch's, > 1.
        watch_gradient_norm: also record and watch each step's global
            gradient norm (default False: it costs a reduction over every
            gradient per step).
        gradient_spike_ratio: threshold of a step's gradient norm over its
            smoothed value, > 1, or None.
        verbose: 1 logs events as warnings, 0 as info.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> detector = DivergenceDetector(action="rollback")
    >>> history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[detector],
    ...                     verbose=0)
    >>> detector.events, history.history["divergence_events"]
    ([], [0, 0])

    With gradient norms watched too, a batch of NaN inputs is an event at
    its own step (here the loss sees it as well, and reports it):

    >>> x[96:112] = np.nan  # the 7th batch: step 6
    >>> detector = DivergenceDetector(watch_gradient_norm=True, verbose=0)
    >>> history = model.fit(x, y, batch_size=16, epochs=1, callbacks=[detector],
    ...                     shuffle=False, verbose=0)
    >>> [(e["source"], e["reason"], e["step"]) for e in detector.events]
    [('loss', 'nonfinite', 6)]
    """

    def __init__(
        self,
        action: str = "rollback",
        factor: float = 0.5,
        max_recoveries: int = 5,
        min_lr: float | None = None,
        *,
        repeat_factor: float = 0.1,
        restore_rate_after: int | str | None = None,
        smoothing: float = 0.95,
        best_ratio: float | None = 3.0,
        spike_ratio: float | None = 10.0,
        z_threshold: float | None = 8.0,
        window: int = 100,
        grace_steps: int = 20,
        patience: int = 3,
        rise_fraction: float | None = 0.5,
        check_every: int | None = None,
        snapshot_every: int | None = None,
        monitor_val: bool = False,
        val_spike_ratio: float = 3.0,
        watch_gradient_norm: bool = False,
        gradient_spike_ratio: float | None = 10.0,
        verbose: int = 1,
    ):
        super().__init__()
        self.action = _validate.check_choice("action", action, _ACTIONS)
        factor = _validate.check_real("factor", factor)
        if not 0.0 < factor < 1.0:
            raise ValueError(
                f"Argument `factor` must be in (0, 1). Received: factor={factor}"
            )
        self.factor = factor
        repeat_factor = _validate.check_real("repeat_factor", repeat_factor)
        if not 0.0 < repeat_factor < 1.0:
            raise ValueError(
                "Argument `repeat_factor` must be in (0, 1). "
                f"Received: repeat_factor={repeat_factor}"
            )
        self.repeat_factor = repeat_factor
        self.max_recoveries = _validate.check_int(
            "max_recoveries", max_recoveries, minimum=0
        )
        if restore_rate_after is not None and restore_rate_after != "auto":
            restore_rate_after = _validate.check_int(
                "restore_rate_after", restore_rate_after, minimum=1
            )
        self.restore_rate_after = restore_rate_after
        if min_lr is not None:
            min_lr = _validate.check_learning_rate("min_lr", min_lr)
            _validate.check_non_negative("min_lr", min_lr)
        self.min_lr = min_lr
        smoothing = _validate.check_real("smoothing", smoothing)
        _validate.check_in_interval("smoothing", smoothing, 0.0, 1.0)
        self.smoothing = smoothing
        self.best_ratio = _ratio("best_ratio", best_ratio)
        self.spike_ratio = _ratio("spike_ratio", spike_ratio)
        if z_threshold is not None:
            z_threshold = _validate.check_real("z_threshold", z_threshold)
            _validate.check_positive("z_threshold", z_threshold)
        self.z_threshold = z_threshold
        self.window = _validate.check_int("window", window, minimum=10)
        self.grace_steps = _validate.check_int("grace_steps", grace_steps, minimum=0)
        self.patience = _validate.check_int("patience", patience, minimum=1)
        if rise_fraction is not None:
            rise_fraction = _validate.check_real("rise_fraction", rise_fraction)
            _validate.check_non_negative("rise_fraction", rise_fraction)
        self.rise_fraction = rise_fraction
        if check_every is not None:
            check_every = _validate.check_int("check_every", check_every, minimum=1)
        self.check_every = check_every
        if snapshot_every is not None:
            snapshot_every = _validate.check_int(
                "snapshot_every", snapshot_every, minimum=1
            )
        self.snapshot_every = snapshot_every
        if not isinstance(monitor_val, (bool, np.bool_)):
            raise TypeError(
                "Argument `monitor_val` must be a bool. "
                f"Received: monitor_val={monitor_val!r}"
            )
        self.monitor_val = _validate.check_bool("monitor_val", monitor_val)
        self.val_spike_ratio = _ratio("val_spike_ratio", val_spike_ratio)
        if not isinstance(watch_gradient_norm, (bool, np.bool_)):
            raise TypeError(
                "Argument `watch_gradient_norm` must be a bool. "
                f"Received: watch_gradient_norm={watch_gradient_norm!r}"
            )
        self.watch_gradient_norm = _validate.check_bool(
            "watch_gradient_norm", watch_gradient_norm
        )
        self.gradient_spike_ratio = _ratio("gradient_spike_ratio", gradient_spike_ratio)
        self.verbose = _validate.check_verbose(verbose)
        self.events: list[dict[str, Any]] = []
        self.rate_restorations: list[dict[str, Any]] = []
        self.recoveries = 0
        self.snapshot_nbytes = 0
        self._recorder: RingLossRecorder | None = None
        self._grad_hook: GradNormHook | None = None
        self._grad_watch: LossWatch | None = None
        self._saved_tracker: Any = None
        self._start_snapshot_due = False
        self._late_snapshot_due = False
        # Outside `fit` (an `evaluate` or `predict` given this callback):
        # nothing to read or check.
        self._in_fit = False
        self._epoch_read = True

    # Set-up ----------------------------------------------------------------

    def _new_watch(self) -> LossWatch:
        return LossWatch(
            smoothing=self.smoothing,
            best_ratio=self.best_ratio,
            spike_ratio=self.spike_ratio,
            z_threshold=self.z_threshold,
            window=self.window,
            grace_steps=self.grace_steps,
            patience=self.patience,
            log_z=True,
            rise_fraction=self.rise_fraction,
            confirm=_CONFIRM,
            warmup=min(math.ceil(1.0 / (1.0 - self.smoothing)), _WARMUP),
        )

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "DivergenceDetector needs a compiled model: call "
                "`model.compile(optimizer=..., loss=...)` first."
            )
        # What an interrupted `fit` left in place is not the model's own.
        clear_leftover(model, self)
        # Checked again when the first epoch begins (`_check_lowerable`):
        # a scheduler later in the list may install a rate that can be
        # lowered in its own `on_train_begin`.
        self._scale_var = _rate.scale_variable(model.optimizer)
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._spe = spe
        self._every = self.check_every or max(32, spe)
        self._snap_every = self.snapshot_every or 2 * self._every
        self._restore_after = (
            4 * self._snap_every
            if self.restore_rate_after == "auto"
            else self.restore_rate_after
        )
        self._pending_restore: dict[str, Any] | None = None
        self._last_rate_change: int | None = None
        self._last_nonfinite: int | None = None
        self.events = []
        self.rate_restorations = []
        self.recoveries = 0
        self._epoch_events = 0
        self._epoch_tally = [0.0, 0]
        self._since_event = [0.0, 0]
        self._consumed = 0
        self._epoch_start = 0
        self._next_check = self._every
        self._stopped = False
        self._restore_due = False
        self._watch = self._new_watch()
        self._val_watch = LossWatch(smoothing=0.0, spike_ratio=self.val_spike_ratio)
        self._grad_watch = None
        if self.watch_gradient_norm:
            # Spikes and outliers only: a gradient norm has no trend to hold
            # it to (it often grows as the loss falls).
            self._grad_watch = LossWatch(
                smoothing=self.smoothing,
                spike_ratio=self.gradient_spike_ratio,
                z_threshold=self.z_threshold,
                window=self.window,
                grace_steps=self.grace_steps,
                patience=self.patience,
                log_z=True,
            )
        self._install()
        self._snapshot: _WeightsSnapshot | None = None
        self._snapshot_step = 0
        self._snapshot_time = 0.0
        self._pending_read: _live.PendingRead | None = None
        self._pending_snapshot: (
            tuple[_WeightsSnapshot, list[Any], _live.PendingRead] | None
        ) = None
        self._last_restored: _WeightsSnapshot | None = None
        self._val_snapshot: _WeightsSnapshot | None = None
        self._val_snapshot_step = 0
        self._epoch_read = False
        self._in_fit = True
        self._batches = 0
        self._warned_blind = False
        self._epochs_ended = 0
        self._val_seen = False
        optimizer = model.optimizer
        if model.built and not optimizer.built:
            # TensorFlow builds the optimizer when it traces the first step;
            # build it now (as Keras does after loading) so that the state
            # before any update can be snapshot.
            with distribution_scope(model):
                optimizer.build(model.trainable_variables)
        # The first snapshot is taken when the first epoch begins: by then
        # every callback's `on_train_begin` has run, `BackupAndRestore`'s
        # (which loads the weights of an interrupted run) included, whatever
        # their order in the list.
        self._start_snapshot_due = True

    def _install(self) -> None:
        model = self._model
        capacity = 2 * (self._every + self._spe)
        with distribution_scope(model):
            self._recorder = RingLossRecorder(
                capacity, grad_norms=self.watch_gradient_norm
            )
        set_attr(self._recorder, "owner", self)
        self._ring_live = _live.LiveIndex(model, self._recorder.ring_variables)
        self._saved_tracker = vars(model).get("_loss_tracker")
        set_attr(model, "_loss_tracker", self._recorder)
        # Only the train steps' losses: not those of an `evaluate` that
        # another callback runs during `fit`.
        self._ungate = gate_train_step(model, self._recorder)
        if self.watch_gradient_norm:
            self._grad_hook = GradNormHook(model.optimizer, self._recorder)
            self._grad_hook.install()
        _rate.retrace_train_function(model)
        # Validation must not write into the ring: the test step is traced
        # anew, inside `on_test_begin`, with recording off.
        set_attr(model, "test_function", None)

    def _abandon(self) -> None:
        """Puts back what this detector installed (a later `fit` found it
        still in place: the `fit` it was installed for raised)."""
        self._uninstall()

    def _uninstall(self) -> None:
        if self._recorder is None:
            return
        model = self._model
        set_attr(model, "_loss_tracker", self._saved_tracker)
        self._ungate()
        if self._grad_hook is not None:
            self._grad_hook.uninstall()
            self._grad_hook = None
        # The compiled steps refer to the recorder: the next `fit` traces anew.
        set_attr(model, "train_function", None)
        set_attr(model, "test_function", None)
        self._recorder = None

    def _take_snapshot(
        self, step: int, snapshot: _WeightsSnapshot | None = None
    ) -> bool:
        """Replaces the snapshot; False (and no change) if a value is not finite."""
        if snapshot is None:
            # `_model`: the snapshot reads the live values (no JAX state sync).
            snapshot = _WeightsSnapshot(self._model)
        if not snapshot.has_variables:
            return True
        if not snapshot.all_finite():
            return False
        self._snapshot = snapshot
        self._snapshot_step = step
        self.snapshot_nbytes = snapshot.nbytes()
        self._snapshot_time = time.perf_counter()
        return True

    def _start_snapshot(self) -> bool:
        """Starts copying the live state to the host (JAX, mid-epoch).

        The copy is started together with the copy of the loss ring that the
        next read collects: when that read finds every loss up to this point
        healthy, `_commit_snapshot` makes it the snapshot, so the host never
        waits for the device to take one. False where there is no live state
        to copy (other backends: their snapshots are read at once).
        """
        model = self._model
        if not model.built:
            return False
        snapshot = _WeightsSnapshot(model, capture=False)
        variables = snapshot.variables()
        live = _live.live_arrays(model, variables)
        if live is None:
            return False
        self._pending_snapshot = (snapshot, variables, _live.PendingRead(live))
        self._snapshot_time = time.perf_counter()
        return True

    def _commit_snapshot(self, step: int) -> bool:
        """The started snapshot becomes the snapshot of `step` (see above)."""
        snapshot, variables, read = self._pending_snapshot
        self._pending_snapshot = None
        snapshot.set_values(variables, read.result())
        return self._take_snapshot(step, snapshot)

    # Keras hooks -----------------------------------------------------------

    def _check_lowerable(self) -> None:
        """Refuses a rollback that could not lower the rate in effect.

        Run when the first epoch begins, once every callback's
        `on_train_begin` has run (a `WarmupScheduler` or `OneCycleScheduler`
        listed after this callback installs a rate it can lower).
        """
        optimizer = self._model.optimizer
        self._scale_var = _rate.scale_variable(optimizer)
        if self.action == "rollback" and self._scale_var is None:
            self._uninstall()
            raise ValueError(
                'DivergenceDetector(action="rollback") must lower the learning '
                "rate, and cannot: " + _rate.cannot_scale_message(optimizer)
            )

    def _restore_snapshot(self, *, lower: bool = False) -> None:
        """Restores the snapshot, but not the learning rate it was taken at.

        The snapshot holds the rate's variable too. A rollback lowers the
        rate in effect now (a cut made since, or a rate another callback
        set, stays the base of the next cut). A stop (`lower=True`) leaves
        the lower of the two: a cut made since the snapshot survives, and a
        rate raised since (the spike that diverged) goes back.
        """
        scale_var = self._scale_var
        kept = None
        if scale_var is not None:
            kept = np.array(keras.ops.convert_to_numpy(scale_var.value))
        self._snapshot.restore_variables()
        if kept is not None:
            if lower:
                restored = keras.ops.convert_to_numpy(scale_var.value)
                kept = np.minimum(kept, restored).astype(kept.dtype)
            scale_var.assign(kept)

    def on_epoch_begin(self, epoch, logs=None):
        if self._start_snapshot_due:
            self._start_snapshot_due = False
            self._check_lowerable()
            self._take_snapshot(self._consumed)
            self._late_snapshot_due = self._snapshot is None
        self._epoch = epoch
        self._epoch_events = 0
        # Sums and counts of the epoch's finite per-step losses, and of
        # those since its last event (`_mend_epoch_loss`).
        self._epoch_tally = [0.0, 0]
        self._since_event = [0.0, 0]
        self._epoch_start = self._consumed
        self._epoch_read = False

    def on_train_batch_begin(self, batch, logs=None):
        self._batches += 1
        if self._stopped:
            return
        step = self._epoch_start + int(batch)
        if self._late_snapshot_due and self._model.built:
            # TensorFlow builds a model without an `Input` while tracing its
            # first step, after `fit` began: without this, the first
            # snapshot would wait for a healthy read, and an early NaN
            # would find nothing to roll back to. (Taken after the first
            # step, once: a copy holding NaN or Inf is refused, and is not
            # tried again at every step.)
            self._late_snapshot_due = False
            self._take_snapshot(step)
        if step >= self._next_check:
            self._check(step)

    def on_test_begin(self, logs=None):
        if self._in_fit and not self._epoch_read:
            # Validation after the epoch: read the epoch's last steps first,
            # so that a recovery happens before the model is evaluated and
            # the `val_` figures describe the restored model.
            self._end_of_epoch()
        if self._recorder is not None:
            self._recorder.recording = False

    def on_test_end(self, logs=None):
        if self._recorder is not None:
            self._recorder.recording = True

    def on_epoch_end(self, epoch, logs=None):
        if not self._epoch_read:
            self._end_of_epoch()
        self._epochs_ended += 1
        self._val_seen = self._val_seen or (logs is not None and "val_loss" in logs)
        if (
            self.monitor_val
            and not self._stopped
            and logs is not None
            and "val_loss" in logs
        ):
            event = self._val_watch.update([float(logs["val_loss"])])
            if event is not None:
                if self._val_snapshot is not None:
                    # Back to the end of the last epoch with a healthy
                    # `val_loss`: the snapshots since may be as bad.
                    self._snapshot = self._val_snapshot
                    self._snapshot_step = self._val_snapshot_step
                self._handle(event, source="val_loss")
            elif not self._epoch_events:
                snapshot = _WeightsSnapshot(self._model)
                if snapshot.has_variables and snapshot.all_finite():
                    self._val_snapshot = snapshot
                    self._val_snapshot_step = self._consumed
        if logs is not None:
            self._mend_epoch_loss(logs)
            logs["divergence_events"] = self._epoch_events

    def on_train_end(self, logs=None):
        self._in_fit = False
        if self.monitor_val and self._epochs_ended and not self._val_seen:
            text = (
                "DivergenceDetector(monitor_val=True) found no `val_loss` in the "
                f"logs of the {self._epochs_ended} epoch(s) of this fit (no "
                "validation data?): only the training loss was watched."
            )
            logger.warning(text)
            warnings.warn(text, stacklevel=2)
        if self._stopped and self._restore_due:
            # An execution ran after the stop was requested and no epoch end
            # has restored the snapshot since. (Once restored, the weights
            # are left alone: an `EarlyStopping(restore_best_weights=True)`
            # earlier in the list may have put its best weights back since.)
            self._restore_due = False
            self.model  # noqa: B018  (syncs the JAX state)
            self._restore_snapshot(lower=True)
        self._uninstall()

    def _end_of_epoch(self) -> None:
        """The epoch's last read, and a check that the weights are finite.

        Mid-epoch, weights are checked when a snapshot is taken; the steps
        after the last snapshot of the epoch are checked here: on some
        kernels a NaN batch poisons the weights while every loss stays
        finite (a ReLU network whose NaN pre-activations clip to zero).
        """
        self._epoch_read = True
        if self._stopped:
            if self._restore_due:
                # Stopped mid-epoch: the execution in flight ran on from the
                # restored weights. Restore them again before validation and
                # the `on_epoch_end` callbacks (`ModelCheckpoint`,
                # `EarlyStopping`) see the model.
                self._restore_due = False
                self.model  # noqa: B018  (syncs the JAX state)
                self._restore_snapshot(lower=True)
            return
        events = len(self.events)
        snapshot_time = self._snapshot_time
        self._check()
        if self._stopped or len(self.events) > events:
            return
        if self._consumed == 0 and self._batches and not self._warned_blind:
            self._warned_blind = True
            text = (
                "DivergenceDetector has seen no loss in this epoch: the model's "
                "`train_step` does not update the model's loss metric (the one "
                "named 'loss' in `model.metrics`, which Keras's own `train_step` "
                "updates; a custom one must call its `update_state(loss)`), so "
                "only the weights are checked, at the end of each epoch."
            )
            logger.warning(text)
            warnings.warn(text, stacklevel=2)
        if self._snapshot_time != snapshot_time:
            return  # a snapshot was just taken: it checked the weights
        if not _all_finite(self.model):
            event = DivergenceEvent(
                max(self._consumed - 1, 0),
                "nonfinite_weights",
                float(self._watch.smoothed),
                float(self._watch.best),
            )
            self._handle(event, source="loss", total=self._consumed)

    # Reading and acting ----------------------------------------------------

    def _read(self, *, now: bool) -> tuple[np.ndarray, int, int]:
        """The losses not read yet: ``(losses, total, lost)``.

        Mid-epoch on JAX, the ring is copied to the host without waiting for
        the device (`keras_lr._live.PendingRead`) and handed over at the next
        read, unless `now`: then the host waits for the current values.
        """
        rec = self._recorder
        rec.last_grad_norms = None
        live = self._ring_live.arrays()
        if live is None:
            self._pending_read = None
            _ = self.model  # the variables are current (syncs JAX if needed)
            return rec.read_since(self._consumed)
        if now:
            self._pending_read = None
            return rec.read_since(self._consumed, values=_live.fetch(live))
        pending, self._pending_read = self._pending_read, _live.PendingRead(live)
        if pending is None:
            return np.zeros(0), self._consumed, 0
        return rec.read_since(self._consumed, values=pending.result())

    def _has_live_state(self) -> bool:
        return self._ring_live.arrays() is not None

    def _snapshot_due(self, step: int) -> bool:
        if self._snapshot is None:
            return True
        if step - self._snapshot_step < self._snap_every:
            return False
        # Fast steps (an accelerator): at most one snapshot per
        # `_SNAPSHOT_SECONDS`, unless `snapshot_every` was given.
        return (
            self.snapshot_every is not None
            or time.perf_counter() - self._snapshot_time >= _SNAPSHOT_SECONDS
        )

    def _check(self, step: int | None = None) -> None:
        due = step is None or self._snapshot_due(step)
        # Mid-epoch on JAX, snapshots spaced in time (no `snapshot_every`)
        # are copied asynchronously (below): the read that precedes one need
        # not wait for the device either. An explicit `snapshot_every` gets
        # its snapshots at once, at the steps it names.
        live = (
            step is not None and self.snapshot_every is None and self._has_live_state()
        )
        losses, total, lost = self._read(now=due and not live)
        self._next_check = (step if step is not None else total) + self._every
        event = None
        grads = self._recorder.last_grad_norms if self._recorder else None
        if lost:
            self._watch.rebase(total - losses.size)
            if self._grad_watch is not None:
                self._grad_watch.rebase(total - losses.size)
        if losses.size:
            start = self._watch.step
            event = self._watch.update(losses)
            rest = losses
            # A harmless non-finite step (its update skipped): note it and
            # feed the losses after it.
            while event is not None and self._skips_harmlessly(event):
                self._count_losses(rest[: event.step + 1 - start])
                self._since_event = [0.0, 0]
                self._record_skip(event)
                rest = rest[event.step + 1 - start :]
                start = event.step + 1
                event = self._watch.update(rest) if rest.size else None
            self._count_losses(
                rest if event is None else rest[: event.step + 1 - start]
            )
        source = "loss"
        if self._grad_watch is not None and grads is not None and grads.size:
            grad_event = self._update_grad_watch(grads, total - losses.size)
            if grad_event is not None and (
                event is None or grad_event.step < event.step
            ):
                event, source = grad_event, "gradient_norm"
        self._consumed = total
        # Snapshots only of a steady state: no test in violation, and no
        # rise over best_ratio x the best that the tests have yet to confirm.
        healthy = (
            event is None
            and self._watch.steady
            and not self._watch.in_grace
            and (self._grad_watch is None or self._grad_watch.healthy)
            and bool(losses.size)
        )
        # A snapshot whose copy holds NaN or Inf although the losses looked
        # fine is an event.
        finite = True
        if self._pending_snapshot is not None:
            if live and healthy:
                finite = self._commit_snapshot(total)
            else:
                self._pending_snapshot = None
        if (
            finite
            and due
            and healthy
            and (
                self._snapshot is None
                or total - self._snapshot_step >= self._snap_every
            )
            and not (live and self._start_snapshot())
        ):
            finite = self._take_snapshot(total)
        if not finite:
            event = DivergenceEvent(
                total - 1, "nonfinite_weights", float(losses[-1]), self._watch.smoothed
            )
        if event is not None:
            # Steps read late (JAX) ran on from the diverged state: the
            # rollback discards them with it.
            self._consumed = total = max(total, step or 0)
            self._handle(event, source=source, total=total)
        elif (
            self._pending_restore is not None
            and self._watch.healthy
            and total >= self._pending_restore["at"]
        ):
            self._restore_rate(total)

    def _update_grad_watch(
        self, grads: np.ndarray, first: int
    ) -> DivergenceEvent | None:
        """Feeds the gradient norms of steps ``first, first + 1, ...``.

        A step that a loss scaler skipped (recorded as -1) is not fed: its
        update was not applied.
        """
        watch = self._grad_watch
        watch.step = first
        for value in grads:
            if value == SKIPPED:
                watch.step += 1
                continue
            event = watch.update([value])
            if event is not None:
                return event
        return None

    def _restore_rate(self, step: int) -> None:
        """Undoes a transient cut: the rate goes back to its value before it."""
        pending, self._pending_restore = self._pending_restore, None
        model = self.model  # on JAX, attaches the current state
        variable = self._scale_var
        now = np.asarray(keras.ops.convert_to_numpy(variable.value))
        if np.array_equal(now, pending["after"]):
            variable.assign(pending["before"])
        else:
            # Something else changed the rate since the cut: undo the cut only.
            ratio = float(pending["before"]) / float(pending["after"])
            _rate.scale_rate(model.optimizer, ratio)
        self._retrace_if_needed()
        self._last_rate_change = step
        record = {
            "epoch": int(getattr(self, "_epoch", 0)),
            "step": int(step),
            "learning_rate": _rate.current_rate(model.optimizer),
            "healthy_steps": int(step - pending["cut_step"]),
        }
        self.rate_restorations.append(record)
        text = (
            f"DivergenceDetector: {record['healthy_steps']} healthy steps since the "
            f"rollback at step {pending['cut_step']}: learning rate restored to "
            f"{record['learning_rate']:.3g} at step {step}."
        )
        if self.verbose:
            logger.warning(text)
        else:
            logger.info(text)

    def _retrace_if_needed(self) -> None:
        # On JAX a factor outside the optimizer's state (a scheduler's
        # `Scaled`, or the user's untracked one) is a constant of the
        # compiled step: trace it anew for the cut to take effect.
        _rate.retrace_if_untracked(self.model, self._scale_var)

    def _handle(
        self, event: DivergenceEvent, *, source: str, total: int | None = None
    ) -> None:
        model = self.model  # on JAX, attaches the current state
        optimizer = model.optimizer
        # A copy in flight holds steps from before the event: drop it.
        self._pending_read = None
        self._pending_snapshot = None
        record = self._event_record(
            event, source, self._snapshot_step if self._snapshot else None
        )
        action = self.action
        message = ""
        # Another callback may have replaced the rate since `fit` began (a
        # scheduler installing its schedule): lower the one in effect now.
        scale_var = _rate.scale_variable(optimizer)
        if scale_var is not None:
            self._scale_var = scale_var
        # No healthy stretch at this rate yet: training diverged before the
        # first snapshot after the start (unless one step went non-finite
        # after losses that had not risen: a bad batch), or again from the
        # same snapshot. A bad batch again from the same snapshot counts
        # only when it comes within `_OVERFLOW_STEPS` steps of the rollback
        # (a rate that overflows at once); later, after healthy steps, it is
        # the data again (a NaN sample met once per epoch), not the rate.
        bad_batch = self._lone_nonfinite(event, source)
        soon = (
            self._last_rate_change is not None
            and record["step"] - self._last_rate_change <= _OVERFLOW_STEPS
        )
        systematic = self._snapshot is not None and (
            (self._snapshot is self._last_restored and (soon or not bad_batch))
            or (self._snapshot_step == 0 and not bad_batch)
        )
        factor = self.repeat_factor if systematic else self.factor
        record["rate_never_healthy"] = bool(systematic)
        record["bad_batch"] = bool(bad_batch and not systematic)
        if action == "rollback":
            lr_after = record["learning_rate"] * factor
            if self.recoveries >= self.max_recoveries:
                action = "stop"
                message = (
                    f"gave up after {self.recoveries} recoveries "
                    f"(max_recoveries={self.max_recoveries})"
                )
            elif self.min_lr is not None and lr_after < self.min_lr:
                action = "stop"
                message = (
                    f"the learning rate would fall to {lr_after:.3g}, "
                    f"below min_lr={self.min_lr:.3g}"
                )
            elif self._snapshot is None:
                action = "stop"
                message = "no healthy snapshot to roll back to"
            elif scale_var is None:
                action = "stop"
                message = (
                    "the learning rate in effect cannot be lowered: "
                    + _rate.cannot_scale_message(optimizer)
                )
        record["action"] = action
        if self._snapshot is not None:
            self._restore_snapshot(lower=action != "rollback")
        model.reset_metrics()
        if action == "rollback":
            self.recoveries += 1
            self._last_restored = self._snapshot
            step = self._consumed if total is None else total
            before = np.array(keras.ops.convert_to_numpy(self._scale_var.value))
            _rate.scale_rate(optimizer, factor)
            self._retrace_if_needed()
            record["learning_rate_after"] = _rate.current_rate(optimizer)
            quiet = self._pending_restore is None and (
                self._last_rate_change is None
                or step - self._last_rate_change >= (self._restore_after or 0)
            )
            self._pending_restore = None
            if self._restore_after is not None and not systematic and quiet:
                self._pending_restore = {
                    "at": step + self._restore_after,
                    "cut_step": step,
                    "before": before,
                    "after": np.array(
                        keras.ops.convert_to_numpy(self._scale_var.value)
                    ),
                }
            self._last_rate_change = step
            self._watch.rebase(step)
            if self._grad_watch is not None:
                self._grad_watch.rebase(step)
            self._val_watch.reset()
        else:
            record["learning_rate_after"] = _rate.current_rate(optimizer)
        self.events.append(record)
        self._epoch_events += 1
        self._since_event = [0.0, 0]
        self._log(record, message)
        if action == "rollback":
            return
        self._stopped = True
        # Mid-epoch, the execution about to run trains on from the restored
        # weights: the epoch's end restores them again.
        self._restore_due = self._snapshot is not None and not self._epoch_read
        self._model.stop_training = True
        if action == "raise":
            self._uninstall()
            # `fit` ends on this error, and Keras calls no `on_train_end`:
            # a keras_lr scheduler's schedule, installed for this `fit`, goes
            # too, so that the optimizer has the user's rate back.
            from keras_lr.callbacks.schedulers import _uninstall as _unschedule

            _unschedule(base_optimizer(model.optimizer))
            set_attr(model, "train_function", None)
            raise DivergenceError(self._describe(record, message))

    def _count_losses(self, losses: np.ndarray) -> None:
        """Adds the finite ones of the epoch's per-step losses read."""
        finite = losses[np.isfinite(losses)]
        for tally in (self._epoch_tally, self._since_event):
            tally[0] += float(np.sum(finite))
            tally[1] += int(finite.size)

    def _mend_epoch_loss(self, logs: dict) -> None:
        """A finite ``loss`` for an epoch whose mean a handled step made NaN.

        Keras's running mean takes every step of the epoch, the NaN one
        included, when the detector reads it at the epoch's end. The
        epoch's ``loss`` is then the mean of its finite per-step losses
        after the last event (as the metrics reset by a mid-epoch event
        give it), or of all of them when none came after it.
        """
        loss = logs.get("loss")
        if not self._epoch_events or loss is None:
            return
        try:
            if math.isfinite(float(loss)):
                return
        except (TypeError, ValueError):
            return
        for total, count in (self._since_event, self._epoch_tally):
            if count:
                logs["loss"] = total / count
                return

    def _skips_harmlessly(self, event: DivergenceEvent) -> bool:
        """Whether a rollback would undo nothing: a lone non-finite loss
        after which every variable is still finite.

        A `LossScaleOptimizer` skips a step whose gradients are not finite,
        so a NaN batch leaves the weights as they were (without one, its
        NaN gradients would have reached them). Only under
        ``action="rollback"``, with no other non-finite loss in the `window`
        steps before it: non-finite losses in a row (a rate overflowing the
        float16 forward pass while the optimizer skips every update) stall
        training, and go to a rollback. Whether the loss had risen before
        does not matter here: the weights are what they were before the
        step, and a rise goes on to fire the other tests.
        """
        if self.action != "rollback" or event.reason != "nonfinite":
            return False
        last, self._last_nonfinite = self._last_nonfinite, event.step
        if last is not None and event.step - last <= self.window:
            return False
        return _all_finite(self.model)

    def _event_record(
        self, event: DivergenceEvent, source: str, restored_step: int | None
    ) -> dict[str, Any]:
        """The fields of an `events` entry known when the event is read."""
        return {
            "epoch": int(getattr(self, "_epoch", 0)),
            "step": (
                int(event.step)
                if source in ("loss", "gradient_norm")
                else int(self._consumed)
            ),
            "source": source,
            "reason": event.reason,
            "loss": float(event.loss),
            "baseline": float(event.baseline),
            "score": float(event.score),
            "restored_step": restored_step,
            "learning_rate": _rate.current_rate(self.model.optimizer),
        }

    def _record_skip(self, event: DivergenceEvent) -> None:
        """Records a harmless non-finite loss: no rollback, no rate cut.

        The epoch's metrics are reset, as after a rollback, so that its logs
        describe the steps after the event, not a NaN mean.
        """
        model = self.model
        record = self._event_record(event, "loss", None)
        record.update(
            rate_never_healthy=False,
            bad_batch=True,
            action="skipped",
            learning_rate_after=record["learning_rate"],
        )
        model.reset_metrics()
        self.events.append(record)
        self._epoch_events += 1
        self._log(record, "")

    def _lone_nonfinite(self, event: DivergenceEvent, source: str) -> bool:
        """Whether `event` is a non-finite step after losses that had not risen.

        A NaN or Inf loss, gradient norm or weight is then one bad batch (or
        a numerical accident), not a sign that the rate is wrong: a rate
        too high from the first step raises the loss (a blow-up, spikes, a
        climb) before, if ever, it turns non-finite. "Not risen": no test
        in violation at the last finite loss, and, for a non-finite loss or
        gradient norm, the smoothed loss at or below its value at the first
        step (true too when no finite loss was read: a non-finite loss at
        step 0 comes before any update). Non-finite weights under finite
        losses need no test on the level: the losses after the poisoned
        step are a dead network's (on TensorFlow a NaN input batch through
        ReLUs leaves every loss finite, and the network's constant
        prediction scores the chance level, which may lie above a lucky
        first batch's loss); a rate that overflowed the weights would have
        blown the loss up, and fired a test, first.
        """
        if source not in ("loss", "gradient_norm") or event.reason not in (
            "nonfinite",
            "nonfinite_weights",
        ):
            return False
        watch = self._watch
        if event.reason == "nonfinite_weights":
            return watch.healthy
        return watch.healthy and not watch.smoothed > watch.reference

    def _describe(self, record: dict[str, Any], message: str) -> str:
        what = {
            "nonfinite": "non-finite loss",
            "nonfinite_weights": "non-finite weights",
            "above_best": "smoothed loss over best_ratio x its best",
            "spike": "loss spike over spike_ratio x the smoothed loss",
            "zscore": "robust z-score of the log-loss over z_threshold",
        }[record["reason"]]
        where = "val_loss" if record["source"] == "val_loss" else "loss"
        if record["source"] == "gradient_norm":
            where = "gradient norm"
            what = {
                "nonfinite": "non-finite gradient norm",
                "spike": "gradient-norm spike over gradient_spike_ratio x its "
                "smoothed value",
                "zscore": "robust z-score of the log gradient norm over z_threshold",
            }[record["reason"]]
        figures = f"{where}={record['loss']:.4g}, baseline={record['baseline']:.4g}"
        if record["reason"] == "above_best" and math.isfinite(record["score"]):
            # The test is on the smoothed loss; `loss` is the step's own.
            figures += f", smoothed loss {record['score']:.3g}x the baseline"
        text = (
            f"DivergenceDetector: {what} ({figures}) at step {record['step']} "
            f"(epoch {record['epoch'] + 1}), learning rate "
            f"{record['learning_rate']:.3g}."
        )
        restored = record["restored_step"]
        restored_text = (
            f"weights of step {restored} restored"
            if restored is not None
            else "no snapshot to restore"
        )
        if record["action"] == "rollback":
            text += (
                f" Rolled back ({restored_text}) and lowered the learning rate "
                f"to {record['learning_rate_after']:.3g} "
                f"(recovery {self.recoveries} of {self.max_recoveries})."
            )
            if record.get("rate_never_healthy"):
                text += (
                    " The rate never trained healthily (no healthy snapshot "
                    "since it was set), so it was cut by repeat_factor: it is "
                    "too high, and `keras_lr.find_best_learning_rate(model, "
                    "data)` can find one that trains."
                )
            elif record.get("bad_batch"):
                text += " " + _BAD_BATCH
        elif record["action"] == "skipped":
            text += (
                " Every weight is still finite (the step's update was skipped, "
                "as a LossScaleOptimizer does with non-finite gradients): "
                "nothing to roll back, training goes on at the same rate. " + _BAD_BATCH
            )
        elif record["action"] == "stop":
            text += f" Training stopped, {restored_text}."
            if message:
                text += f" Reason: {message}."
            if record.get("bad_batch"):
                text += " " + _BAD_BATCH
            else:
                text += " Try a learning rate about 10x lower."
        else:
            text += f" {restored_text.capitalize()}; raising."
        return text

    def _log(self, record: dict[str, Any], message: str) -> None:
        text = self._describe(record, message)
        if self.verbose:
            logger.warning(text)
        else:
            logger.info(text)


def _all_finite(model: keras.Model) -> bool:
    """Whether the model's and its optimizer's float variables are finite."""
    return variables_finite(_WeightsSnapshot(model, capture=False).variables())


def _ratio(name: str, value: Any) -> float | None:
    if value is None:
        return None
    value = _validate.check_real(name, value)
    if not value > 1.0 or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be > 1. Received: {name}={value}")
    return value
