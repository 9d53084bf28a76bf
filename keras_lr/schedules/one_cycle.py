"""`OneCycle`: Smith's 1cycle policy, and the matching momentum.

Smith & Topin, "Super-Convergence", arXiv:1708.07120; Smith, "A disciplined
approach to neural network hyper-parameters", arXiv:1803.09820. With
``initial = max_lr / div_factor`` and ``final = initial / final_div_factor``
the rate follows phases that end at steps (counted from 0, as floats)::

    two phases:   e1 = pct_start * T - 1  (initial -> max_lr)
                  e2 = T - 1              (max_lr  -> final)
    three phases: e1 = pct_start * T - 1  (initial -> max_lr)
                  e2 = 2 * pct_start * T - 2  (max_lr -> initial)
                  e3 = T - 1              (initial -> final)

A step ``s`` belongs to the first phase whose end is >= s; inside phase
``[e_prev, e]`` it is at ``pct = (s - e_prev) / (e - e_prev)`` (``e_prev = 0``
for the first) and the rate is ``anneal(start, end, pct)``, cosine
(``end + (start - end) (1 + cos(pi pct)) / 2``) or linear. These are PyTorch's
``OneCycleLR`` values for the same arguments. Past ``T - 1`` the schedule
holds ``final`` (PyTorch raises there). When the first phase is a single
step (``pct_start * T == 1``, where PyTorch divides by zero) step 0 is the
peak.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lr import _validate
from keras_lr.schedules import _base
from keras_lr.schedules.cyclic import check_momenta

__all__ = ["OneCycle", "OneCycleMomentum"]

ANNEALS = ("cos", "linear")


def _check_shape(total_steps: Any, pct_start: Any, anneal: str, three_phase: Any):
    total_steps = _base.check_steps("total_steps", total_steps, minimum=1)
    pct_start = _validate.check_real("pct_start", pct_start)
    _validate.check_in_interval("pct_start", pct_start, 0.0, 1.0, low_closed=False)
    _validate.check_choice("anneal", anneal, ANNEALS)
    if not isinstance(three_phase, bool):
        raise TypeError(
            "Argument `three_phase` must be a bool. "
            f"Received: three_phase={three_phase!r}"
        )
    if three_phase and pct_start >= 0.5:
        raise ValueError(
            "Argument `pct_start` must be < 0.5 when `three_phase=True` (the "
            f"third phase would be empty). Received: pct_start={pct_start}"
        )
    return total_steps, pct_start


def _phase_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    t = float(total_steps)
    if three_phase:
        return [pct_start * t - 1.0, 2.0 * pct_start * t - 2.0, t - 1.0]
    return [pct_start * t - 1.0, t - 1.0]


def _phased(step: Any, ends: list[float], points: list[float], how: str) -> Any:
    """Piecewise anneal through `points` (one more than `ends`)."""
    s = ops.cast(ops.minimum(_base.int_step(step), int(ends[-1])), "float32")
    value = None
    start = 0.0
    pieces = []
    for i, end in enumerate(ends):
        den = end - start
        if den > 0:
            pct = _base.fraction(s - start, den)
        else:  # a one-step phase (or one no step reaches): its end value
            pct = ops.ones_like(s)
        pieces.append(_base.anneal(points[i], points[i + 1], pct, how))
        start = end
    value = pieces[-1]
    for i in range(len(ends) - 2, -1, -1):
        value = ops.where(s <= ends[i], pieces[i], value)
    return value


@keras.saving.register_keras_serializable(package="keras_lr")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The 1cycle learning-rate policy (Smith & Topin, arXiv:1708.07120).

    The formula is in the module docstring; it equals PyTorch's
    `OneCycleLR` for the same arguments and holds its final value past
    `total_steps`.

    Args:
        max_lr: the peak rate (float > 0).
        total_steps: length of the cycle in optimizer steps, >= 1.
        pct_start: fraction of the steps spent going up, in (0, 1).
        div_factor: the start rate is ``max_lr / div_factor`` (finite,
            >= 1).
        final_div_factor: the final rate is ``start / final_div_factor``
            (finite, >= 1).
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: go back down to the start rate before annealing to the
            final one (fastai's and the paper's shape); needs
            ``pct_start < 0.5``.

    Example:

    >>> schedule = OneCycle(1.0, total_steps=10, pct_start=0.5, div_factor=10.0,
    ...                     final_div_factor=10.0, anneal="linear")
    >>> [round(float(schedule(s)), 3) for s in (0, 2, 4, 9, 100)]
    [0.1, 0.55, 1.0, 0.01, 0.01]
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
    ):
        self.max_lr = _base.check_lr("max_lr", max_lr, positive=True)
        self.total_steps, self.pct_start = _check_shape(
            total_steps, pct_start, anneal, three_phase
        )
        self.div_factor = _validate.check_real("div_factor", div_factor)
        self.final_div_factor = _validate.check_real(
            "final_div_factor", final_div_factor
        )
        _validate.check_at_least("div_factor", self.div_factor, 1.0)
        _validate.check_at_least("final_div_factor", self.final_div_factor, 1.0)
        # An infinite factor gives a start or final rate of 0: a typo, not a
        # schedule.
        _validate.check_finite("div_factor", self.div_factor)
        _validate.check_finite("final_div_factor", self.final_div_factor)
        self.anneal = anneal
        self.three_phase = three_phase

    @property
    def initial_lr(self) -> float:
        return self.max_lr / self.div_factor

    @property
    def final_lr(self) -> float:
        return self.initial_lr / self.final_div_factor

    def __call__(self, step):
        ends = _phase_ends(self.total_steps, self.pct_start, self.three_phase)
        if self.three_phase:
            points = [self.initial_lr, self.max_lr, self.initial_lr, self.final_lr]
        else:
            points = [self.initial_lr, self.max_lr, self.final_lr]
        return _phased(step, ends, points, self.anneal)

    def momentum(
        self, base_momentum: float = 0.85, max_momentum: float = 0.95
    ) -> OneCycleMomentum:
        """The matching momentum: ``max -> base`` while the rate rises, back after.

        Pass it as ``momentum`` to `keras_lr.optimizers.SGD` or as
        ``beta_1`` to `keras_lr.optimizers.Adam`.

        Example:

        >>> m = OneCycle(0.1, 10, pct_start=0.5, anneal="linear").momentum()
        >>> [round(float(m(s)), 3) for s in (0, 4, 9)]
        [0.95, 0.85, 0.95]
        """
        return OneCycleMomentum(
            base_momentum,
            max_momentum,
            self.total_steps,
            self.pct_start,
            self.anneal,
            self.three_phase,
        )

    @classmethod
    def from_range_test(cls, result: Any, total_steps: int, **kwargs: Any) -> OneCycle:
        """A 1cycle whose peak is the top of a range test's suggested range.

        Args:
            result: an `LRRangeTestResult`; ``suggest_range()[1]`` is `max_lr`.
            total_steps: length of the cycle.
            **kwargs: the other constructor arguments.

        Example:

        >>> import numpy as np
        >>> from keras_lr import LRRangeTestResult
        >>> lrs = np.geomspace(1e-6, 1.0, 100)
        >>> losses = 2.3 - 2 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
        >>> result = LRRangeTestResult(lrs, losses)
        >>> s = OneCycle.from_range_test(result, 1000)
        >>> s.max_lr == result.suggest_range()[1]
        True
        """
        _, max_lr = result.suggest_range()
        return cls(float(max_lr), total_steps, **kwargs)

    def get_config(self) -> dict:
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }


@keras.saving.register_keras_serializable(package="keras_lr")
class OneCycleMomentum(keras.optimizers.schedules.LearningRateSchedule):
    """Momentum of the 1cycle policy, opposite to the rate.

    Same phases as `OneCycle`, with momentum going ``max -> base`` while the
    rate rises, ``base -> max`` while it falls (and held at ``max`` in the
    third phase): PyTorch's ``cycle_momentum``. Give it to
    `keras_lr.optimizers.SGD` (``momentum=``) or `keras_lr.optimizers.Adam`
    (``beta_1=``).

    Example:

    >>> m = OneCycleMomentum(0.85, 0.95, total_steps=10, pct_start=0.5,
    ...                      anneal="linear")
    >>> [round(float(m(s)), 3) for s in (0, 2, 4, 9)]
    [0.95, 0.9, 0.85, 0.95]
    """

    def __init__(
        self,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        total_steps: int = 1000,
        pct_start: float = 0.3,
        anneal: str = "cos",
        three_phase: bool = False,
    ):
        self.base_momentum, self.max_momentum = check_momenta(
            base_momentum, max_momentum
        )
        self.total_steps, self.pct_start = _check_shape(
            total_steps, pct_start, anneal, three_phase
        )
        self.anneal = anneal
        self.three_phase = three_phase

    def __call__(self, step):
        ends = _phase_ends(self.total_steps, self.pct_start, self.three_phase)
        top, low = self.max_momentum, self.base_momentum
        points = [top, low, top, top] if self.three_phase else [top, low, top]
        return _phased(step, ends, points, self.anneal)

    def get_config(self) -> dict:
        return {
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }
