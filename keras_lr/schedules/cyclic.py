"""`CyclicLR`: Smith's cyclical learning rates, and the matching momentum.

Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017,
arXiv:1506.01186. The rate goes up linearly from `base_lr` to `max_lr` over
`step_size_up` steps, down over `step_size_down` steps, and again. With
``T = step_size_up + step_size_down``, cycle ``c = floor(step / T) + 1`` and
position ``p = step mod T``::

    h = p / step_size_up                  if p <= step_size_up
        (T - p) / step_size_down          otherwise
    lr = base_lr + (max_lr - base_lr) * h * scale

with ``scale = 1`` (``"triangular"``), ``1 / 2**(c - 1)`` (``"triangular2"``)
or ``gamma**step`` (``"exp_range"``): the same values as PyTorch's
``torch.optim.lr_scheduler.CyclicLR`` for the same arguments. The position is
computed on integers, so it is exact at any step.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_lr import _validate
from keras_lr.schedules import _base

__all__ = ["CyclicLR", "CyclicMomentum"]

MODES = ("triangular", "triangular2", "exp_range")


def _check_cycle(step_size_up: Any, step_size_down: Any, mode: str, gamma: Any):
    step_size_up = _base.check_steps("step_size_up", step_size_up, minimum=1)
    if step_size_down is None:
        step_size_down = step_size_up
    step_size_down = _base.check_steps("step_size_down", step_size_down, minimum=1)
    if step_size_up + step_size_down > _base.MAX_STEP:
        raise ValueError(
            "Arguments `step_size_up` + `step_size_down` must be <= "
            f"{_base.MAX_STEP}. Received: step_size_up={step_size_up}, "
            f"step_size_down={step_size_down}"
        )
    _validate.check_choice("mode", mode, MODES)
    gamma = _validate.check_real("gamma", gamma)
    _validate.check_in_interval(
        "gamma", gamma, 0.0, 1.0, low_closed=False, high_closed=True
    )
    return step_size_up, step_size_down, gamma


def _cycle_height(step: Any, up: int, down: int, mode: str, gamma: float) -> Any:
    """The cycle's shape ``h * scale`` in [0, 1] at `step` (float32)."""
    step = _base.int_step(step)
    total = up + down
    position = step % total
    cycle = step // total  # cycle index from 0
    p = ops.cast(position, "float32")
    h = ops.where(position <= up, p / float(up), (float(total) - p) / float(down))
    if mode == "triangular2":
        h = h * ops.power(0.5, ops.cast(cycle, "float32"))
    elif mode == "exp_range" and gamma != 1.0:
        # ``gamma**step`` as ``exp(step log gamma)`` with the logarithm taken
        # in float64: a float32 `gamma` (0.99994 is off by 2e-8) would put a
        # relative error of ``step * 2e-8 / gamma`` on the result (1e-3 at
        # step 50,000).
        wide = _base.wide_float_dtype(step)
        decay = ops.exp(ops.cast(step, wide) * math.log(gamma))
        h = h * ops.cast(decay, "float32")
    return h


