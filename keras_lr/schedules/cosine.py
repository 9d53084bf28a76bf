"""Cosine family: warmup + cosine decay, warmup-stable-decay, SGDR restarts.

* `WarmupCosineDecay`: linear warmup from 0 to `peak_lr` over ``W`` steps,
  then cosine decay to `final_lr` at `total_steps` (Loshchilov & Hutter,
  arXiv:1608.03983; Goyal et al., arXiv:1706.02677)::

      s < W:       peak * s / W
      s >= W:      final + (peak - final) * (1 + cos(pi * min(s - W, D) / D)) / 2
                   with D = total_steps - W

* `WarmupStableDecay` ("WSD": Hu et al., MiniCPM, arXiv:2404.06395; Hägele
  et al., arXiv:2405.18392): warmup, then `peak_lr` held, then a decay to
  `final_lr` over the last ``K = round(decay_fraction * total_steps)``
  steps, linear, cosine or ``1 - sqrt`` in ``q = (s - (T - K)) / K``::

      linear: peak - (peak - final) * q
      cosine: final + (peak - final) * (1 + cos(pi * q)) / 2
      1-sqrt: peak - (peak - final) * sqrt(q)

* `CosineRestarts` (SGDR, arXiv:1608.03983): cycle ``i`` lasts
  ``T_i = T_0 * t_mul**i`` steps and starts at ``m_mul**i * initial_lr``::

      lr = min_lr + (m_mul**i * initial_lr - min_lr) * (1 + cos(pi t / T_i)) / 2

  with ``t`` the step within the cycle.
"""

from __future__ import annotations

import fractions
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr import _validate
from keras_lr.schedules import _base

__all__ = ["CosineRestarts", "WarmupCosineDecay", "WarmupStableDecay"]

# Relative distance to an integer under which a computed cycle start is
# taken as that integer: well above the rounding error of its computation
# (about 1e-14 in float64, 1e-6 in float32), well below the distance of a
# start that truly falls between two steps.
_START_TOL = {"float64": 1e-11, "float32": 4e-6}


#: Most cycles `CosineRestarts` tabulates on the host; a `t_mul` so close to
#: 1 that more cycles start below 2**31 is computed in the graph instead.
_TABLE_MAX = 1 << 14


def _r_minus_1(t_mul: float) -> float:
    """``t_mul - 1`` of the decimal `t_mul` as written.

    ``1.001 - 1`` in floats is off by 1e-13, which would move integer
    cycle starts.
    """
    return float(fractions.Fraction(repr(t_mul)) - 1)


def _cycle_table(t0: int, t_mul: float) -> tuple[np.ndarray, ...] | None:
    """Host table of the cycles that start below 2**31, or None.

    ``(first, base, frac, length)``: each cycle's first integer step
    (``ceil(start)``, int32), ``floor(start)`` (int32), ``start -
    floor(start)`` and its length ``t0 r**k`` (float32), with the starts
    ``t0 (r**k - 1) / (r - 1)`` computed in float64 and one within rounding
    error of an integer taken as that integer (so that a new cycle's peak
    lands on its step). None for ``t_mul == 1`` (integer arithmetic is
    exact) and where more than `_TABLE_MAX` cycles start below 2**31.
    """
    if t_mul == 1.0:
        return None
    r_minus_1 = _r_minus_1(t_mul)
    log_r = math.log1p(r_minus_1)
    scale = t0 / r_minus_1
    count = int(math.log1p(_base.MAX_STEP / scale) / log_r) + 2
    if count > _TABLE_MAX:
        return None
    k = np.arange(count, dtype=np.float64)
    exact = scale * np.expm1(k * log_r)
    nearest = np.round(exact)
    close = np.abs(exact - nearest) <= _START_TOL["float64"] * (np.abs(nearest) + 1.0)
    start = np.where(close, nearest, exact)
    start = start[(start <= _base.MAX_STEP) | (k == 0)]
    base = np.floor(start)
    first = np.ceil(start)
    length = t0 * np.exp(k[: start.size] * log_r)
    return (
        first.astype(np.int32),
        base.astype(np.int32),
        (start - base).astype(np.float32),
        length.astype(np.float32),
    )


def _check_warmup(total_steps: Any, warmup_steps: Any) -> tuple[int, int]:
    total_steps = _base.check_steps("total_steps", total_steps, minimum=1)
    warmup_steps = _base.check_steps("warmup_steps", warmup_steps, minimum=0)
    _validate.check_greater("total_steps", total_steps, "warmup_steps", warmup_steps)
    return total_steps, warmup_steps


def _check_peak_final(peak_lr: Any, final_lr: Any) -> tuple[float, float]:
    peak_lr = _base.check_lr("peak_lr", peak_lr, positive=True)
    final_lr = _base.check_lr("final_lr", final_lr)
    _validate.check_greater("peak_lr", peak_lr, "final_lr", final_lr, strict=False)
    return peak_lr, final_lr


