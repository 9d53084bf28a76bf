"""Figures: range-test curves (and, as they land, schedules and searches).

matplotlib is imported inside each function, never at module level, and
every function returns a `Figure` without showing it, so nothing blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_range_test"]

_MARKERS = {
    "default": ("C3", "o"),
    "valley": ("C2", "v"),
    "steep": ("C4", "^"),
    "minimum": ("C1", "s"),
    "steepest": ("C5", "D"),
}


def _axes(ax: Any):
    if ax is not None:
        from matplotlib.axes import Axes

        if not isinstance(ax, Axes):
            raise TypeError(
                "Argument `ax` must be a matplotlib `Axes` (such as "
                "`fig.add_subplot()` or one of `plt.subplots()`'s axes) or None. "
                f"Received: ax={ax!r:.80} (of type {type(ax).__name__})"
            )
        # The root figure: an axes on a subfigure has the subfigure as its
        # `figure`, which cannot be saved.
        figure = ax.figure
        while getattr(figure, "figure", figure) is not figure:
            figure = figure.figure
        return figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    return fig, fig.add_subplot()


def plot_range_test(result: Any, ax: Any = None, *, methods: Any = None) -> Any:
    """Plots a range test: each step's loss, the smoothed loss, suggestions.

    Args:
        result: an `LRRangeTestResult`.
        ax: a matplotlib `Axes` to draw on; a new `Figure` when None.
        methods: a name, or names, of the suggestion rules to mark, among
            `keras_lr.suggest.RULES` (default: all; an empty sequence marks
            none). A rule that does not apply to the curve (too few finite
            points) is left out.

    Returns:
        The matplotlib `Figure` (not shown; save it with `fig.savefig`).

    Raises:
        TypeError: if `result` is not an `LRRangeTestResult`, `ax` is not a
            matplotlib `Axes`, or `methods` is not a name or a sequence of
            names.
        ValueError: if a name in `methods` is not a rule.

    Example:

    >>> from keras_lr import LRRangeTestResult
    >>> lrs = np.geomspace(1e-6, 1.0, 100)
    >>> losses = 2.3 - 2.0 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
    >>> fig = plot_range_test(LRRangeTestResult(lrs, losses, diverged=True))
    >>> fig.axes[0].get_xscale()
    'log'
    """
    from keras_lr import suggest
    from keras_lr.range_test.result import LRRangeTestResult

    if not isinstance(result, LRRangeTestResult):
        raise TypeError(
            "Argument `result` must be an `LRRangeTestResult` (what "
            "`keras_lr.lr_range_test` returns). "
            f"Received: result={result!r:.80} (of type {type(result).__name__})"
        )
    if isinstance(methods, str):
        methods = (methods,)
    # None: every rule; an empty selection: none.
    methods = tuple(suggest.RULES) if methods is None else _names(methods)
    unknown = [m for m in methods if m not in suggest.RULES]
    if unknown:
        raise ValueError(
            "Argument `methods` must name suggestion rules, among "
            f"{tuple(suggest.RULES)}. Received: methods={methods!r} "
            f"(unknown: {', '.join(map(repr, unknown))})"
        )
    fig, ax = _axes(ax)
    lrs, losses = result.lrs, result.losses
    ax.plot(lrs, losses, color="0.75", lw=0.8, label="loss of each step")
    ax.plot(
        lrs,
        result.smoothed_losses,
        color="C0",
        lw=1.2,
        alpha=0.7,
        label=f"smoothed loss (EMA {result.smoothing:g})",
    )
    finite_lrs, finite_losses = suggest.clean_curve(lrs, losses)
    trend = suggest.zero_phase_smooth(finite_losses, max(1.0, finite_losses.size / 25))
    ax.plot(finite_lrs, trend, color="C3", lw=1.8, label="trend (no lag)")
    if getattr(result, "val_lrs", np.zeros(0)).size:
        ax.plot(
            result.val_lrs, result.val_losses, "k.--", lw=1, label="validation loss"
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    finite = losses[np.isfinite(losses)]
    if finite.size:
        low, high = float(np.min(finite)), float(np.percentile(finite, 95))
        first = float(finite[0])
        top = max(first, high)
        # A flat curve (or a single point) gets a span of its own scale, not
        # one of float rounding.
        pad = 0.08 * max(top - low, 1e-3 * max(abs(top), 1.0))
        ax.set_ylim(low - pad, top + 3 * pad)
    elif lrs.size and lrs.min() < lrs.max():
        # No finite loss: nothing sets the x range but the divergence line.
        ax.set_xlim(float(lrs.min()), float(lrs.max()))
    for method in methods:
        try:
            lr = result.suggestion(method, warn=False)
        except ValueError:  # the rule does not apply to this curve
            continue
        color, marker = _MARKERS.get(method, ("k", "x"))
        if not trend.size:
            continue
        i = int(np.argmin(np.abs(np.log(finite_lrs) - np.log(lr))))
        ax.plot(
            [lr],
            [trend[i]],
            marker=marker,
            color=color,
            ms=9,
            ls="none",
            label=f"{method}: {lr:.2g}",
        )
    if result.diverged and result.divergence_step is not None and lrs.size:
        ax.axvline(
            lrs[min(result.divergence_step, lrs.size - 1)], color="0.5", ls=":", lw=1
        )
    ax.legend(loc="best", fontsize=8)
    ax.set_title("LR range test")
    return fig


def _names(methods: Any) -> tuple:
    """`methods` as a tuple, refused when it is not a sequence of names."""
    try:
        names = tuple(methods)
    except TypeError:
        names = None
    if names is None or not all(isinstance(m, str) for m in names):
        raise TypeError(
            "Argument `methods` must be a rule name or a sequence of rule names "
            "(strings), or None. "
            f"Received: methods={methods!r:.80} (of type {type(methods).__name__})"
        )
    return names


__all__ += ["plot_schedule"]


def plot_schedule(
    schedule: Any, steps: int, ax: Any = None, *, momentum: Any = None
) -> Any:
    """Plots a learning-rate schedule over `steps` optimizer steps.

    Args:
        schedule: a `LearningRateSchedule` (any, Keras's included, or a
            callable of the step) or a float.
        steps: how many steps to draw (from step 0), >= 1.
        ax: a matplotlib `Axes` to draw on; a new `Figure` when None.
        momentum: an optional momentum schedule (`OneCycle.momentum()`) or
            float, drawn on a second y axis.

    Returns:
        The matplotlib `Figure` (not shown).

    Raises:
        TypeError: if `schedule` or `momentum` is neither callable nor a
            float (a string, an int, None), or `steps` is not an int.
        ValueError: if a float is negative or not finite, or `steps` < 1.

    Example:

    >>> from keras_lr.schedules import OneCycle
    >>> fig = plot_schedule(OneCycle(0.1, 200), 200)
    >>> line = fig.axes[0].lines[0]
    >>> len(line.get_xdata()), round(float(max(line.get_ydata())), 3)
    (200, 0.1)
    """
    from keras_lr import _validate

    schedule = _schedule_or_lr("schedule", schedule)
    if momentum is not None:
        momentum = _schedule_or_lr("momentum", momentum)
    steps = _validate.check_int("steps", steps, minimum=1)
    fig, ax = _axes(ax)
    x = np.arange(steps)
    ax.plot(
        x, _schedule_values(schedule, steps), color="C0", lw=1.8, label="learning rate"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(type(schedule).__name__ if callable(schedule) else "constant")
    if momentum is not None:
        ax2 = ax.twinx()
        ax2.plot(
            x,
            _schedule_values(momentum, steps),
            color="C1",
            lw=1.2,
            ls="--",
            label="momentum",
        )
        ax2.set_ylabel("momentum")
    return fig


def _schedule_or_lr(name: str, value: Any) -> Any:
    """A schedule (any callable of the step) as it is, or a float rate checked."""
    from keras_lr.schedules import _base

    return value if callable(value) else _base.check_lr(name, value)


def _schedule_values(schedule: Any, steps: int) -> np.ndarray:
    """A schedule's values at steps 0..steps-1, vectorized when it allows."""
    import keras

    if not callable(schedule):
        return np.full(steps, float(schedule))
    x = np.arange(steps)
    try:
        values = keras.ops.convert_to_numpy(schedule(keras.ops.convert_to_tensor(x)))
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape == (steps,):
            return values
    except Exception:  # a schedule written for scalar steps only
        pass
    return np.array([float(keras.ops.convert_to_numpy(schedule(int(i)))) for i in x])


__all__ += ["plot_search"]


def plot_search(tuner: Any, ax: Any = None) -> Any:
    """Trial scores of a learning-rate × batch-size search.

    One point per completed trial at (learning rate actually used, global
    batch size), coloured by the tuner's objective; the best trial is
    ringed.

    Args:
        tuner: a KerasTuner `Tuner` that searched an `LRBatchSizeHyperModel`.
        ax: a matplotlib `Axes`; a new `Figure` when None.

    Returns:
        The matplotlib `Figure`.

    Raises:
        TypeError: if `tuner` is not a KerasTuner tuner.

    Example (a search run with `keras_lr.tuner`; see
    ``examples/tune_fashion_mnist.py``)::

        fig = plot_search(tuner)
        fig.savefig("search.png")

    >>> callable(plot_search)
    True
    """
    oracle = getattr(tuner, "oracle", None)
    if not hasattr(oracle, "trials") or not hasattr(oracle, "objective"):
        raise TypeError(
            "Argument `tuner` must be a keras_tuner.Tuner (one that has run a "
            f"search). Received: tuner={tuner!r:.80} (of type "
            f"{type(tuner).__name__})"
        )
    fig, ax = _axes(ax)
    objective = oracle.objective
    rows = []
    for trial in oracle.trials.values():
        metrics = trial.metrics
        if trial.status != "COMPLETED" or not metrics.exists(objective.name):
            continue
        lr = (
            metrics.get_last_value("learning_rate")
            if metrics.exists("learning_rate")
            else None
        )
        batch = trial.hyperparameters.values.get("batch_size")
        if lr is None or batch is None:
            continue
        rows.append((float(lr), float(batch), float(trial.score)))
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("global batch size")
    ax.set_title(f"search: {objective.name}")
    if rows:
        lrs, batches, scores = (np.array(c) for c in zip(*rows))
        points = ax.scatter(lrs, batches, c=scores, cmap="viridis", s=40)
        fig.colorbar(points, ax=ax, label=objective.name)
        best = int(
            np.argmax(scores) if objective.direction == "max" else np.argmin(scores)
        )
        ax.scatter(
            [lrs[best]],
            [batches[best]],
            s=160,
            facecolors="none",
            edgecolors="C3",
            linewidths=2,
            label="best",
        )
        ax.legend(loc="best", fontsize=8)
    return fig
