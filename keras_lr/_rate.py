"""Reading and lowering an optimizer's learning rate.

A Keras optimizer holds its rate in one of two forms:

- a float, which Keras keeps as a variable (``optimizer._learning_rate``)
  that can be assigned during training;
- a `keras.optimizers.schedules.LearningRateSchedule`, a function of the
  iteration count. A schedule can only be lowered if it exposes a
  multiplier: the contract of `keras_lr.schedules.Scaled` is an attribute
  ``factor`` that is a Keras variable, with ``rate(step) = factor *
  inner(step)``.

`scale_variable` finds the variable to multiply in either case;
`scale_rate` multiplies it; `current_rate` reads the rate in effect at the
optimizer's current iteration. Everything that changes a rate during
training in keras_lr goes through here, so every caller refuses the same
things with the same message.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_lr import _validate
from keras_lr._state import _MISSING, base_optimizer, set_attr

__all__ = [
    "can_scale",
    "current_rate",
    "rate_object",
    "scale_rate",
    "scale_variable",
]


def rate_object(optimizer: Any) -> Any:
    """The optimizer's rate object: a variable or a schedule.

    Example:

    >>> opt = keras.optimizers.SGD(0.1)
    >>> type(rate_object(opt)).__name__
    'Variable'
    """
    return base_optimizer(optimizer)._learning_rate


def _is_variable(obj: Any) -> bool:
    return isinstance(obj, keras.Variable)


#: Set on the `Scaled` that a keras_lr scheduler callback installs for one
#: `fit`: the `Scaled` of the optimizer's own rate that scales the whole of
#: the schedule inside it (``WarmupScheduler`` around ``Scaled(f)``). A cut
#: lowers that one, so that it outlives the `fit` (and is saved with the
#: model) rather than going with the wrapper.
OWN_SCALED = "_keras_lr_own_scaled"


def own_scaled(schedule: Any) -> Any:
    """`schedule`, or the user's `Scaled` a scheduler's wrapper stands for."""
    own = getattr(schedule, OWN_SCALED, None)
    return schedule if own is None else own


def scale_variable(optimizer: Any) -> Any | None:
    """The variable whose value multiplies the rate, or None.

    A float rate is its own variable; a schedule with a variable ``factor``
    (the `keras_lr.schedules.Scaled` contract) gives its factor (for the
    wrapper a scheduler callback installs, the factor of the optimizer's own
    `Scaled` inside it, if any: see `OWN_SCALED`); any other schedule gives
    None: it cannot be lowered in place.

    Example:

    >>> opt = keras.optimizers.SGD(0.1)
    >>> scale_variable(opt) is opt._learning_rate
    True
    >>> sched = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5)
    >>> scale_variable(keras.optimizers.SGD(sched)) is None
    True
    """
    lr = rate_object(optimizer)
    if _is_variable(lr):
        return lr
    factor = getattr(own_scaled(lr), "factor", None)
    if _is_variable(factor):
        return factor
    return None


def can_scale(optimizer: Any) -> bool:
    """Whether `scale_rate` can lower this optimizer's rate."""
    return scale_variable(optimizer) is not None


def cannot_scale_message(optimizer: Any) -> str:
    lr = rate_object(optimizer)
    return (
        "The optimizer's learning rate is a schedule of type "
        f"{type(lr).__name__}, which keras_lr cannot lower during training. "
        "Wrap it as `keras_lr.schedules.Scaled(schedule)` (a schedule with a "
        "variable `factor`) or pass a float learning rate."
    )


def _value(variable: Any) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(variable.value)))


def schedule_step(optimizer: Any) -> int:
    """The step a learning-rate schedule is called with at the next update.

    Keras calls the schedule with the optimizer's raw step counter, which
    counts every batch; with ``gradient_accumulation_steps`` the public
    ``iterations`` counts only the applied updates (the raw count divided
    by the accumulation steps).

    Example:

    >>> opt = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)
    >>> schedule_step(opt)
    0
    """
    opt = base_optimizer(optimizer)
    counter = getattr(opt, "_iterations", None)
    if counter is None:
        counter = opt.iterations
    return int(np.asarray(keras.ops.convert_to_numpy(counter)))


def current_rate(optimizer: Any) -> float:
    """The learning rate in effect at the optimizer's current iteration.

    Example:

    >>> current_rate(keras.optimizers.Adam(0.5))
    0.5
    """
    lr = rate_object(optimizer)
    if _is_variable(lr):
        return _value(lr)
    if callable(lr):
        step = schedule_step(optimizer)
        return float(np.asarray(keras.ops.convert_to_numpy(lr(step))))
    return float(lr)


