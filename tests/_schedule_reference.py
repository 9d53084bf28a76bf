"""Closed forms of the schedules in float64 numpy, written from the papers'
and PyTorch's documented formulas independently of keras_lr (loops, float
or exact rational cycle arithmetic where keras_lr uses integer or
logarithmic arithmetic), and helpers to evaluate a schedule the way each
backend's compiled step does."""

from __future__ import annotations

import math
from fractions import Fraction

import keras
import numpy as np


def cyclic(n, base, top, up, down=None, mode="triangular", gamma=1.0, values=None):
    """PyTorch's documented CyclicLR formula (float arithmetic)."""
    down = up if down is None else down
    total = float(up + down)
    ratio = up / total
    cycle = math.floor(1 + n / total)
    x = 1.0 + n / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if mode == "triangular":
        amp = 1.0
    elif mode == "triangular2":
        amp = 0.5 ** (cycle - 1)
    else:
        amp = gamma**n
    lo, hi = (base, top) if values is None else values
    return lo + (hi - lo) * scale * amp


def cyclic_momentum(n, base_m, max_m, up, down=None, mode="triangular", gamma=1.0):
    h = cyclic(n, 0.0, 1.0, up, down, mode, gamma)
    return max_m - (max_m - base_m) * h


def one_cycle(
    n,
    max_lr,
    total,
    pct=0.3,
    div=25.0,
    final_div=1e4,
    anneal="cos",
    three_phase=False,
    points=None,
):
    """PyTorch's documented OneCycleLR phases, holding the end past total-1."""
    initial = max_lr / div
    final = initial / final_div
    n = min(n, total - 1)
    if three_phase:
        ends = [pct * total - 1, 2 * pct * total - 2, total - 1]
        pts = points or [initial, max_lr, initial, final]
    else:
        ends = [pct * total - 1, total - 1]
        pts = points or [initial, max_lr, final]
    start = 0.0
    for i, end in enumerate(ends):
        if n <= end or i == len(ends) - 1:
            frac = 1.0 if end == start else (n - start) / (end - start)
            a, b = pts[i], pts[i + 1]
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * frac) + 1)
            return (b - a) * frac + a
        start = end
    raise AssertionError


def warmup(n, target_fn, warmup_steps, initial=0.0, shape="linear"):
    if warmup_steps == 0 or n >= warmup_steps:
        return target_fn(n - warmup_steps)
    t0 = target_fn(0)
    if shape == "linear":
        return initial + (t0 - initial) * n / warmup_steps
    return initial * (t0 / initial) ** (n / warmup_steps) if t0 > 0 else 0.0


def warmup_cosine(n, peak, total, warm, final=0.0):
    if n < warm:
        return peak * n / warm
    d = total - warm
    t = min(n - warm, d)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * t / d))


def wsd(n, peak, total, warm, frac=0.1, final=0.0, decay="linear"):
    k = max(1, round(frac * total))
    if n < warm:
        return peak * n / warm
    if n <= total - k:
        return peak
    q = min(n - (total - k), k) / k
    if decay == "linear":
        return peak + (final - peak) * q
    if decay == "cosine":
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * q))
    return peak - (peak - final) * math.sqrt(q)


def sgdr_starts(t0, t_mul, limit):
    """The steps at which the cycles start, up to `limit`, as exact fractions.

    The cycles are walked one by one in rational arithmetic, with `t_mul`
    taken as the decimal it is written as (1.2 is 6/5, not the float
    1.1999999999999999556), so a cycle that starts on an integer step
    starts there exactly.
    """
    r = Fraction(repr(float(t_mul)))
    starts, start, length = [], Fraction(0), Fraction(t0)
    while start <= limit:
        starts.append(start)
        start += length
        length *= r
    return starts


def sgdr(n, initial, t0, t_mul=2.0, m_mul=1.0, min_lr=0.0):
    """Walks the cycles one by one (no logarithm), exactly (`sgdr_starts`)."""
    if t_mul == 1.0:
        i, start, length = n // t0, n // t0 * t0, t0
    else:
        starts = sgdr_starts(t0, t_mul, n)
        i, start = len(starts) - 1, starts[-1]
        length = Fraction(t0) * Fraction(repr(float(t_mul))) ** i
    peak = initial * m_mul**i
    return min_lr + (peak - min_lr) * 0.5 * (
        1 + math.cos(math.pi * float((n - start) / length))
    )


def inverse_sqrt(n, peak, warm):
    return peak * n / warm if n < warm else peak * math.sqrt(warm / n)


# ---------------------------------------------------------------------------


def step_dtype() -> str:
    """The optimizer counter's dtype on this backend."""
    return "int32" if keras.backend.backend() == "jax" else "int64"


def compiled(schedule):
    """`schedule` as the compiled train step runs it, on this backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: schedule(s), jit_compile=True)
        return lambda steps: np.asarray(fn(tf.constant(steps, dtype="int64")))
    if backend == "jax":
        import jax

        fn = jax.jit(lambda s: schedule(s))
        return lambda steps: np.asarray(fn(np.asarray(steps, dtype="int32")))
    import torch

    return lambda steps: (
        schedule(torch.as_tensor(np.asarray(steps, dtype="int64"))).cpu().numpy()
    )


def values(schedule, steps):
    """Vectorized compiled evaluation at several steps, as float64."""
    return np.asarray(compiled(schedule)(np.asarray(steps)), dtype=np.float64)


def scalar_values(schedule, steps):
    """One call per step with a scalar counter (as the optimizer does)."""
    fn = compiled(schedule)
    return np.array([float(fn(np.asarray(s))) for s in steps], dtype=np.float64)
