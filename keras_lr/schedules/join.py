"""`Join`: schedules one after another, each restarting from step 0.

For schedules ``f_0 .. f_n`` and boundaries ``b_1 < .. < b_n``::

    lr(step) = f_k(step - b_k)   for b_k <= step < b_{k+1}   (b_0 = 0)

like optax's ``join_schedules``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lr.schedules import _base

__all__ = ["Join"]


@keras.saving.register_keras_serializable(package="keras_lr")
class Join(keras.optimizers.schedules.LearningRateSchedule):
    """Runs `schedules` in turn, switching at `boundaries`.

    Each schedule sees the steps since its own boundary, from 0.

    Args:
        schedules: a list of `LearningRateSchedule`s or float rates.
        boundaries: the steps at which the next schedule starts: one fewer
            than `schedules`, strictly increasing, >= 1.

    Example:

    >>> from keras_lr.schedules import WarmupCosineDecay
    >>> s = Join([WarmupCosineDecay(1.0, 4, 2), 0.1], boundaries=[4])
    >>> [round(float(s(i)), 3) for i in range(6)]
    [0.0, 0.5, 1.0, 0.5, 0.1, 0.1]
    """

    def __init__(self, schedules: list, boundaries: list):
        if not isinstance(schedules, (list, tuple)) or not schedules:
            raise ValueError(
                "Argument `schedules` must be a non-empty list. "
                f"Received: schedules={schedules!r}"
            )
        self.schedules = [
            _base.check_schedule_or_lr(f"schedules[{i}]", s)
            for i, s in enumerate(schedules)
        ]
        if not isinstance(boundaries, (list, tuple)):
            raise TypeError(
                "Argument `boundaries` must be a list of integers. "
                f"Received: boundaries={boundaries!r}"
            )
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                "Argument `boundaries` must have one fewer element than "
                f"`schedules`. Received: len(schedules)={len(schedules)}, "
                f"boundaries={list(boundaries)}"
            )
        self.boundaries = [
            _base.check_steps(f"boundaries[{i}]", b, minimum=1)
            for i, b in enumerate(boundaries)
        ]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(
                "Argument `boundaries` must be strictly increasing. "
                f"Received: boundaries={self.boundaries}"
            )

    def __call__(self, step):
        step = _base.int_step(step)
        value = _base.evaluate(self.schedules[0], step)
        for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
            later = _base.evaluate(schedule, ops.maximum(step - boundary, 0))
            value = ops.where(step >= boundary, later, value)
        return value

    def get_config(self) -> dict:
        return {
            "schedules": [_base.serialize(s) for s in self.schedules],
            "boundaries": list(self.boundaries),
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["schedules"] = [_base.deserialize(s) for s in config["schedules"]]
        return cls(**config)
