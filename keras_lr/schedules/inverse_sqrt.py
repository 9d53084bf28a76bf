"""`InverseSqrt`: linear warmup, then decay as one over the square root.

Vaswani et al., "Attention Is All You Need", arXiv:1706.03762 (the
Transformer's schedule, written with its peak rather than ``d_model``)::

    step < W:   peak_lr * step / W
    step >= W:  peak_lr * sqrt(W / step)

Both pieces meet at ``peak_lr`` at step ``W``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lr.schedules import _base

__all__ = ["InverseSqrt"]


@keras.saving.register_keras_serializable(package="keras_lr")
class InverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_lr`, then ``peak_lr * sqrt(warmup_steps / step)``.

    Args:
        peak_lr: the rate at the end of the warmup (float > 0).
        warmup_steps: steps of linear warmup from 0, >= 1.

    Example:

    >>> s = InverseSqrt(1.0, warmup_steps=4)
    >>> [round(float(s(i)), 3) for i in (0, 2, 4, 16, 64)]
    [0.0, 0.5, 1.0, 0.5, 0.25]
    """

    def __init__(self, peak_lr: float, warmup_steps: int):
        self.peak_lr = _base.check_lr("peak_lr", peak_lr, positive=True)
        self.warmup_steps = _base.check_steps("warmup_steps", warmup_steps, minimum=1)

    def __call__(self, step):
        s = _base.float_step(step)
        w = float(self.warmup_steps)
        warm = self.peak_lr * s / w
        decay = self.peak_lr * ops.sqrt(w / ops.maximum(s, w))
        return ops.where(s < w, warm, decay)

    def get_config(self) -> dict:
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps}
