"""Divergence tests on a stream of per-step losses.

One implementation serves the range test (which stops its sweep when the
smoothed loss climbs past ``diverge_threshold`` times its best) and the
`DivergenceDetector` callback (which also looks for spikes against a smoothed
baseline and for outliers by a robust z-score). Everything here is numpy and
pure Python: no keras import, so it is tested on plain arrays.

The smoothed loss is the bias-corrected exponential moving average of
Kingma & Ba (2015, arXiv:1412.6980), as used by the LR range test of Smith
(2017, arXiv:1506.01186) and its implementations::

    m_t = beta * m_{t-1} + (1 - beta) * loss_t,   m_0 = 0
    s_t = m_t / (1 - beta ** t)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: MAD to standard deviation for normal data: 1 / Phi^-1(3/4).
_MAD_TO_STD = 1.4826
#: How many robust standard deviations (of the log-losses) below the losses
#: seen so far a provisional best may lie and still count as a lucky draw of
#: the same noise (`LossWatch._lucky`); a normal draw lies there with
#: probability about 3e-5.
_LUCKY_Z = 4.0
#: Mann-Kendall statistic above which the losses since a provisional best
#: climb (one-sided, about 0.1% of stationary streams).
_TREND_Z = 3.0


def ema_smooth(losses: Any, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average of a loss sequence.

    ``s_t = m_t / (1 - beta**t)`` with ``m_t = beta m_{t-1} + (1 - beta) x_t``.
    A non-finite loss makes every later smoothed value non-finite, which is
    what a divergence test wants to see.

    Args:
        losses: 1-D sequence of per-step losses.
        smoothing: ``beta`` in ``[0, 1)``; 0 returns the losses unchanged.

    Returns:
        A float64 array of the same length.

    Raises:
        TypeError: if `smoothing` is not a number.
        ValueError: if `smoothing` is not in ``[0, 1)``.

    Example:

    >>> ema_smooth([1.0, 1.0, 1.0], 0.9).tolist()
    [1.0, 1.0, 1.0]
    >>> ema_smooth([2.0, 0.0], 0.5).round(4).tolist()
    [2.0, 0.6667]
    """
    from keras_lr._validate import check_smoothing

    smoothing = check_smoothing("smoothing", smoothing)
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    out = np.empty_like(x)
    m = 0.0
    for t, value in enumerate(x, start=1):
        m = smoothing * m + (1.0 - smoothing) * value
        out[t - 1] = m / (1.0 - smoothing**t)
    return out


@dataclass(frozen=True)
class DivergenceEvent:
    """What a `LossWatch` saw.

    Attributes:
        step: index of the step in the stream (0-based, over all updates).
        reason: ``"nonfinite"`` (NaN or Inf loss), ``"nonfinite_weights"``
            (a caller's check of the weights), ``"above_best"`` (smoothed
            loss over ``best_ratio`` times its best), ``"spike"`` (loss over
            ``spike_ratio`` times the smoothed baseline) or ``"zscore"``
            (robust z-score over ``z_threshold``).
        loss: the loss at that step.
        baseline: the figure it was compared with (best smoothed loss,
            smoothed baseline or window median).
        score: the ratio or z-score that crossed the threshold (NaN for
            ``"nonfinite"``).
    """

    step: int
    reason: str
    loss: float
    baseline: float
    score: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


