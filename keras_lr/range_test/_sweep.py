"""The range test's learning-rate sweep, as an in-graph schedule.

The sweep is computed inside the compiled train step from the optimizer's own
iteration counter, so it needs no host work per step and is correct with
`steps_per_execution > 1`, `jit_compile` and every backend::

    exponential: lr_i = start * (end / start) ** (i / (n - 1))
    linear:      lr_i = start + (end - start) * i / (n - 1)

for step ``i = iterations - offset`` clipped to ``[0, n - 1]``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def sweep_lrs(start_lr: float, end_lr: float, num_steps: int, mode: str) -> np.ndarray:
    """The sweep's rates in float64: the closed form the schedule computes.

    Example:

    >>> sweep_lrs(1e-3, 1e-1, 3, "exponential").round(6).tolist()
    [0.001, 0.01, 0.1]
    >>> sweep_lrs(0.0 + 1e-3, 1.0, 3, "linear").round(4).tolist()
    [0.001, 0.5005, 1.0]
    """
    frac = np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1)
    if mode == "exponential":
        return start_lr * (end_lr / start_lr) ** frac
    return start_lr + (end_lr - start_lr) * frac


class SweepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The sweep as a `LearningRateSchedule` of the optimizer's counter.

    Args:
        start_lr: rate of the sweep's first step.
        end_lr: rate of its last step, held after it.
        num_steps: length of the sweep.
        mode: ``"exponential"`` or ``"linear"``.
        offset: the counter's value at the sweep's first step.

    Example:

    >>> schedule = SweepSchedule(1e-3, 1e-1, 3, "exponential", offset=5)
    >>> [round(float(schedule(s)), 6) for s in (5, 6, 7, 9)]
    [0.001, 0.01, 0.1, 0.1]
    """

    def __init__(
        self,
        start_lr: float,
        end_lr: float,
        num_steps: int,
        mode: str = "exponential",
        offset: int = 0,
    ):
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.num_steps = int(num_steps)
        self.mode = mode
        self.offset = int(offset)

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        i = ops.cast(ops.subtract(step, ops.cast(self.offset, step.dtype)), "float32")
        frac = ops.clip(i / float(max(self.num_steps - 1, 1)), 0.0, 1.0)
        if self.mode == "exponential":
            log_ratio = float(np.log(self.end_lr / self.start_lr))
            return self.start_lr * ops.exp(frac * log_ratio)
        return self.start_lr + (self.end_lr - self.start_lr) * frac

    def get_config(self) -> dict:
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "offset": self.offset,
        }