@keras.saving.register_keras_serializable(package="keras_lr")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (Smith 2017, arXiv:1506.01186).

    The formula is in the module docstring; it equals PyTorch's `CyclicLR`.

    Args:
        base_lr: lowest rate, reached at the start of each cycle (float).
        max_lr: highest rate, reached after `step_size_up` steps; >= `base_lr`.
        step_size_up: steps from `base_lr` up to `max_lr`, >= 1.
        step_size_down: steps back down (default `step_size_up`).
        mode: ``"triangular"`` (constant amplitude), ``"triangular2"``
            (amplitude halved each cycle) or ``"exp_range"`` (amplitude
            times ``gamma**step``).
        gamma: decay of ``"exp_range"``, in (0, 1].

    Example:

    >>> schedule = CyclicLR(0.1, 0.5, step_size_up=2, mode="triangular2")
    >>> [round(float(schedule(s)), 3) for s in range(7)]
    [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3]
    """

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size_up: int,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
    ):
        self.base_lr = _base.check_lr("base_lr", base_lr)
        self.max_lr = _base.check_lr("max_lr", max_lr)
        _validate.check_greater(
            "max_lr", self.max_lr, "base_lr", self.base_lr, strict=False
        )
        self.step_size_up, self.step_size_down, self.gamma = _check_cycle(
            step_size_up, step_size_down, mode, gamma
        )
        self.mode = mode

    def __call__(self, step):
        h = _cycle_height(
            step, self.step_size_up, self.step_size_down, self.mode, self.gamma
        )
        return self.base_lr + (self.max_lr - self.base_lr) * h

    def momentum(
        self, base_momentum: float = 0.85, max_momentum: float = 0.95
    ) -> CyclicMomentum:
        """The matching momentum schedule: high when the rate is low.

        Pass it as ``momentum`` to `keras_lr.optimizers.SGD` or as
        ``beta_1`` to `keras_lr.optimizers.Adam`.
        """
        return CyclicMomentum(
            base_momentum,
            max_momentum,
            self.step_size_up,
            self.step_size_down,
            self.mode,
            self.gamma,
        )

    @classmethod
    def from_range_test(cls, result: Any, step_size_up: int, **kwargs: Any) -> CyclicLR:
        """The cycle between the bounds a range test suggests.

        Args:
            result: an `LRRangeTestResult`; its ``suggest_range()`` gives
                ``(base_lr, max_lr)``.
            step_size_up: steps from `base_lr` up to `max_lr`.
            **kwargs: the other constructor arguments.

        Example:

        >>> import numpy as np
        >>> from keras_lr import LRRangeTestResult
        >>> lrs = np.geomspace(1e-6, 1.0, 100)
        >>> losses = 2.3 - 2 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
        >>> s = CyclicLR.from_range_test(LRRangeTestResult(lrs, losses), 100)
        >>> s.max_lr / s.base_lr
        10.0
        """
        base_lr, max_lr = result.suggest_range()
        return cls(float(base_lr), float(max_lr), step_size_up, **kwargs)

    def get_config(self) -> dict:
        return {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "step_size_up": self.step_size_up,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }


def check_momenta(base_momentum: Any, max_momentum: Any) -> tuple[float, float]:
    base = _validate.check_real("base_momentum", base_momentum)
    top = _validate.check_real("max_momentum", max_momentum)
    _validate.check_in_interval("base_momentum", base, 0.0, 1.0)
    _validate.check_in_interval("max_momentum", top, 0.0, 1.0)
    _validate.check_greater("max_momentum", top, "base_momentum", base, strict=False)
    return base, top


@keras.saving.register_keras_serializable(package="keras_lr")
class CyclicMomentum(keras.optimizers.schedules.LearningRateSchedule):
    """Momentum cycled opposite to `CyclicLR` (Smith 2018, arXiv:1803.09820).

    ``momentum = max_momentum - (max_momentum - base_momentum) * h * scale``
    with the same cycle shape as `CyclicLR` (PyTorch's ``cycle_momentum``).
    It is a schedule of the step like a learning-rate schedule; give it to
    `keras_lr.optimizers.SGD` (``momentum=``) or `keras_lr.optimizers.Adam`
    (``beta_1=``), which evaluate it inside the compiled step.

    Example:

    >>> m = CyclicLR(0.1, 0.5, step_size_up=2).momentum()
    >>> [round(float(m(s)), 3) for s in range(5)]
    [0.95, 0.9, 0.85, 0.9, 0.95]
    """

    def __init__(
        self,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
    ):
        self.base_momentum, self.max_momentum = check_momenta(
            base_momentum, max_momentum
        )
        self.step_size_up, self.step_size_down, self.gamma = _check_cycle(
            step_size_up, step_size_down, mode, gamma
        )
        self.mode = mode

    def __call__(self, step):
        h = _cycle_height(
            step, self.step_size_up, self.step_size_down, self.mode, self.gamma
        )
        return self.max_momentum - (self.max_momentum - self.base_momentum) * h

    def get_config(self) -> dict:
        return {
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "step_size_up": self.step_size_up,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }
