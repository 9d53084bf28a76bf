"""Shared pieces of the in-graph schedules: step handling, config, nesting.

Every schedule in `keras_lr.schedules` is a
`keras.optimizers.schedules.LearningRateSchedule` computed with `keras.ops`
only, so it runs inside the compiled train step on TensorFlow, JAX and
PyTorch. The optimizer calls it with its iteration counter (int64 on
TensorFlow and PyTorch, int32 on JAX).

Steps are handled in integer arithmetic for as long as it matters (cycle
positions, clamps) and cast to float32 only afterwards: a float32 cannot
tell step 2**31 - 1 from 2**31, but ``step % cycle`` computed on integers is
exact.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr import _validate

#: The largest step a schedule distinguishes; later steps behave like it.
MAX_STEP = 2**31 - 1
# Largest float32 below 2**31 (float steps are clamped to it before the cast).
_MAX_FLOAT_STEP = 2.0**31 - 256.0


def _clamp_host_step(step: Any) -> Any:
    """Clamps a host integer step (Python or numpy) to ``[0, MAX_STEP]``.

    Done before the conversion to a tensor: JAX (without x64) converts to
    int32, so a larger Python int raises an `OverflowError` and an int64
    numpy value wraps around. Tensors and float steps are returned as they
    are (`int_step` clamps those in the graph).
    """
    if isinstance(step, bool) or isinstance(step, np.bool_):
        return step
    if isinstance(step, numbers.Integral):
        return np.int32(min(max(int(step), 0), MAX_STEP))
    if isinstance(step, numbers.Real):
        # Floored on the host: as a float32 tensor, 16777217.0 would be
        # 16777216 already. NaN is step 0.
        value = float(step)
        if math.isnan(value):
            return np.int32(0)
        return np.int32(min(max(math.floor(min(value, 2.0**32)), 0), MAX_STEP))
    if isinstance(step, (np.ndarray, np.generic)) and np.issubdtype(
        step.dtype, np.integer
    ):
        return np.clip(step, 0, MAX_STEP).astype(np.int32)
    return step


def int_step(step: Any) -> Any:
    """The step as an int32 tensor, clamped to ``[0, 2**31 - 1]``.

    Accepts Python numbers and integer or float tensors of any width (the
    optimizer's counter is int64 on TensorFlow and PyTorch). Float steps are
    floored (in float64 where the backend has it), a NaN step is step 0.

    Example:

    >>> int(int_step(2**40)), int(int_step(-3)), int(int_step(2.7))
    (2147483647, 0, 2)
    >>> int(int_step(16777217.0)), int(int_step(float("nan")))
    (16777217, 0)
    """
    step = _clamp_host_step(step)
    step = ops.convert_to_tensor(step)
    dtype = keras.backend.standardize_dtype(step.dtype)
    if "float" in dtype:
        wide = wide_float_dtype(step)
        top = float(MAX_STEP) if wide == "float64" else _MAX_FLOAT_STEP
        step = ops.cast(step, wide)
        step = ops.where(ops.isnan(step), 0.0, step)
        # The cast truncates, which is the floor of a value >= 0 (`ops.floor`
        # computes in float32 on some backends).
        return ops.cast(ops.clip(step, 0.0, top), "int32")
    if dtype in ("int64", "uint64", "uint32"):
        step = ops.clip(step, 0, MAX_STEP)
        return ops.cast(step, "int32")
    step = ops.cast(step, "int32")
    return ops.maximum(step, 0)


def float_step(step: Any) -> Any:
    """`int_step` as float32."""
    return ops.cast(int_step(step), "float32")


def wide_float_dtype(tensor: Any) -> str:
    """``"float64"`` where the backend computes in it on `tensor`'s device.

    JAX keeps float64 off unless ``jax_enable_x64`` is set (it would truncate
    to float32 with a warning), PyTorch's MPS and TensorFlow's TPUs have no
    float64: those get ``"float32"``. Decided when the step is traced.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    if backend == "torch":
        device = getattr(tensor, "device", None)
        return "float32" if getattr(device, "type", None) == "mps" else "float64"
    if backend == "tensorflow":
        import tensorflow as tf

        return "float32" if tf.config.list_logical_devices("TPU") else "float64"
    return "float64"


def check_steps(name: str, value: Any, *, minimum: int) -> int:
    """An integer step count >= `minimum` (and < 2**31)."""
    value = _validate.check_int(name, value, minimum=minimum)
    if value > MAX_STEP:
        raise ValueError(
            f"Argument `{name}` must be <= {MAX_STEP}. Received: {name}={value}"
        )
    return value


def check_lr(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite, non-negative float learning rate (> 0 when `positive`)."""
    value = _validate.check_learning_rate(name, value)
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be finite. Received: {name}={value}")
    if positive:
        _validate.check_positive(name, value)
    else:
        _validate.check_non_negative(name, value)
    return value


def fraction(done: Any, length: float) -> Any:
    """``clip(done / length, 0, 1)`` in float32, exactly 1 once `done >= length`.

    XLA turns a division by a constant into a multiplication by its
    reciprocal, so ``41 / 41`` can come out as ``0.99999994``; the end of a
    phase must give the phase's end value exactly.
    """
    done = ops.cast(done, "float32")
    length = float(length)
    return ops.where(done >= length, 1.0, ops.clip(done / length, 0.0, 1.0))


def anneal(start: float, end: float, pct: Any, how: str) -> Any:
    """Interpolates from `start` (pct 0) to `end` (pct 1), cosine or linear.

    ``cos``: ``end + (start - end) / 2 * (1 + cos(pi * pct))``;
    ``linear``: ``start + (end - start) * pct``.

    The cosine form is computed as ``end + (start - end) * cos(pi pct / 2)**2``
    (the same value): at ``pct = 1`` it lands on `end` to float32 precision,
    where ``1 + cos(pi)`` in float32 leaves an error of ``1e-8 * start``.
    """
    if how == "cos":
        half = ops.cos((0.5 * math.pi) * pct)
        return end + (start - end) * (half * half)
    # Weighted form: exact at both ends in float32 (``start + (end - start)
    # * pct`` loses a small `end` to cancellation).
    return start * (1.0 - pct) + end * pct


def is_schedule(value: Any) -> bool:
    return isinstance(value, keras.optimizers.schedules.LearningRateSchedule)


def check_schedule_or_lr(name: str, value: Any) -> Any:
    """A `LearningRateSchedule` as it is, or a float rate checked."""
    if is_schedule(value):
        return value
    if callable(value):
        raise TypeError(
            f"Argument `{name}` must be a float or a "
            "keras.optimizers.schedules.LearningRateSchedule (a plain callable "
            "cannot be serialized). "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    return check_lr(name, value)


def evaluate(schedule_or_lr: Any, step: Any) -> Any:
    """The value of a schedule (or a constant) at `step`, as float32."""
    if is_schedule(schedule_or_lr):
        return ops.cast(schedule_or_lr(step), "float32")
    return ops.convert_to_tensor(float(schedule_or_lr), dtype="float32")


def serialize(value: Any) -> Any:
    """A nested schedule as a config dict; a float as it is."""
    if is_schedule(value):
        return keras.saving.serialize_keras_object(value)
    return value


def deserialize(value: Any) -> Any:
    """Inverse of `serialize`."""
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    return value


def lr_at(schedule_or_lr: Any, step: int) -> float:
    """The value at one step, as a Python float (host-side helper)."""
    return float(ops.convert_to_numpy(evaluate(schedule_or_lr, step)))


@keras.saving.register_keras_serializable(package="keras_lr")
class Shifted(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step - offset)` (steps before `offset` see step 0).

    The callback forms install a schedule this way when `fit` starts from
    an optimizer counter that is not zero, so the schedule starts there. A
    negative `offset` starts the schedule further on (a fit resumed at a
    later epoch than its optimizer's counter).

    Example:

    >>> from keras_lr.schedules import CyclicLR
    >>> s = Shifted(CyclicLR(0.1, 0.5, 2), offset=10)
    >>> [round(float(s(i)), 3) for i in (10, 11, 12)]
    [0.1, 0.3, 0.5]
    """

    def __init__(self, schedule: Any, offset: int = 0):
        self.schedule = check_schedule_or_lr("schedule", schedule)
        self.offset = check_steps("offset", offset, minimum=-MAX_STEP)

    def __call__(self, step):
        step = int_step(step)
        if self.offset < 0:
            # `step - offset` stays within int32.
            step = ops.minimum(step, MAX_STEP + self.offset)
        return evaluate(self.schedule, ops.maximum(step - self.offset, 0))

    def get_config(self) -> dict:
        return {"schedule": serialize(self.schedule), "offset": self.offset}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["schedule"] = deserialize(config["schedule"])
        return cls(**config)
