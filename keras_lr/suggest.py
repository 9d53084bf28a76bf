"""Learning-rate suggestion rules: pure functions of a range test's curve.

Each rule takes the learning rates of a sweep and each step's own loss and
returns a learning rate. None imports keras; all are safe with NaN and Inf
(those points are dropped, and the curve is cut at the first one, where the
run diverged), with zero and with negative losses.

Published rules, written from their published descriptions as baselines:

- `valley`: fastai's default since v2.5 (the longest valley of the smoothed
  curve, a point about halfway down it).
- `steep`: fastai's steepest slope of the smoothed loss against log(lr).
- `minimum`: fastai's "minimum / 10": a tenth of the rate at the lowest
  smoothed loss.
- `steepest`: torch-lr-finder's rule, the most negative finite-difference
  gradient of the smoothed loss over the curve with its first 10 and last 5
  points skipped.

keras_lr's own curve rule, `default`, works on a zero-phase smoothing of the
curve (no exponential-average lag, which shifts every feature of the curve
to higher rates) and returns the geometric middle of the stretch where the
loss falls fastest; see `default` for the formula.

References:
    Smith, L. N. (2017). Cyclical Learning Rates for Training Neural
    Networks. WACV. arXiv:1506.01186.
    Howard, J. & Gugger, S. (2020). fastai: A Layered API for Deep Learning.
    arXiv:2002.04688.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from keras_lr import _validate
from keras_lr._detect import ema_smooth

__all__ = [
    "RULES",
    "candidates",
    "clean_curve",
    "default",
    "minimum",
    "race_winner",
    "steep",
    "steepest",
    "valley",
]


def clean_curve(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checks a curve and cuts it at its first non-finite loss.

    Args:
        lrs: learning rates, positive, finite and strictly increasing.
        losses: each step's loss, the same length.

    Returns:
        ``(lrs, losses)`` as float64 arrays up to the first non-finite loss.

    Raises:
        ValueError: on different lengths, or rates that are not positive,
            finite and strictly increasing (a sweep in another order, or
            with a repeated rate, has no slope to read).

    Example:

    >>> clean_curve([1e-3, 1e-2, 1e-1], [1.0, 0.5, float("nan")])
    (array([0.001, 0.01 ]), array([1. , 0.5]))
    """
    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if lrs.shape != losses.shape:
        raise ValueError(
            "Arguments `lrs` and `losses` must have the same length. "
            f"Received: len(lrs)={lrs.size}, len(losses)={losses.size}"
        )
    if lrs.size and not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError("Argument `lrs` must hold positive, finite learning rates.")
    steps = np.diff(lrs)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            "Argument `lrs` must be strictly increasing (the rates of a sweep, "
            f"in order). Received: lrs[{i}]={float(lrs[i])!r}, "
            f"lrs[{i + 1}]={float(lrs[i + 1])!r}"
        )
    bad = np.flatnonzero(~np.isfinite(losses))
    end = int(bad[0]) if bad.size else losses.size
    return lrs[:end], losses[:end]


def _smoothing(smoothing: Any) -> float:
    return _validate.check_smoothing("smoothing", smoothing)


def _need(lrs: np.ndarray, n: int, rule: str) -> None:
    if lrs.size < n:
        raise ValueError(
            f"The `{rule}` rule needs at least {n} finite points of the curve. "
            f"Received: {lrs.size} (run a longer range test, or one that "
            "starts at a lower rate)"
        )


def _fastai_trim(lrs: np.ndarray, losses: np.ndarray, smoothing: float):
    """fastai smooths with its recorder's EMA and drops the first tenth and
    the last five points of the sweep before applying its rules."""
    smoothed = ema_smooth(losses, smoothing)
    n = lrs.size
    start, stop = n // 10, n - 5
    if stop - start < 3:
        start, stop = 0, n
    return lrs[start:stop], smoothed[start:stop]


