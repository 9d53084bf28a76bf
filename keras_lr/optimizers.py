"""SGD and Adam whose momentum (`beta_1`) may follow a schedule.

Keras optimizers read `momentum` and `beta_1` as Python floats when the train
step is traced, so they cannot change during training without retracing.
These subclasses of `keras.optimizers.SGD`, `Adam` and `AdamW` also accept a
`LearningRateSchedule` there (such as `OneCycle.momentum()` or
`CyclicLR.momentum()`); it is evaluated at the optimizer's iteration inside
the compiled step, on TensorFlow, JAX and PyTorch, for the 1cycle policy's
momentum cycling (Smith, arXiv:1803.09820). With a float they behave exactly
as the Keras class they extend.

Updates with a scheduled momentum ``m_t`` (per variable, gradient ``g``)::

    SGD:      v = m_t * v - lr * g;  w += v        (nesterov: w += m_t * v - lr * g)
    Adam:     Keras's Adam update with beta_1 = m_t at this step, bias
              correction ``1 - m_t ** t`` (as PyTorch does when 1cycle
              cycles ``betas[0]``)

The schedule is evaluated once per step (the first variable's update computes
it, the others reuse the tensor): a few scalar operations;
`benchmarks/schedule_throughput.py` measures the cost.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lr import _validate
from keras_lr.schedules import _base

__all__ = ["SGD", "Adam", "AdamW"]


def _check_learning_rate(value: Any) -> Any:
    """A float rate is checked as everywhere in keras_lr (a string or an int
    is a `TypeError`); a schedule or a callable goes to Keras as it is."""
    if _base.is_schedule(value) or callable(value):
        return value
    return _validate.check_learning_rate("learning_rate", value)


def _check_momentum(name: str, value: Any) -> Any:
    if _base.is_schedule(value):
        return value
    if callable(value):
        raise TypeError(
            f"Argument `{name}` must be a float or a "
            "keras.optimizers.schedules.LearningRateSchedule. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    value = _validate.check_real(name, value)
    return _validate.check_in_interval(name, value, 0.0, 1.0)


class _OncePerStep:
    """Evaluates the momentum schedule once per optimizer step, not per variable.

    `_backend_update_step` runs every variable's `update_step` (on every
    backend); the first `update_step` computes the schedule's value and the
    others reuse that tensor, within the same traced step.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        object.__setattr__(self, "_keras_lr_momentum_now", None)
        try:
            return super()._backend_update_step(
                grads, trainable_variables, learning_rate
            )
        finally:
            object.__setattr__(self, "_keras_lr_momentum_now", None)

    def _scheduled_value(self, schedule: Any, dtype: Any) -> Any:
        now = vars(self).get("_keras_lr_momentum_now")
        if now is None:
            # The step Keras calls the learning-rate schedule with: the raw
            # counter, which counts every batch (`iterations` counts only
            # the applied updates under `gradient_accumulation_steps`), so
            # that the rate and the momentum of a 1cycle stay in phase.
            step = getattr(self, "_iterations", None)
            if step is None:
                step = self.iterations
            now = ops.cast(schedule(step), "float32")
            object.__setattr__(self, "_keras_lr_momentum_now", now)
        return ops.cast(now, dtype)


def _momentum_config(config: dict, key: str, value: Any) -> dict:
    if _base.is_schedule(value):
        config[key] = keras.saving.serialize_keras_object(value)
    return config


def _momentum_from_config(config: dict, key: str) -> dict:
    config = dict(config)
    if isinstance(config.get(key), dict):
        config[key] = keras.saving.deserialize_keras_object(config[key])
    return config