def _linear_warmup(step: Any, peak: float, warmup_steps: int) -> Any:
    if warmup_steps == 0:
        return ops.full((), peak, dtype="float32")
    return peak * _base.fraction(step, warmup_steps)


@keras.saving.register_keras_serializable(package="keras_lr")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_lr`, then cosine decay to `final_lr`.

    Args:
        peak_lr: the rate at the end of the warmup (float > 0).
        total_steps: step at which the decay ends (held after), > warmup.
        warmup_steps: steps of linear warmup from 0, >= 0.
        final_lr: rate at the end, <= `peak_lr`.

    Example:

    >>> s = WarmupCosineDecay(1.0, total_steps=6, warmup_steps=2)
    >>> [round(float(s(i)), 3) for i in (0, 1, 2, 4, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        warmup_steps: int,
        final_lr: float = 0.0,
    ):
        self.peak_lr, self.final_lr = _check_peak_final(peak_lr, final_lr)
        self.total_steps, self.warmup_steps = _check_warmup(total_steps, warmup_steps)

    def __call__(self, step):
        step = _base.int_step(step)
        w, d = self.warmup_steps, self.total_steps - self.warmup_steps
        into = _base.fraction(ops.maximum(step - w, 0), d)
        decay = _base.anneal(self.peak_lr, self.final_lr, into, "cos")
        return ops.where(step < w, _linear_warmup(step, self.peak_lr, w), decay)

    def get_config(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_lr": self.final_lr,
        }


DECAYS = ("linear", "cosine", "1-sqrt")


@keras.saving.register_keras_serializable(package="keras_lr")
class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup, a long constant stretch, then a short decay ("WSD").

    Args:
        peak_lr: the constant rate (float > 0).
        total_steps: step at which the decay ends (held after).
        warmup_steps: steps of linear warmup from 0, >= 0.
        decay_fraction: fraction of `total_steps` spent decaying, in (0, 1].
        final_lr: rate at the end, <= `peak_lr`.
        decay: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    Example:

    >>> s = WarmupStableDecay(1.0, total_steps=10, warmup_steps=2,
    ...                       decay_fraction=0.4)
    >>> [round(float(s(i)), 3) for i in (0, 1, 2, 6, 8, 10, 11)]
    [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        warmup_steps: int,
        decay_fraction: float = 0.1,
        final_lr: float = 0.0,
        decay: str = "linear",
    ):
        self.peak_lr, self.final_lr = _check_peak_final(peak_lr, final_lr)
        self.total_steps, self.warmup_steps = _check_warmup(total_steps, warmup_steps)
        self.decay_fraction = _validate.check_real("decay_fraction", decay_fraction)
        _validate.check_in_interval(
            "decay_fraction",
            self.decay_fraction,
            0.0,
            1.0,
            low_closed=False,
            high_closed=True,
        )
        _validate.check_choice("decay", decay, DECAYS)
        self.decay = decay
        self.decay_steps = max(1, round(self.decay_fraction * self.total_steps))
        if self.warmup_steps + self.decay_steps > self.total_steps:
            raise ValueError(
                "Arguments `warmup_steps` + `decay_fraction * total_steps` must be "
                f"<= `total_steps`. Received: warmup_steps={self.warmup_steps}, "
                f"decay_fraction={self.decay_fraction}, "
                f"total_steps={self.total_steps}"
            )

    def __call__(self, step):
        step = _base.int_step(step)
        start = self.total_steps - self.decay_steps
        q = _base.fraction(ops.maximum(step - start, 0), self.decay_steps)
        peak, final = self.peak_lr, self.final_lr
        if self.decay == "linear":
            decayed = _base.anneal(peak, final, q, "linear")
        elif self.decay == "cosine":
            decayed = _base.anneal(peak, final, q, "cos")
        else:
            decayed = peak - (peak - final) * ops.sqrt(q)
        warm = _linear_warmup(step, peak, self.warmup_steps)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay_fraction": self.decay_fraction,
            "final_lr": self.final_lr,
            "decay": self.decay,
        }


@keras.saving.register_keras_serializable(package="keras_lr")
class CosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts (SGDR, arXiv:1608.03983).

    Args:
        initial_lr: the rate at the start of the first cycle (float > 0).
        first_cycle_steps: length ``T_0`` of the first cycle, >= 1.
        t_mul: each cycle is `t_mul` times longer than the previous, >= 1.
        m_mul: each cycle starts `m_mul` times lower, in (0, 1].
        min_lr: the floor every cycle anneals towards, <= `initial_lr`.

    The cycle starts are tabulated on the host (exact on every backend).
    Where `t_mul` is so close to 1 that over 16,384 cycles start below step
    2**31 (`t_mul` below about 1.0009 for ``first_cycle_steps=1``), they are
    computed in the graph instead: in float64 where the backend has it, and
    on float32-only backends (JAX without x64, PyTorch on MPS) the position
    within a cycle is then good to about 1e-5 of the cycle.

    Example:

    >>> s = CosineRestarts(1.0, first_cycle_steps=2, t_mul=2.0, m_mul=0.5)
    >>> [round(float(s(i)), 3) for i in range(7)]
    [1.0, 0.5, 0.5, 0.427, 0.25, 0.073, 0.25]
    """

    def __init__(
        self,
        initial_lr: float,
        first_cycle_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        min_lr: float = 0.0,
    ):
        self.initial_lr = _base.check_lr("initial_lr", initial_lr, positive=True)
        self.first_cycle_steps = _base.check_steps(
            "first_cycle_steps", first_cycle_steps, minimum=1
        )
        self.t_mul = _validate.check_real("t_mul", t_mul)
        _validate.check_at_least("t_mul", self.t_mul, 1.0)
        _validate.check_finite("t_mul", self.t_mul)
        self.m_mul = _validate.check_real("m_mul", m_mul)
        _validate.check_in_interval(
            "m_mul", self.m_mul, 0.0, 1.0, low_closed=False, high_closed=True
        )
        self.min_lr = _base.check_lr("min_lr", min_lr)
        _validate.check_greater(
            "initial_lr", self.initial_lr, "min_lr", self.min_lr, strict=False
        )
        self._table = _cycle_table(self.first_cycle_steps, self.t_mul)

    def _cycle(self, step: Any) -> tuple[Any, Any, Any]:
        """(cycle index, step within it, cycle length), all float32."""
        if self._table is not None:
            return self._cycle_from_table(step)
        t0 = self.first_cycle_steps
        if self.t_mul == 1.0:
            # Exact integer arithmetic.
            return (
                ops.cast(step // t0, "float32"),
                ops.cast(step % t0, "float32"),
                ops.full((), float(t0), dtype="float32"),
            )
        # Cycle ``k`` starts at ``t0 (r**k - 1) / (r - 1)``. Computed in
        # float64 where the backend has it (float32 puts a start such as
        # 2200 for t0=1000, r=1.2 at 2200.0002, a step late), and a start
        # within rounding error of an integer is taken as that integer, so
        # the new cycle's peak lands on its step however it is evaluated.
        # (`ops.floor` and `ops.maximum` compute in float32 on some
        # backends: avoided here.)
        dtype = _base.wide_float_dtype(step)
        tol = _START_TOL[dtype]
        r_minus_1 = _r_minus_1(self.t_mul)
        log_r = math.log1p(r_minus_1)
        scale = t0 / r_minus_1
        s = ops.cast(step, dtype)

        def start(k):
            exact = scale * ops.expm1(k * log_r)
            nearest = ops.round(exact)
            close = ops.abs(exact - nearest) <= tol * (ops.abs(nearest) + 1.0)
            return ops.where(close, nearest, exact)

        # floor(log_r(1 + s / scale)), the logarithm being >= 0.
        i = ops.log1p(s / scale) / log_r
        i = ops.cast(ops.cast(ops.clip(i, 0.0, _base._MAX_FLOAT_STEP), "int32"), dtype)
        # The logarithm may land one cycle off at a boundary: correct it.
        i = ops.where(s < start(i), i - 1.0, i)
        i = ops.where(s >= start(i + 1.0), i + 1.0, i)
        length = t0 * ops.exp(i * log_r)
        t = s - start(i)
        return (
            ops.cast(i, "float32"),
            ops.cast(t, "float32"),
            ops.cast(length, "float32"),
        )

    def _cycle_from_table(self, step: Any) -> tuple[Any, Any, Any]:
        """`_cycle` read off the host table of cycle starts (`_cycle_table`).

        The cycle is found by a binary search of the step among the first
        integer steps of the cycles (exact integer comparisons); the step
        within it is ``(step - floor(start)) - frac(start)``, an integer
        difference and a float32 fraction. Exact on every backend, float32
        ones (JAX without x64) included.
        """
        first, base, frac, length = self._table
        shape = ops.shape(step)
        flat = ops.reshape(step, (-1,))
        i = ops.searchsorted(ops.convert_to_tensor(first), flat, side="right") - 1
        i = ops.maximum(i, 0)
        since = flat - ops.take(ops.convert_to_tensor(base), i)
        t = ops.cast(since, "float32") - ops.take(ops.convert_to_tensor(frac), i)
        cycle_length = ops.take(ops.convert_to_tensor(length), i)
        return tuple(
            ops.reshape(v, shape)
            for v in (ops.cast(i, "float32"), ops.maximum(t, 0.0), cycle_length)
        )

    def __call__(self, step):
        step = _base.int_step(step)
        i, t, length = self._cycle(step)
        frac = ops.clip(t / length, 0.0, 1.0)
        peak = self.initial_lr * ops.power(self.m_mul, i)
        return _base.anneal(peak, self.min_lr, frac, "cos")

    def get_config(self) -> dict:
        return {
            "initial_lr": self.initial_lr,
            "first_cycle_steps": self.first_cycle_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "min_lr": self.min_lr,
        }