def valley(lrs: Any, losses: Any, *, smoothing: float = 0.98) -> float:
    """fastai's valley rule.

    On the EMA-smoothed curve, finds the longest strictly decreasing
    subsequence (an O(n^2) dynamic programme); its span ``[a, b]`` is the
    valley, and the rule returns the rate at ``a + floor(w/3) + floor(w/6)``
    with ``w = b - a``: a point about half-way down the valley.

    Example:

    >>> lrs = np.geomspace(1e-5, 1.0, 50)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.5) + (lrs > 0.1) * 5
    >>> 1e-4 < valley(lrs, losses, smoothing=0.0) < 1e-2
    True
    """
    smoothing = _smoothing(smoothing)
    lrs, losses = clean_curve(lrs, losses)
    _need(lrs, 5, "valley")
    lrs, smoothed = _fastai_trim(lrs, losses, smoothing)
    n = smoothed.size
    run = np.ones(n, dtype=np.int64)
    best_end = 0
    best_start = 0
    for i in range(1, n):
        lower = smoothed[:i] > smoothed[i]
        if np.any(lower):
            run[i] = int(run[:i][lower].max()) + 1
        if run[i] > run[best_end]:
            best_end = i
            best_start = i - int(run[i])
    width = best_end - max(best_start, 0)
    index = max(best_start, 0) + int(width / 3) + int(width / 6)
    return float(lrs[min(index, n - 1)])


def steep(lrs: Any, losses: Any, *, smoothing: float = 0.98) -> float:
    """fastai's steep rule: steepest descent of the smoothed loss in log(lr).

    ``argmin_i (s_{i+1} - s_i) / (log lr_{i+1} - log lr_i)``.

    Example:

    >>> lrs = np.geomspace(1e-5, 1.0, 50)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3.0)
    >>> 3e-4 < steep(lrs, losses, smoothing=0.0) < 3e-3
    True
    """
    smoothing = _smoothing(smoothing)
    lrs, losses = clean_curve(lrs, losses)
    _need(lrs, 3, "steep")
    lrs, smoothed = _fastai_trim(lrs, losses, smoothing)
    slope = np.diff(smoothed) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slope))])


def minimum(lrs: Any, losses: Any, *, smoothing: float = 0.98) -> float:
    """fastai's "minimum / 10": a tenth of the rate at the lowest smoothed loss.

    Example:

    >>> lrs = np.geomspace(1e-5, 1.0, 51)
    >>> losses = (np.log10(lrs) + 2.0) ** 2
    >>> round(minimum(lrs, losses, smoothing=0.0), 6)
    0.001
    """
    smoothing = _smoothing(smoothing)
    lrs, losses = clean_curve(lrs, losses)
    _need(lrs, 3, "minimum")
    lrs, smoothed = _fastai_trim(lrs, losses, smoothing)
    return float(lrs[int(np.argmin(smoothed))] / 10.0)


def steepest(
    lrs: Any,
    losses: Any,
    *,
    smoothing: float = 0.98,
    skip_start: int = 10,
    skip_end: int = 5,
) -> float:
    """torch-lr-finder's rule: the most negative gradient of the smoothed loss.

    ``argmin_i np.gradient(s)_i`` over the curve without its first
    `skip_start` and last `skip_end` points (the loss of torch-lr-finder's
    history is its smoothed loss).

    Example:

    >>> lrs = np.geomspace(1e-5, 1.0, 60)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3.0)
    >>> 3e-4 < steepest(lrs, losses, smoothing=0.0) < 3e-3
    True
    """
    smoothing = _smoothing(smoothing)
    skip_start = _validate.check_int("skip_start", skip_start, minimum=0)
    skip_end = _validate.check_int("skip_end", skip_end, minimum=0)
    lrs, losses = clean_curve(lrs, losses)
    smoothed = ema_smooth(losses, smoothing)
    n = lrs.size
    if n - skip_start - skip_end < 3:
        skip_start, skip_end = 0, 0
    _need(lrs[skip_start : n - skip_end], 3, "steepest")
    lrs = lrs[skip_start : n - skip_end]
    smoothed = smoothed[skip_start : n - skip_end]
    return float(lrs[int(np.argmin(np.gradient(smoothed)))])


