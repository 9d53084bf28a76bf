"""`Scaled`: a schedule times a factor that can be changed during training.

``lr(step) = schedule(step) * factor``, where `factor` is a float32
`keras.Variable`. Callbacks lower the rate of a scheduled optimizer by
assigning it (`keras_lr.callbacks.ReduceLROnPlateau`, the divergence
detector): the compiled train step reads the variable, so the change takes
effect at the next step without retracing.

On TensorFlow and PyTorch the train step reads the variable directly. On
JAX the compiled step sees only the state it is given (the model's,
the optimizer's and the metrics' variables); any other variable is baked in
as a constant when the step is traced. `track_scaled(optimizer)` therefore
adds the factor variables of the optimizer's schedule to the optimizer's
tracked variables for the duration of `fit`, and `untrack_scaled` takes them
out again, so a saved optimizer keeps the standard list of variables. The
keras_lr callbacks call both; a callback of your own that assigns `factor`
should too (on JAX it must also assign between steps, after reading
`self.model`, which syncs the training state).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr import _validate
from keras_lr._state import base_optimizer, set_attr
from keras_lr.schedules import _base

__all__ = ["Scaled", "find_scaled", "track_scaled", "untrack_scaled"]


@keras.saving.register_keras_serializable(package="keras_lr")
class Scaled(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step) * factor`, with `factor` a variable.

    Args:
        schedule: a `LearningRateSchedule` or a constant rate.
        factor: the starting factor, finite and >= 0.

    Attributes:
        factor: a float32 scalar `keras.Variable`; assign it to rescale the
            rate (``scaled.factor.assign(0.5)``).

    `get_config` stores the factor's current value, so a saved model
    resumes with the lowered rate.

    Example:

    >>> from keras_lr.schedules import OneCycle
    >>> s = Scaled(OneCycle(0.1, 100))
    >>> before = float(s(30))
    >>> _ = s.factor.assign(0.5)
    >>> round(float(s(30)) / before, 6)
    0.5
    """

    def __init__(self, schedule: Any, factor: float = 1.0):
        self.schedule = _base.check_schedule_or_lr("schedule", schedule)
        factor = _validate.check_real("factor", factor)
        _validate.check_non_negative("factor", factor)
        _validate.check_finite("factor", factor)
        self.factor = keras.Variable(
            factor, dtype="float32", trainable=False, name="lr_factor"
        )

    def __call__(self, step):
        value = _base.evaluate(self.schedule, step)
        return value * ops.cast(self.factor, "float32")

    def get_config(self) -> dict:
        return {
            "schedule": _base.serialize(self.schedule),
            "factor": float(ops.convert_to_numpy(self.factor.value)),
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["schedule"] = _base.deserialize(config["schedule"])
        return cls(**config)


def find_scaled(schedule: Any) -> list[Scaled]:
    """Every `Scaled` in a schedule, nested ones included (outermost first).

    Example:

    >>> from keras_lr.schedules import Join, Warmup
    >>> inner = Scaled(0.1)
    >>> len(find_scaled(Scaled(Warmup(Join([inner, 0.01], [5]), 2))))
    2
    """
    found: list[Scaled] = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
            return
        if not _base.is_schedule(obj):
            return
        if isinstance(obj, Scaled):
            found.append(obj)
        for value in vars(obj).values():
            walk(value)

    walk(schedule)
    return found


def _tracked_ids(optimizer: Any) -> set[int]:
    return set(vars(optimizer).get("_keras_lr_factor_ids", ()))


def _set_tracker(optimizer: Any, fn) -> None:
    tracker = optimizer._tracker
    locked = tracker.locked
    tracker.unlock()
    try:
        fn()
    finally:
        if locked:
            tracker.lock()


def outermost_scaled(schedule: Any) -> Scaled | None:
    """The `Scaled` that scales the whole of `schedule`, or None.

    That is `schedule` itself or a `Scaled` reached through schedules that
    wrap exactly one schedule (``Warmup(Scaled(f))``, which
    `keras_lr.callbacks.WarmupScheduler` installs, or ``Shifted``). A
    `Scaled` inside a list of schedules (``Join([Scaled(f), g])``) scales
    only a part of the rate: lowering it would leave the rest as it is.
    """
    obj, seen = schedule, set()
    while _base.is_schedule(obj) and id(obj) not in seen:
        if isinstance(obj, Scaled):
            return obj
        seen.add(id(obj))
        children = []
        for value in vars(obj).values():
            if isinstance(value, (list, tuple)) and any(
                _base.is_schedule(v) for v in value
            ):
                return None
            if _base.is_schedule(value):
                children.append(value)
        if len(children) != 1:
            return None
        obj = children[0]
    return None


def track_scaled(optimizer: Any) -> list[Scaled]:
    """Makes the optimizer track the factor variables of its `Scaled` schedules.

    Idempotent. While tracked, the factor is part of ``optimizer.variables``,
    which JAX's compiled step takes as state: assigning the factor between
    steps changes the rate the compiled step uses. The optimizer's own
    `save_own_variables`/`load_own_variables` skip the factors, and so do
    those of the `LossScaleOptimizer` it is given in (which saves its inner
    optimizer's variables among its own), so a checkpoint written meanwhile
    has the standard variable list. Call `untrack_scaled` when done (the
    keras_lr callbacks do both around `fit`).

    Args:
        optimizer: a Keras optimizer (a `LossScaleOptimizer` is unwrapped;
            pass the outer one, the model's, for its checkpoints to skip
            the factors too).

    Returns:
        The `Scaled` schedules found.

    Example:

    >>> opt = keras.optimizers.SGD(Scaled(0.1))
    >>> n = len(opt.variables)
    >>> _ = track_scaled(opt); _ = track_scaled(opt)
    >>> len(opt.variables) - n
    1
    >>> untrack_scaled(opt)
    >>> len(opt.variables) == n
    True
    """
    opt = base_optimizer(optimizer)
    scaled = find_scaled(opt._learning_rate)
    ids = _tracked_ids(opt)
    present = {id(v) for v in opt.variables}
    new = [s.factor for s in scaled if id(s.factor) not in present]
    if new:

        def add():
            for variable in new:
                opt._track_variable(variable)

        _set_tracker(opt, add)
        ids |= {id(v) for v in new}
        set_attr(opt, "_keras_lr_factor_ids", frozenset(ids))
        _install_save_filters(opt, opt)
    if ids:
        # A `LossScaleOptimizer` lists (and saves) its inner optimizer's
        # variables after its own: it must skip the factors too, or its
        # checkpoint entry has one more variable than a fresh optimizer's,
        # and Keras skips loading all of them (the loss scale among them).
        wrappers = vars(opt).get("_keras_lr_filtered", ())
        for wrapper in _wrappers(optimizer):
            if all(w is not wrapper for w in wrappers):
                _install_save_filters(wrapper, opt)
                wrappers = (*wrappers, wrapper)
        set_attr(opt, "_keras_lr_filtered", wrappers)
    return scaled


def untrack_scaled(optimizer: Any) -> None:
    """Undoes `track_scaled`: the optimizer's variable list is standard again.

    Example:

    >>> opt = keras.optimizers.SGD(Scaled(0.1))
    >>> n = len(opt.variables)
    >>> _ = track_scaled(opt)
    >>> untrack_scaled(opt)
    >>> len(opt.variables) == n
    True
    """
    opt = base_optimizer(optimizer)
    ids = _tracked_ids(opt)
    if not ids:
        return
    variables = [v for v in opt.variables if id(v) in ids]

    def remove():
        for variable in variables:
            opt._untrack_variable(variable)

    _set_tracker(opt, remove)
    for target in (*vars(opt).get("_keras_lr_filtered", ()), opt):
        for name in ("save_own_variables", "load_own_variables"):
            if name in vars(target):
                object.__delattr__(target, name)
    for name in ("_keras_lr_factor_ids", "_keras_lr_filtered"):
        if name in vars(opt):
            object.__delattr__(opt, name)


def _wrappers(optimizer: Any) -> list[Any]:
    """The optimizers wrapping the base one (a `LossScaleOptimizer`)."""
    chain = []
    while hasattr(optimizer, "inner_optimizer"):
        chain.append(optimizer)
        optimizer = optimizer.inner_optimizer
    return chain


def _own_variables(target: Any, opt: Any) -> list[Any]:
    ids = _tracked_ids(opt)
    return [v for v in target.variables if id(v) not in ids]


def _install_save_filters(target: Any, opt: Any) -> None:
    """Makes `target` save and load its variables but the factors `opt` tracks."""
    if "save_own_variables" in vars(target):
        return

    def save_own_variables(store):
        for i, variable in enumerate(_own_variables(target, opt)):
            store[str(i)] = np.asarray(ops.convert_to_numpy(variable.value))

    def load_own_variables(store):
        own = _own_variables(target, opt)
        if len(store.keys()) != len(own):
            type(target).load_own_variables(target, store)  # Keras's warning path
            return
        for i, variable in enumerate(own):
            variable.assign(store[str(i)])

    set_attr(target, "save_own_variables", save_own_variables)
    set_attr(target, "load_own_variables", load_own_variables)