class LossWatch:
    """Streaming divergence tests over per-step losses.

    Tests, each on when its threshold is given:

    - non-finite loss (always on, and not subject to the grace period);
    - ``best_ratio``: smoothed loss ``s_t > best_ratio * min(s_0..s_{t-1})``
      (for a best at or below zero, ``s_t - best > (best_ratio - 1) * |best|``);
    - ``spike_ratio``: raw loss ``x_t > spike_ratio * s_{t-1}``;
    - ``z_threshold``: robust z-score of ``x_t`` against the previous
      ``window`` raw losses, ``(x_t - median) / (1.4826 * MAD)``, upward only
      (Iglewicz & Hoaglin, 1993); with ``log_z=True`` on ``log x`` instead,
      whose spread is closer to symmetric for the right-skewed noise of
      small-batch losses (every loss in the window must then be > 0).

    The ratio and z tests start after ``grace_steps`` steps and fire after
    ``patience`` consecutive violating steps; in the grace period only a
    blow-up counts, a smoothed loss over ``best_ratio**3`` times its best. With ``rise_fraction`` a
    violation also has to be material: the tested loss ``v`` must have given
    back at least that fraction of the progress made since the stream began,
    ``v - best >= rise_fraction * (reference - best)``, where ``reference`` is
    the first smoothed loss of the stream (kept across `rebase`). Late in
    training, when the loss is a small fraction of where it started, a noisy
    batch can be many times the baseline without being a divergence; a
    divergence gives back a large part of what training had gained.

    With ``confirm=k`` the ``best_ratio`` test also needs the median of the
    last ``k`` raw losses halfway up to its limit (``best * (1 + best_ratio)
    / 2``; against a provisional best, all of them over ``best_ratio`` times
    that best, and times the median of the losses so far where that best
    looks like a lucky batch: the losses since do not climb and it lies
    within ``_LUCKY_Z`` robust standard deviations of their logarithms),
    unless the
    smoothed loss is over ``best_ratio**2 * best`` (``best_ratio**3`` times a
    provisional best and the median of the raw losses so far; a blow-up by
    orders of magnitude): a divergence lifts most batches, while near a loss
    of zero (a model that already fits its data, e.g. when `fit` resumes a
    trained model) a few unlucky batches lift the EMA many times over its
    best without moving the median.

    Args:
        smoothing: EMA factor ``beta`` in ``[0, 1)``.
        best_ratio: threshold of the ratio to the best smoothed loss, > 1.
        spike_ratio: threshold of the ratio to the smoothed baseline, > 1.
        z_threshold: robust z-score threshold, > 0.
        window: number of previous losses the z-score looks at.
        grace_steps: steps before the ratio and z tests start.
        patience: consecutive violations before an event.
        log_z: compute the z-score on ``log(loss)``.
        rise_fraction: materiality gate of the ratio and z tests, >= 0, or
            None (off).
        confirm: number of recent raw losses whose median must also be
            halfway up to the ``best_ratio`` limit (None: off).
        warmup: a best smoothed loss set before this many losses into the
            stream (or after a `rebase`) is provisional: those values of the
            debiased EMA average only a few batches, and one lucky batch
            could set a best that the run's ordinary level is many times
            over. With `confirm`, a rise above a provisional best must lift
            all of the last `confirm` raw losses over the limit (a
            divergence from the first steps does), and a rise above the
            best settled after `warmup` their median.

    Example:

    >>> watch = LossWatch(smoothing=0.0, best_ratio=4.0)
    >>> watch.update([2.0, 1.0, 0.5]) is None
    True
    >>> watch.update([1.0, 3.0])
    DivergenceEvent(step=4, reason='above_best', loss=3.0, baseline=0.5, score=6.0)
    """

    def __init__(
        self,
        *,
        smoothing: float = 0.98,
        best_ratio: float | None = None,
        spike_ratio: float | None = None,
        z_threshold: float | None = None,
        window: int = 50,
        grace_steps: int = 0,
        patience: int = 1,
        log_z: bool = False,
        rise_fraction: float | None = None,
        confirm: int | None = None,
        warmup: int = 1,
    ):
        self.smoothing = float(smoothing)
        self.best_ratio = best_ratio
        self.spike_ratio = spike_ratio
        self.z_threshold = z_threshold
        self.window = int(window)
        self.grace_steps = int(grace_steps)
        self.patience = max(1, int(patience))
        self.log_z = bool(log_z)
        self.rise_fraction = rise_fraction
        self.confirm = confirm
        self.warmup = max(1, int(warmup))
        self.reset()

    def reset(self) -> None:
        """Forgets the stream: the next loss is step 0 of a new stream."""
        self.step = 0
        self._m = 0.0
        self._t = 0
        self.smoothed = float("nan")
        self.best = float("inf")
        self._settled_best = float("inf")
        self._violations = 0
        self._recent: deque[float] = deque(
            maxlen=max(self.window, self.confirm or 1, 1)
        )
        self.reference = float("nan")
        self._grace_start = 0

    @property
    def healthy(self) -> bool:
        """No test is in violation at the last step (patience not started)."""
        return self._violations == 0

    @property
    def steady(self) -> bool:
        """Healthy, and neither the last loss nor the smoothed one is over
        ``best_ratio`` times the best (where that rise is material).

        A rise not yet confirmed by the tests is no state to keep: a
        snapshot taken there would roll back into the divergence.
        """
        if not self.healthy:
            return False
        if self.best_ratio is None or not math.isfinite(self.best) or not self._recent:
            return True
        limit = self.best + (self.best_ratio - 1.0) * abs(self.best)
        return not any(
            value > limit and self._material(value)
            for value in (self._recent[-1], self.smoothed)
        )

    @property
    def in_grace(self) -> bool:
        """The next loss falls in the grace period (ratio and z tests off)."""
        return self.step < self._grace_until

    def rebase(self, step: int | None = None) -> None:
        """Restarts the baselines but keeps the step count and the reference.

        Used after a recovery: the next loss starts a fresh EMA, best and
        window, and the grace period counts from here.

        Args:
            step: the index of the next loss (default: where the stream is).
        """
        step = self.step if step is None else int(step)
        reference = self.reference
        self.reset()
        self.step = step
        self._grace_start = step
        self.reference = reference

    @property
    def _grace_until(self) -> int:
        return self._grace_start + self.grace_steps

    def update(self, losses: Any) -> DivergenceEvent | None:
        """Feeds per-step losses; returns the first event among them, if any.

        Losses after an event in the same call are not consumed: `step` is
        left just past the event's step.
        """
        for value in np.asarray(losses, dtype=np.float64).reshape(-1):
            event = self._update_one(float(value))
            if event is not None:
                return event
        return None

    def _update_one(self, x: float) -> DivergenceEvent | None:
        step = self.step
        self.step += 1
        if not math.isfinite(x):
            return DivergenceEvent(step, "nonfinite", x, self.smoothed)
        prev_smoothed = self.smoothed
        self._t += 1
        self._m = self.smoothing * self._m + (1.0 - self.smoothing) * x
        s = self._m / (1.0 - self.smoothing**self._t)
        self.smoothed = s
        if not math.isfinite(self.reference):
            self.reference = s
        event = None
        if step >= self._grace_until:
            event = self._check(step, x, s, prev_smoothed)
        elif self.best_ratio is not None:
            event = self._check_blowup(step, x, s)
        if event is None:
            self.best = min(self.best, s)
            if self._t >= self.warmup:
                self._settled_best = min(self._settled_best, s)
        self._recent.append(x)
        return event

    def _material(self, value: float) -> bool:
        if self.rise_fraction is None:
            return True
        progress = self.reference - self.best
        if not (math.isfinite(progress) and progress > 0):
            return True
        return value - self.best >= self.rise_fraction * progress

    def _confirmed(self, x: float, limit: float, *, settled: bool = True) -> bool:
        """The recent raw losses (x included) are over `limit`.

        Their median, against a settled best; all of them, against a
        provisional one.
        """
        if self.confirm is None:
            return True
        recent = list(self._recent)[-(self.confirm - 1) :] if self.confirm > 1 else []
        values = [*recent, x]
        return float(np.median(values) if settled else min(values)) > limit

    def _median_so_far(self, x: float) -> float:
        """Median of the raw losses since the stream began (or was rebased).

        The window holds the last `window` losses; early in a stream (where
        it is used) that is all of them.
        """
        return float(np.median([*self._recent, x]))

    def _rise(
        self,
        best: float,
        s: float,
        x: float,
        settled: bool,
        waiver: float | None,
        floor: float | None = None,
    ) -> tuple[str, float, float] | None:
        """An ``above_best`` violation of `s` against `best`, or None.

        `s` must exceed ``best_ratio`` times `best`, confirmed by the recent
        raw losses (`_confirmed`: their median halfway up against a settled
        best, all of them over the limit against a provisional one), unless
        it exceeds ``best_ratio**waiver`` times `best`: a few catastrophic
        steps (a blow-up to thousands that leaves a dead network at its
        starting loss) lift it there, ordinary unlucky batches do not.
        """
        excess = (self.best_ratio - 1.0) * abs(best)
        if not (s > best + excess and s > best):
            return None
        # The waiver's reference is at least `floor` (the median of the raw
        # losses so far, for a provisional best): one unusually low first
        # batch (a squared error near zero) must not make the run's ordinary
        # level look like a blow-up.
        ref = best if floor is None else max(best, floor)
        severe = waiver is not None and s > ref + (self.best_ratio**waiver - 1.0) * abs(
            ref
        )
        limit = best + (0.5 * excess if settled else excess)
        if not severe and not self._confirmed(x, limit, settled=settled):
            return None
        if not (severe or settled) and floor is not None and self._lucky(best, x):
            # The provisional best is a lucky batch of the stream's own
            # noise (a model that already fits its data, resumed): confirm
            # against the stream's ordinary level instead.
            limit = ref + (self.best_ratio - 1.0) * abs(ref)
            if not self._confirmed(x, limit, settled=False):
                return None
        return ("above_best", best, s / best if best > 0 else float("inf"))

    def _lucky(self, best: float, x: float) -> bool:
        """Whether a provisional `best` looks like a lucky draw of the stream.

        Two ways a provisional best ends up far below the losses that
        follow it: a lucky early batch of a stationary stream (a model that
        already fits its data, resumed), or the loss of the first step of a
        run that a far too high rate throws to a higher level. The second
        climbs (an upward trend by the Mann-Kendall test, ``Z > 3``; Mann
        1945, Kendall 1975) or leaves the best many spreads below it (a
        robust z-score of ``log(best)`` against the log-losses under
        ``-_LUCKY_Z``). Neither: a lucky draw.
        """
        values = np.array([*self._recent, x], dtype=np.float64)
        n = values.size
        if best <= 0 or n < 3 or np.any(values <= 0):
            return False
        logs = np.log(values)
        median = float(np.median(logs))
        mad = float(np.median(np.abs(logs - median)))
        z = (math.log(best) - median) / (_MAD_TO_STD * max(mad, 1e-2))
        if z <= -_LUCKY_Z:
            return False
        # Mann-Kendall: S = sum over i < j of sign(x_j - x_i), and
        # Var(S) = n (n - 1) (2n + 5) / 18 without ties.
        signs = np.sign(values[None, :] - values[:, None])
        trend = float(np.triu(signs, 1).sum())
        return trend / math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0) <= _TREND_Z

    def _zscore(self, x: float) -> tuple[float, float] | None:
        recent = np.fromiter(self._recent, dtype=np.float64)[-self.window :]
        if self.log_z:
            if x <= 0 or np.any(recent <= 0):
                return None
            recent, x = np.log(recent), math.log(x)
        median = float(np.median(recent))
        mad = float(np.median(np.abs(recent - median)))
        # A floor on the scale keeps a flat stretch of losses (MAD = 0)
        # from turning tiny wiggles into huge z-scores.
        floor = 1e-2 if self.log_z else 1e-3 * abs(median)
        scale = _MAD_TO_STD * max(mad, floor, 1e-12)
        z = (x - median) / scale
        return (math.exp(median) if self.log_z else median), z

    def _check(
        self, step: int, x: float, s: float, prev_s: float
    ) -> DivergenceEvent | None:
        found = None
        if (
            self.best_ratio is not None
            and math.isfinite(self.best)
            and self._material(s)
        ):
            # A best set by the first, barely averaged values is provisional:
            # a rise above it must lift all the last `confirm` losses (or be
            # best_ratio**3 over it and over the median of the losses so
            # far: one lucky early batch, a squared error near zero at batch
            # size 1, must not make the run's ordinary level a blow-up); a
            # rise above a settled best, their median halfway up (or
            # best_ratio**2 over it). Failing that, the rise is tested
            # against the settled best.
            settled = self.best >= self._settled_best
            floor = None if settled else self._median_so_far(x)
            found = self._rise(self.best, s, x, settled, 2.0 if settled else 3.0, floor)
            if found is None and not settled and math.isfinite(self._settled_best):
                found = self._rise(self._settled_best, s, x, True, 2.0)
        material = self._material(x)
        if (
            found is None
            and self.spike_ratio is not None
            and math.isfinite(prev_s)
            and material
        ):
            limit = prev_s + (self.spike_ratio - 1.0) * abs(prev_s)
            if x > limit and x > prev_s:
                score = x / prev_s if prev_s > 0 else float("inf")
                found = ("spike", prev_s, score)
        if (
            found is None
            and self.z_threshold is not None
            and material
            and len(self._recent) >= min(self.window, 10)
        ):
            scored = self._zscore(x)
            if scored is not None and scored[1] > self.z_threshold:
                found = ("zscore", scored[0], scored[1])
        return self._count(step, x, found)

    def _check_blowup(self, step: int, x: float, s: float) -> DivergenceEvent | None:
        """The grace period's one test: a blow-up by orders of magnitude.

        The grace period keeps the noise of the first steps from counting,
        but a smoothed loss over ``best_ratio**3`` (27x) times its best (a
        positive loss), as when the first updates throw the loss up a
        thousandfold and leave a dead network at its starting level, is no
        noise: the EMA would have averaged the blow-up away by the time the
        grace period ends. One outlier batch would have to be over 100
        times the others to hold the early, bias-corrected EMA there for
        `patience` steps. It counts towards `patience` like the other
        tests. (Against the best, not the median of the losses so far: a
        blow-up that lasts a few steps lifts that median too.)
        """
        best = self.best
        found = None
        if (
            math.isfinite(best)
            and best > 0
            and s > self.best_ratio**3 * best
            and self._material(s)
        ):
            found = ("above_best", best, s / best)
        return self._count(step, x, found)

    def _count(
        self, step: int, x: float, found: tuple[str, float, float] | None
    ) -> DivergenceEvent | None:
        """Applies `patience` to a violation found at `step` (or to none)."""
        if found is None:
            self._violations = 0
            return None
        self._violations += 1
        if self._violations < self.patience:
            return None
        self._violations = 0
        reason, baseline, score = found
        return DivergenceEvent(step, reason, x, baseline, float(score))


def first_divergence(
    losses: Any, *, smoothing: float, threshold: float
) -> DivergenceEvent | None:
    """The range test's stopping rule applied to a whole curve.

    Returns the first step whose loss is non-finite or whose smoothed loss
    exceeds ``threshold`` times the best smoothed loss before it.

    Example:

    >>> first_divergence([1.0, 0.5, 0.4, 3.0], smoothing=0.0, threshold=4.0).step
    3
    >>> first_divergence([1.0, 0.5, float("nan")], smoothing=0.0, threshold=4.0).reason
    'nonfinite'
    """
    return LossWatch(smoothing=smoothing, best_ratio=threshold).update(losses)