def zero_phase_smooth(losses: np.ndarray, width: float) -> np.ndarray:
    """Gaussian smoothing with no lag (a centred kernel, edges renormalised).

    Example:

    >>> zero_phase_smooth(np.array([0.0, 0.0, 3.0, 0.0, 0.0]), 1.0).round(2).tolist()
    [0.23, 0.77, 1.21, 0.77, 0.23]
    """
    x = np.asarray(losses, dtype=np.float64)
    if width <= 0 or x.size < 3:
        return x.copy()
    radius = max(1, int(np.ceil(3 * width)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / width) ** 2)
    padded = np.convolve(x, kernel, mode="full")[radius : radius + x.size]
    norm = np.convolve(np.ones_like(x), kernel, mode="full")[radius : radius + x.size]
    return padded / norm


def _descent(lrs: np.ndarray, losses: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Zero-phase smoothed curve, its minimum and the start of its descent.

    The start of the descent is the point after the last one (before the
    minimum) where the smoothed loss was still within 10% of the fall from
    the curve's starting level (the median of its first tenth) to its
    minimum: robust to noise on the plateau, where earlier crossings happen.
    """
    n = lrs.size
    smoothed = zero_phase_smooth(losses, max(1.0, n / 25.0))
    i_min = int(np.argmin(smoothed))
    head = float(np.median(smoothed[: max(3, n // 10)]))
    drop = head - float(smoothed[i_min])
    if drop <= 0 or i_min == 0:
        return i_min, i_min, smoothed
    high = np.flatnonzero(smoothed[:i_min] >= head - 0.1 * drop)
    i_start = int(high[-1]) + 1 if high.size else 0
    return min(i_start, i_min), i_min, smoothed


def default(lrs: Any, losses: Any) -> float:
    """keras_lr's curve rule.

    1. Cut the curve at its first non-finite loss; smooth it with a centred
       Gaussian of width ``n / 25`` points (no lag, unlike an EMA, whose lag
       moves every feature of the curve to higher rates).
    2. Find the smoothed minimum ``i_min`` and the start of the descent
       ``i_0``, after the last point still within 10% of the fall from the
       starting level to the minimum.
    3. Return the geometric middle of the fast descent: the geometric mean
       of the rate at its steepest point, ``argmin_i ds/dlog(lr)`` on
       ``[i_0, i_min]``, and the rate at the minimum,
       ``sqrt(lr_steep * lr_min)``.
    4. A curve with no descent before its minimum gives a tenth of the
       rate at the minimum, fastai's "minimum / 10". When the loss only
       rises (a model that is already trained), its lowest point is the
       first one and the answer ``lrs[0] / 10`` lies below the sweep: such
       a curve says little, and `LRRangeTestResult.diagnostics` reports it
       ("no descent").

    Both ends are read off a curve without lag: the steepest point is where
    the rate starts to pay off, the minimum where it stops; their middle is
    the rule of thumb "between the steepest point and the minimum" (Smith
    2017, arXiv:1506.01186; Howard & Gugger 2020, arXiv:2002.04688) made
    precise.

    Example:

    >>> lrs = np.geomspace(1e-6, 10.0, 100)
    >>> x = np.log10(lrs)
    >>> losses = 2.3 - 2.0 / (1 + np.exp(-3 * (x + 3))) + np.exp(3 * (x + 1.5))
    >>> 1e-3 < default(lrs, losses) < 1e-2
    True
    """
    lrs, losses = clean_curve(lrs, losses)
    _need(lrs, 5, "default")
    i_start, i_min, smoothed = _descent(lrs, losses)
    if i_min <= i_start:
        return float(lrs[i_min] / 10.0)
    seg = slice(i_start, i_min + 1)
    # Slopes of the whole curve, then cut: central differences at both ends
    # of the descent too (a one-sided difference at the minimum could make
    # the minimum itself the steepest point).
    slope = np.gradient(smoothed, np.log(lrs))[seg]
    lr_steep = float(lrs[seg][int(np.argmin(slope))])
    return float(np.sqrt(lr_steep * lrs[i_min]))


def candidates(lrs: Any, losses: Any, *, num: int = 4) -> list[float]:
    """Rates worth racing, read off a curve: a half-decade ladder.

    The ladder brackets the rate at the (zero-phase smoothed) minimum: it
    starts half a decade above it and steps down by ``sqrt(10)``; the
    `default` rule's rate takes the place of its nearest rung. The sweep's
    minimum is where the loss fell fastest *during a sweep*; sustained
    training may want more or less, which the race decides.

    Args:
        lrs: learning rates of the sweep.
        losses: each step's loss.
        num: how many rates at most, an int >= 1.

    Returns:
        Increasing learning rates.

    Raises:
        TypeError: if `num` is not an int.
        ValueError: if `num` < 1, or the curve is invalid or too short.

    Example:

    >>> lrs = np.geomspace(1e-6, 10.0, 100)
    >>> x = np.log10(lrs)
    >>> losses = 2.3 - 2.0 / (1 + np.exp(-3 * (x + 3))) + np.exp(3 * (x + 1.5))
    >>> [f"{lr:.1e}" for lr in candidates(lrs, losses)]
    ['6.6e-04', '2.5e-03', '6.6e-03', '2.1e-02']
    """
    num = _validate.check_int("num", num, minimum=1)
    lrs, losses = clean_curve(lrs, losses)
    _need(lrs, 5, "candidates")
    _, i_min, _ = _descent(lrs, losses)
    top = float(lrs[i_min]) * np.sqrt(10.0)
    ladder = [top / 10 ** (k / 2) for k in range(num)]
    rule = default(lrs, losses)
    # Put the curve rule's own rate in place of its nearest rung.
    nearest = int(np.argmin([abs(np.log(lr / rule)) for lr in ladder]))
    ladder[nearest] = rule
    return sorted({float(lr) for lr in ladder})


def race_winner(lrs: Any, scores: Any, samples: Any = None) -> float:
    """The rate a race points to: parabolic interpolation around its best.

    With candidates a half decade apart, taking the best one outright
    quantises the answer to that ladder and lets one noisy score decide.
    Instead, fit a parabola in ``log(lr)`` through the best candidate and
    its two neighbours and return its vertex,

    ``x* = x_1 - ((x_1 - x_0)^2 (s_1 - s_2) - (x_1 - x_2)^2 (s_1 - s_0)) /
    (2 ((x_1 - x_0)(s_1 - s_2) - (x_1 - x_2)(s_1 - s_0)))``

    (the step of successive parabolic interpolation, Brent 1973, ch. 5),
    clipped to the neighbours' interval. A best candidate at the bottom of
    the ladder is returned as it is (there is nothing to interpolate
    against). A best candidate at the *top* is not: it is the highest rate
    raced, above the range test's loss minimum, and a short race cannot see
    an instability that sets in later (the sharpness of the loss keeps
    rising during training until it reaches ``2 / lr``: Cohen et al. 2021,
    arXiv:2103.00065), while a rate past that edge fails outright instead of
    degrading gracefully. The answer then is the geometric middle of the
    top candidate and its neighbour, ``sqrt(lr_top * lr_next)``: the
    optimum lies above the neighbour, and halfway there keeps a margin
    from the edge. Non-finite scores (a candidate that diverged) count as
    worst.

    With `samples`, paired measurements behind each score (the held-out
    loss of each of several fixed chunks of samples, or the training loss
    of each of the race's last steps, which every candidate takes on the
    same batches), the one-standard-error rule comes first (Breiman et al.
    1984; Hastie, Tibshirani & Friedman 2009, sec. 7.10): when the
    candidate just below the best is worse by no more than one standard
    error of the paired differences, ``mean(d) <= std(d) / sqrt(n)`` with
    ``d = s_below - s_best``, the race cannot tell them apart, and the lower
    rate is returned: a short race favours rates that make fast early
    progress, while a longer run at a rate nearer its edge of stability
    pays for it with noise.

    Args:
        lrs: the candidates' rates, increasing.
        scores: each candidate's score, lower is better.
        samples: optional, one 1-D sequence of paired measurements per
            candidate (same length for all; None for a candidate without).

    Returns:
        A learning rate.

    Raises:
        ValueError: empty or mismatched inputs, or no finite score.

    Example:

    >>> lrs = [1e-3, 1e-2, 1e-1]
    >>> f"{race_winner(lrs, [0.9, 0.5, 0.7]):.2e}"
    '1.47e-02'
    >>> f"{race_winner(lrs, [0.9, 0.7, 0.5]):.4f}"  # the top: halfway back
    '0.0316'
    >>> race_winner(lrs, [0.5, 0.7, 0.9])  # the bottom: itself
    0.001
    >>> tied = [[0.6, 0.4, 0.55, 0.45], [0.5, 0.5, 0.5, 0.5], [0.9] * 4]
    >>> race_winner(lrs, [0.5, 0.5 - 1e-9, 0.9], samples=tied)  # within 1 SE
    0.001
    """
    lrs = np.asarray(lrs, dtype="float64").reshape(-1)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    if lrs.size == 0 or lrs.shape != scores.shape:
        raise ValueError(
            "Arguments `lrs` and `scores` must be non-empty and of the same "
            f"length. Received: {lrs.size} rates and {scores.size} scores"
        )
    if not np.all(np.isfinite(lrs)) or np.any(lrs <= 0) or np.any(np.diff(lrs) <= 0):
        raise ValueError(
            f"Argument `lrs` must be positive and increasing. Received: {lrs}"
        )
    if not np.any(np.isfinite(scores)):
        raise ValueError(f"No finite score in the race. Received: scores={scores}")
    scores = np.where(np.isfinite(scores), scores, np.inf)
    i = int(np.argmin(scores))
    if samples is not None and i > 0 and _within_one_se(samples, i - 1, i):
        return float(lrs[i - 1])
    if i == lrs.size - 1 and i > 0:
        return float(np.sqrt(lrs[i] * lrs[i - 1]))
    if i == 0 or not np.all(np.isfinite(scores[i - 1 : i + 2])):
        return float(lrs[i])
    x0, x1, x2 = np.log(lrs[i - 1 : i + 2])
    s0, s1, s2 = scores[i - 1 : i + 2]
    p = (x1 - x0) * (s1 - s2)
    q = (x1 - x2) * (s1 - s0)
    denominator = 2.0 * (p - q)
    if denominator == 0.0:
        return float(lrs[i])
    vertex = x1 - ((x1 - x0) * p - (x1 - x2) * q) / denominator
    return float(np.exp(np.clip(vertex, x0, x2)))


def _within_one_se(samples: Any, below: int, best: int) -> bool:
    """Whether candidate `below` is within one standard error of `best`.

    On the paired differences of their samples; False when either has none
    or any is not finite.
    """
    if len(samples) <= max(below, best):
        return False
    a, b = samples[below], samples[best]
    if a is None or b is None:
        return False
    a = np.asarray(a, dtype="float64").reshape(-1)
    b = np.asarray(b, dtype="float64").reshape(-1)
    if a.size != b.size or a.size < 2:
        return False
    d = a - b
    if not np.all(np.isfinite(d)):
        return False
    return bool(d.mean() <= d.std(ddof=1) / np.sqrt(d.size))


#: Every rule by name, as `LRRangeTestResult.suggestion` takes them.
RULES: dict[str, Callable[..., float]] = {
    "default": default,
    "valley": valley,
    "steep": steep,
    "minimum": minimum,
    "steepest": steepest,
}