def scale_rate(optimizer: Any, factor: float) -> tuple[float, float]:
    """Multiplies the rate (or its schedule's ``factor``) by `factor`.

    Args:
        optimizer: a Keras optimizer (a `LossScaleOptimizer` is unwrapped).
        factor: a float > 0.

    Returns:
        The multiplier variable's value before and after.

    Raises:
        TypeError: if `factor` is not a float.
        ValueError: if `factor` is not > 0, or the rate cannot be scaled.

    Example:

    >>> opt = keras.optimizers.SGD(0.1)
    >>> scale_rate(opt, 0.5)
    (0.1, 0.05)
    >>> round(float(opt.learning_rate), 6)
    0.05
    """
    factor = _validate.check_real("factor", factor)
    _validate.check_positive("factor", factor)
    variable = scale_variable(optimizer)
    if variable is None:
        raise ValueError(cannot_scale_message(optimizer))
    before = _value(variable)
    after = float(np.float32(before * factor)) if before else 0.0
    variable.assign(
        np.asarray(after, dtype=keras.backend.standardize_dtype(variable.dtype))
    )
    return float(np.float32(before)), after


def is_tracked(optimizer: Any, variable: Any) -> bool:
    """Whether `variable` is part of the optimizer's state.

    A variable outside it is a constant of the compiled step on JAX: after
    assigning it, the train function must be traced again.
    """
    return any(v is variable for v in optimizer.variables)


def retrace_train_function(model: Any) -> None:
    """Makes `model.train_function` anew, traced with the current rate object.

    On TensorFlow and torch, ``make_train_function(force=True)`` builds a new
    function that is traced on its first call. Keras's JAX trainer instead
    passes the bound method ``model.train_step`` to `jax.jit`, and jax's
    trace cache matches a bound method of the same object (equal, though not
    identical) as long as the state's structure is unchanged: a new rate
    object (a sweep, a race candidate's schedule) would then train with the
    constants of an old trace. For the time of the call, a fresh function
    object stands in for ``train_step``, so that `jax.jit` traces anew; the
    jitted function keeps it, and the model's own attribute is put back.

    Under a JAX `keras.distribution`, `make_train_function` also fixes the
    output shardings of the state, one per variable that exists when it is
    called, and the `fit` that follows may still create variables (the
    compiled metrics, or the optimizer's slots, built from its first
    batch): it would then call a function made for a state of another
    structure, and fail. There the new function is made at its first call,
    with the shardings of the state it is called with.

    Args:
        model: a compiled Keras model.
    """
    if keras.backend.backend() != "jax":
        model.make_train_function(force=True)
        return
    if keras.distribution.distribution() is None:
        _trace_jax_train_function(model)
        return

    def train_function(state: Any, data: Any) -> Any:
        shardings = tuple([getattr(a, "sharding", None) for a in s] for s in state)
        _trace_jax_train_function(model, shardings)
        return model.train_function(state, data)

    set_attr(model, "train_function", train_function)


def _trace_jax_train_function(model: Any, shardings: Any = None) -> None:
    """`make_train_function(force=True)` through a fresh `train_step` object.

    Args:
        model: a compiled Keras model (JAX backend).
        shardings: the state's shardings, for Keras to use instead of those
            of the model's variables (which `fit` empties while it runs).
    """
    bound_step = model.train_step

    def train_step(state: Any, data: Any) -> Any:
        return bound_step(state, data)

    saved = {
        name: vars(model).get(name, _MISSING)
        for name in ("train_step", "_get_state_sharding_spec")
    }
    set_attr(model, "train_step", train_step)
    if shardings is not None:
        set_attr(model, "_get_state_sharding_spec", lambda: shardings)
    try:
        model.make_train_function(force=True)
    finally:
        for name, value in saved.items():
            set_attr(model, name, value)


def retrace_if_untracked(model: Any, variable: Any) -> None:
    """Retraces the train step on JAX when `variable` is not optimizer state.

    A rate factor outside ``optimizer.variables`` is a constant of JAX's
    compiled step: after it is assigned, the step must be traced again for
    the new value to be used. Other backends read it at every step.
    """
    if keras.backend.backend() != "jax":
        return
    if not is_tracked(base_optimizer(model.optimizer), variable):
        retrace_train_function(model)
