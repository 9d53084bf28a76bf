"""`Warmup`: a warmup in front of any schedule (or constant rate).

Goyal et al., "Accurate, Large Minibatch SGD", arXiv:1706.02677 (linear
warmup). For ``W = warmup_steps``, the wrapped schedule ``f`` and its first
value ``f0 = f(0)``::

    step < W:   linear:       initial_lr + (f0 - initial_lr) * step / W
                exponential:  initial_lr * (f0 / initial_lr) ** (step / W)
    step >= W:  f(step - W)

The wrapped schedule sees ``step - warmup_steps``: it starts after the
warmup, whole, rather than being cut short by it.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lr import _validate
from keras_lr.schedules import _base

__all__ = ["Warmup"]

SHAPES = ("linear", "exponential")


@keras.saving.register_keras_serializable(package="keras_lr")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """A warmup from `initial_lr` to the start of a schedule.

    The wrapped schedule sees ``step - warmup_steps``: `Warmup(f, W)` at step
    ``W + k`` is ``f(k)``, and during the warmup the rate goes from
    `initial_lr` to ``f(0)``.

    Args:
        schedule_or_float: a `LearningRateSchedule` or a constant rate.
        warmup_steps: length of the warmup, >= 0 (0: no warmup).
        initial_lr: rate at step 0 (> 0 for the exponential shape).
        shape: ``"linear"`` or ``"exponential"`` (geometric).

    Example:

    >>> w = Warmup(0.1, warmup_steps=4)
    >>> [round(float(w(s)), 3) for s in range(6)]
    [0.0, 0.025, 0.05, 0.075, 0.1, 0.1]
    >>> w = Warmup(keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5), 2)
    >>> [round(float(w(s)), 3) for s in range(5)]
    [0.0, 0.05, 0.1, 0.05, 0.025]
    """

    def __init__(
        self,
        schedule_or_float: Any,
        warmup_steps: int,
        initial_lr: float = 0.0,
        shape: str = "linear",
    ):
        self.schedule_or_float = _base.check_schedule_or_lr(
            "schedule_or_float", schedule_or_float
        )
        self.warmup_steps = _base.check_steps("warmup_steps", warmup_steps, minimum=0)
        _validate.check_choice("shape", shape, SHAPES)
        self.initial_lr = _base.check_lr(
            "initial_lr", initial_lr, positive=shape == "exponential"
        )
        self.shape = shape

    def __call__(self, step):
        step = _base.int_step(step)
        after = _base.evaluate(
            self.schedule_or_float, ops.maximum(step - self.warmup_steps, 0)
        )
        if self.warmup_steps == 0:
            return after
        target = _base.evaluate(self.schedule_or_float, 0)
        frac = _base.fraction(step, self.warmup_steps)
        if self.shape == "linear":
            during = _base.anneal(self.initial_lr, target, frac, "linear")
        else:
            # Geometric in log space; a zero target gives zero, not -inf.
            ratio = ops.maximum(target, 1e-30) / self.initial_lr
            during = self.initial_lr * ops.exp(frac * ops.log(ratio))
            during = ops.where(target > 0, during, ops.zeros_like(during))
        return ops.where(step < self.warmup_steps, during, after)

    def get_config(self) -> dict:
        return {
            "schedule_or_float": _base.serialize(self.schedule_or_float),
            "warmup_steps": self.warmup_steps,
            "initial_lr": self.initial_lr,
            "shape": self.shape,
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["schedule_or_float"] = _base.deserialize(config["schedule_or_float"])
        return cls(**config)