@keras.saving.register_keras_serializable(package="keras_lr")
class SGD(_OncePerStep, keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose `momentum` may be a schedule.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        momentum: a float in [0, 1] or a schedule of momenta (evaluated in
            the compiled step).
        nesterov: Nesterov momentum.
        **kwargs: the other arguments of `keras.optimizers.SGD`.

    Example:

    >>> from keras_lr.schedules import OneCycle
    >>> one_cycle = OneCycle(0.1, total_steps=100)
    >>> opt = SGD(one_cycle, momentum=one_cycle.momentum())
    >>> round(float(opt.momentum(0)), 3)
    0.95
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: Any = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ):
        momentum = _check_momentum("momentum", momentum)
        scheduled = _base.is_schedule(momentum)
        super().__init__(
            learning_rate=_check_learning_rate(learning_rate),
            momentum=0.0 if scheduled else momentum,
            nesterov=nesterov,
            **kwargs,
        )
        if scheduled:
            self.momentum = momentum  # `build` sees `momentum != 0`

    def update_step(self, gradient, variable, learning_rate):
        if not _base.is_schedule(self.momentum):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        mu = self._scheduled_value(self.momentum, dtype)
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(m, ops.subtract(ops.multiply(m, mu), ops.multiply(gradient, lr)))
        if self.nesterov:
            self.assign_add(
                variable,
                ops.subtract(ops.multiply(m, mu), ops.multiply(gradient, lr)),
            )
        else:
            self.assign_add(variable, m)

    def get_config(self) -> dict:
        return _momentum_config(super().get_config(), "momentum", self.momentum)

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None):
        config = _momentum_from_config(config, "momentum")
        return super().from_config(config, custom_objects=custom_objects)


class _ScheduledBeta1(_OncePerStep):
    """Evaluates a scheduled `beta_1` for the duration of one update.

    Keras's Adam update reads `self.beta_1` a few times as a number; for
    one update the attribute holds the schedule's value at this step (a
    tensor in the traced step), then the schedule again.
    """

    def update_step(self, gradient, variable, learning_rate):
        schedule = self.beta_1
        if not _base.is_schedule(schedule):
            return super().update_step(gradient, variable, learning_rate)
        value = self._scheduled_value(schedule, variable.dtype)
        object.__setattr__(self, "beta_1", value)
        try:
            return super().update_step(gradient, variable, learning_rate)
        finally:
            object.__setattr__(self, "beta_1", schedule)

    def get_config(self) -> dict:
        return _momentum_config(super().get_config(), "beta_1", self.beta_1)

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None):
        config = _momentum_from_config(config, "beta_1")
        return super().from_config(config, custom_objects=custom_objects)


@keras.saving.register_keras_serializable(package="keras_lr")
class Adam(_ScheduledBeta1, keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose `beta_1` may be a schedule.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        beta_1: a float or a schedule (evaluated in the compiled step).
        **kwargs: the other arguments of `keras.optimizers.Adam`.

    Example:

    >>> from keras_lr.schedules import CyclicLR
    >>> cyclic = CyclicLR(1e-4, 1e-3, step_size_up=100)
    >>> opt = Adam(cyclic, beta_1=cyclic.momentum())
    >>> round(float(opt.beta_1(100)), 3)
    0.85
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: Any = 0.9, **kwargs: Any):
        beta_1 = _check_momentum("beta_1", beta_1)
        super().__init__(
            learning_rate=_check_learning_rate(learning_rate), beta_1=beta_1, **kwargs
        )


@keras.saving.register_keras_serializable(package="keras_lr")
class AdamW(_ScheduledBeta1, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` whose `beta_1` may be a schedule.

    Example:

    >>> from keras_lr.schedules import OneCycle
    >>> s = OneCycle(1e-3, 100)
    >>> opt = AdamW(s, beta_1=s.momentum(), weight_decay=0.01)
    >>> round(float(opt.beta_1(99)), 3)
    0.95
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: Any = 0.9, **kwargs: Any):
        beta_1 = _check_momentum("beta_1", beta_1)
        super().__init__(
            learning_rate=_check_learning_rate(learning_rate), beta_1=beta_1, **kwargs
        )
